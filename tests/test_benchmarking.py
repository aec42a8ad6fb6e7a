import importlib.util
from pathlib import Path

import torch

from mlip.benchmarking import count_aten_ops, cpu_isa, environment


def test_count_aten_ops_counts_computing_ops_not_views():
    a, b = torch.randn(3, 4), torch.randn(3, 4, requires_grad=True)
    assert count_aten_ops(lambda: (a * b).sum()) == 2
    assert count_aten_ops(lambda: a.view(-1).unsqueeze(0).t()) == 0
    # backward ops are counted too: mul's gradient needs one more mul (plus the seed and the expand of sum)
    assert count_aten_ops(lambda: torch.autograd.grad((a * b).sum(), b)) > 2


def _tp_benchmark():
    spec = importlib.util.spec_from_file_location(
        "tp_benchmark", Path(__file__).resolve().parent.parent / "benchmarks" / "tp.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tp_sweep_points_cover_the_grid_and_build():
    tp = _tp_benchmark()
    full, quick = tp.sweep_points(), tp.sweep_points(quick=True)
    names = {(p["name"], p["dtype"], p["threads"]) for p in full}
    assert len(names) == len(full)  # no point twice
    assert {p["channels"] for p in full} == {16, 32, 64, 128, 256}
    assert {p["lmax"] for p in full} == {1, 2, 3} and {p["mode"] for p in full} == {"uvu", "uvw"}
    assert {p["edges_per_node"] for p in full if p["mode"] == "uvu"} == {8, 16, 40}
    assert {p["threads"] for p in full} == {1, 2} and {p["dtype"] for p in full} == {"float32", "float64"}
    assert {(p["name"], p["dtype"], p["threads"]) for p in quick} < names
    for point in quick:
        in1, sh, out, channelwise = point["shape"]
        assert channelwise == (point["mode"] == "uvu")
        module = tp.build_tp(point["shape"], shared=not channelwise)
        assert max(ir.l for _, ir in module.irreps_out) <= point["lmax_out"]
        assert {ins.mode for ins in module.descriptor.instructions} == {point["mode"]}
    assert tp.natural_irreps(8, 3) == "8x0e+8x1o+8x2e+8x3o" and tp.natural_irreps(1, 1) == "0e+1o"


def test_cpu_record_names_model_and_isa_flags():
    intel = "processor\t: 0\nmodel name\t: X\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f smep amx_tile\n"
    assert cpu_isa(intel) == "amx_tile avx avx2 avx512f fma sse4_2"
    assert cpu_isa("Features\t: fp asimd sve sve2 sme\n") == "asimd sme sve sve2"
    assert cpu_isa("no flags here") == "unknown"
    env = environment("cpu")
    assert env["cpu"] and env["cpu_isa"]
