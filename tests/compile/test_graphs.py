"""CUDA graphs of the fixed-shape step (``mlip.compile.graphs``): on the CPU, the static-buffer
bookkeeping (copy-in, set-up on a new shape, copy-out) through ``StaticStep(capture=False)``, where a
plain call of the step replaces the replay; the refusals without a CUDA device; on a CUDA machine, the
captured graph against eager.

Eager tiny models only (no package compile): a few seconds.
"""

from __future__ import annotations

import logging

import pytest
import torch

from mlip import cli, md
from mlip.calculator import MLIPCalculator
from mlip.compile import PackageError
from mlip.compile.graphs import StaticStep, cuda_graph
from mlip.errors import UserInputError
from mlip.models import Committee, create

R_MAX = 3.0


def tiny(seed: int = 0, device: str = "cpu") -> torch.nn.Module:
    hp = dict(hidden_irreps="4x0e+4x1o", max_ell=2, correlation=3, radial_mlp=[8], r_max=R_MAX)
    model = create(
        "mace", species=[1, 6, 8], dtype=torch.float64, seed=seed, avg_num_neighbors=4.0, scale=0.05, **hp
    )
    return model.to(device).eval().requires_grad_(False)


def test_static_step_md_equals_eager_and_recaptures_only_on_a_new_shape(run_md, caplog):
    eager = tiny()
    frames, ff = run_md(eager, 30)
    assert not ff.fixed_shape and ff.neighbors.builds >= 3
    graphed = cuda_graph(eager, capture=False)
    with caplog.at_level(logging.WARNING, logger="mlip.data.neighbors"):
        static_frames, static_ff = run_md(graphed, 30, {0: 1024, 12: 64})
    assert static_ff.fixed_shape and static_ff.neighbors.builds == ff.neighbors.builds
    assert len(static_frames) == len(frames) == 31
    for i, ((x, f), (x_ref, f_ref)) in enumerate(zip(static_frames, frames, strict=True)):
        torch.testing.assert_close(x, x_ref, rtol=0, atol=1e-10, msg=lambda m, i=i: f"step {i}: {m}")
        torch.testing.assert_close(f, f_ref, rtol=0, atol=1e-10, msg=lambda m, i=i: f"step {i}: {m}")
    # one set-up for the reserved capacity (kept across rebuilds), one after the forced growth
    step = graphed.step
    assert static_ff.neighbors.growths == 1 and step.captures == 2 and static_ff.neighbors.capacity < 1024
    assert step.replays == 1 + 30  # init, then one evaluation per step
    assert "exceed the padded capacity of 64" in caplog.text


def test_static_step_buffers():
    """Inputs are copied into the buffers, outputs out of them; a new shape or dtype sets up again."""
    calls = []

    def step(x, y):
        calls.append((x.data_ptr(), y.data_ptr()))
        return (x * 2 + y, y.sum())

    static = StaticStep(step, capture=False)
    x, y = torch.arange(4.0), torch.ones(4)
    first = static(x, y)
    x += 10  # the caller's tensors are not the buffers
    torch.testing.assert_close(first[0], torch.tensor([1.0, 3.0, 5.0, 7.0]))
    second = static(x, y)
    torch.testing.assert_close(first[0], torch.tensor([1.0, 3.0, 5.0, 7.0]))  # a copy, not the buffer
    torch.testing.assert_close(second[0], torch.tensor([21.0, 23.0, 25.0, 27.0]))
    assert len({ptr for ptr in calls}) == 1 and static.captures == 1 and static.replays == 2
    assert calls[0] != (x.data_ptr(), y.data_ptr())
    static(torch.arange(5.0), torch.ones(5))
    static(torch.arange(5.0, dtype=torch.float64), torch.ones(5, dtype=torch.float64))
    assert static.captures == 3 and len(set(calls)) == 3


def test_cuda_graph_is_refused_without_a_cuda_device(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    eager = tiny()
    with pytest.raises(UserInputError, match="needs a CUDA device; the model is on cpu"):
        cuda_graph(eager)
    with pytest.raises(UserInputError, match="needs a CUDA device"):
        MLIPCalculator(eager, device="cpu", cuda_graph=True)
    with pytest.raises(UserInputError, match="not a Committee"):
        cuda_graph(Committee([eager, tiny(1)]), capture=False)
    with pytest.raises(ValueError, match="eager model cannot take padding"):
        md.ForceField(eager, fixed_shape=True)
    graphed = cuda_graph(eager, capture=False)
    assert graphed.to("cpu") is graphed and graphed.fixed_shape
    with pytest.raises(PackageError, match="cannot move to torch.float32"):
        graphed.to(torch.float32)
    source = tmp_path / "tiny.safetensors"
    eager.save(source)
    argv = [
        "md",
        "CCO",
        "--smiles",
        "--model",
        str(source),
        "--steps",
        "2",
        "--cuda-graph",
        "--device",
        "cpu",
    ]
    argv += ["--output", str(tmp_path / "md.h5"), "--no-progress"]
    assert cli.main(argv) == 2
    assert "--cuda-graph needs a CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "md.h5").exists()
    argv.remove("--cuda-graph")
    assert cli.main([*argv, "--fixed-shape"]) == 2
    assert "--fixed-shape needs a compiled model" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_captured_graph_md_equals_eager_on_cuda(run_md):
    eager = tiny(device="cuda")
    frames, _ = run_md(eager, 30, device="cuda")
    graphed = cuda_graph(eager)
    graph_frames, _ = run_md(graphed, 30, {0: 1024, 12: 64}, device="cuda")
    for (x, f), (x_ref, f_ref) in zip(graph_frames, frames, strict=True):
        torch.testing.assert_close(x, x_ref, rtol=0, atol=1e-9)
        torch.testing.assert_close(f, f_ref, rtol=0, atol=1e-9)
    assert graphed.step.captures == 2
