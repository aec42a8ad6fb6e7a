"""``mlip compile``: the step traces without data-dependent ops, and the ``.pt2`` package equals the eager
model (float64, 1e-10) through ``CompiledModel``, the ASE calculator, ``mlip md`` and ``mlip eval``; files
built for another dtype, device, torch version or format are refused naming the field.

Each package is compiled once per module (tiny models; about 35 s each on 2 shared cores).
"""

from __future__ import annotations

import json
import logging
import zipfile

import ase.io
import h5py
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from mlip import cli, md
from mlip.calculator import MLIPCalculator
from mlip.compile import CompiledModel, PackageError, export_step, read_metadata
from mlip.compile.graphs import cuda_graph
from mlip.data.atomic_data import DataError, collate, from_atoms
from mlip.data.neighbors import SkinNeighborList, add_neighbors
from mlip.kernels.tp_conv import torch_fast as conv
from mlip.layers import chunking
from mlip.models import create, load

R_MAX = 3.0
SPECIES = [1, 6, 8]
CONFIGS = {
    "mace": dict(hidden_irreps="4x0e+4x1o", max_ell=2, correlation=3, radial_mlp=[8]),
    "nequip": dict(num_features=4, num_layers=2, lmax=2, radial_mlp=[8]),
    "gridnet": dict(channels=4, num_layers=2, lmax=2, num_splines=8),
}
COMPILED = ("mace", "nequip")
CONVOLUTIONS = {"mace": 2, "nequip": 2, "gridnet": 2}
TOL = dict(rtol=0, atol=1e-10)


def build(name: str) -> torch.nn.Module:
    hp = {**CONFIGS[name], "r_max": R_MAX, "avg_num_neighbors": 4.0, "e0s": [-1.0, -2.0, -3.0], "scale": 0.05}
    return create(name, species=SPECIES, dtype=torch.float64, seed=0, **hp).eval()


def triclinic(repeat: tuple[int, int, int] = (1, 1, 1)) -> Atoms:
    """Six atoms in a skewed periodic cell shorter than two cutoffs (several images of an atom)."""
    rng = np.random.default_rng(3)
    cell = np.array([[3.6, 0.0, 0.0], [0.7, 3.4, 0.0], [-0.5, 0.4, 3.8]])
    frac = np.array([[0.1, 0.1, 0.1], [0.5, 0.2, 0.3], [0.2, 0.6, 0.5], [0.7, 0.7, 0.2], [0.4, 0.4, 0.8]])
    frac = np.vstack([frac, [0.85, 0.3, 0.7]]) + rng.normal(scale=0.02, size=(6, 3))
    return Atoms(numbers=[1, 6, 8, 1, 6, 1], scaled_positions=frac, cell=cell, pbc=True).repeat(repeat)


STRUCTURES = {
    "ethanol": lambda: molecule("CH3CH2OH"),
    "water": lambda: molecule("H2O"),
    "triclinic": triclinic,
    "triclinic-2x1x2": lambda: triclinic((2, 1, 2)),
}


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict[str, tuple[str, str]]:
    """name -> (model file, package) for the compiled models, written by ``mlip compile``; with blocks of
    16 edges and 5 atoms, so the traced chunk loops run several blocks (and pad the last) on every test
    structure but the water molecule (one short block)."""
    folder = tmp_path_factory.mktemp("pt2")
    out = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(conv, "EDGES_PER_CHUNK", 16)
        patch.setattr(chunking, "ROWS_PER_CHUNK", {"cpu": 5})
        for name in COMPILED:
            source, package = folder / f"{name}.safetensors", folder / f"{name}.pt2"
            build(name).save(source)
            assert cli.main(["compile", str(source), "-o", str(package)]) == 0
            out[name] = (str(source), str(package))
    return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_step_exports_with_dynamic_atoms_and_edges(name):
    """make_fx(symbolic, error on data-dependent ops) + torch.export: no host sync, no fixed size; the
    convolutions keep their chunked inference mode (traced loops over edge blocks)."""
    program = export_step(build(name))
    loops = [n for n in program.graph.nodes if n.target is torch.ops.higher_order.while_loop]
    assert len(loops) >= 2 * CONVOLUTIONS[name]  # forward and backward of each
    shapes = [node.meta["val"].shape for node in program.graph.nodes if node.op == "placeholder"][-5:]
    positions, species, edge_index, shifts, mask = shapes
    assert all(isinstance(d, torch.SymInt) for d in (positions[0], edge_index[1]))
    assert species[0] == positions[0] == mask[0] and shifts[0] == edge_index[1]


def _inputs(atoms: Atoms) -> dict[str, torch.Tensor]:
    return add_neighbors(from_atoms(atoms), R_MAX)


@pytest.mark.parametrize("name", COMPILED)
def test_package_equals_eager(packages, name):
    """One package: molecules and triclinic cells of 3 to 24 atoms, batched and single."""
    source, package = packages[name]
    eager, compiled = load(source).eval(), load(package)
    assert isinstance(compiled, CompiledModel)
    counts = set()
    for key, make in STRUCTURES.items():
        data = _inputs(make())
        counts.add(data["positions"].shape[0])
        stress = bool(data["pbc"].all())
        ref, out = eager(data, compute_stress=stress), compiled(data, compute_stress=stress)
        assert set(out) == set(ref), key
        for field in ref:
            torch.testing.assert_close(
                out[field], ref[field], **TOL, msg=lambda m, f=field, k=key: f"{k} {f}: {m}"
            )
    assert counts == {3, 9, 6, 24}
    batch = collate([_inputs(triclinic()), _inputs(triclinic((2, 1, 2)))])
    ref, out = eager(batch, compute_stress=True), compiled(batch, compute_stress=True)
    for field in ref:
        torch.testing.assert_close(out[field], ref[field], **TOL)


@pytest.mark.parametrize("name", COMPILED)
def test_padded_edge_set_contributes_nothing(packages, name):
    """The fixed-capacity list (skin pairs + padding edges) gives the eager results; its shape holds."""
    source, package = packages[name]
    eager, compiled = load(source).eval(), load(package)
    atoms = triclinic((2, 1, 1))
    data = from_atoms(atoms)
    neighbors = SkinNeighborList(R_MAX, skin=0.5)
    args = (
        data["positions"],
        data["cell"][None],
        data["pbc"][None],
        torch.zeros(len(atoms), dtype=torch.int64),
    )
    edge_index, shifts = neighbors.padded(*args)
    assert edge_index.shape[1] == neighbors.capacity and (edge_index[0] == edge_index[1]).any()
    padded = {**data, "edge_index": edge_index, "cell_shifts": shifts}
    ref, out = eager(_inputs(atoms), compute_stress=True), compiled(padded, compute_stress=True)
    for field in ref:
        torch.testing.assert_close(out[field], ref[field], **TOL)
    moved = (data["positions"] + 0.05, *args[1:])
    assert neighbors.padded(*moved)[0].shape == edge_index.shape and neighbors.builds == 1


def test_calculator_runs_the_package(packages):
    source, package = packages["mace"]
    atoms = triclinic((2, 1, 1))
    results = []
    # the package on the filtered list (the CPU default), and on the padded list through the static
    # step (the CUDA-graph path without capture)
    for model in (source, package, cuda_graph(load(package), capture=False)):
        atoms.calc = MLIPCalculator(model, device="cpu")
        results.append([])
        for shift in (0.0, 0.02, 0.04):  # moves within the skin: one list, one padded shape
            atoms.positions[:4] += shift
            results[-1].append((atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()))
            atoms.positions[:4] -= shift
    neighbors = atoms.calc._neighbors
    assert neighbors.builds == 1 and neighbors.capacity > 0 and neighbors.growths == 0
    assert atoms.calc.model.step.captures == 1 and atoms.calc.model.step.replays == 3
    for run in results[1:]:
        for ref_step, out_step in zip(results[0], run, strict=True):
            for ref, out in zip(ref_step, out_step, strict=True):
                np.testing.assert_allclose(out, ref, rtol=0, atol=1e-10)
    atoms.numbers[0] = 7
    with pytest.raises(DataError, match="N"):
        atoms.get_potential_energy()


def test_md_through_the_package_equals_eager_step_by_step(packages, tmp_path, capsys):
    source, package = packages["nequip"]
    structure = tmp_path / "ethanol.extxyz"
    ase.io.write(structure, molecule("CH3CH2OH"))
    frames = {}
    for label, model, extra in (
        ("eager", source, []),
        ("compiled", package, []),
        ("padded", package, ["--fixed-shape"]),
    ):
        output = tmp_path / f"{label}.h5"
        argv = ["md", str(structure), "--model", model, "--ensemble", "nve", "--steps", "12", "--dt", "0.5"]
        argv += ["--write-interval", "1", "--output", str(output), "--no-progress", "--temperature", "300"]
        assert cli.main(argv + extra) == 0
        assert ("fixed-shape step: edges padded to" in capsys.readouterr().out) == bool(extra)
        with h5py.File(output, "r") as f:
            frames[label] = (
                f["particles/system_0000/position/value"][()],
                f["particles/system_0000/force/value"][()],
            )
    assert frames["eager"][0].shape[0] == 13
    for label in ("compiled", "padded"):
        for ref, out in zip(frames["eager"], frames[label], strict=True):
            np.testing.assert_allclose(out, ref, rtol=0, atol=1e-10)


def test_eval_runs_the_package(packages, tmp_path):
    source, package = packages["mace"]
    data = tmp_path / "labelled.extxyz"
    structures = [triclinic(), triclinic((1, 2, 1))]
    rng = np.random.default_rng(0)
    for atoms in structures:
        atoms.calc = MLIPCalculator(source, device="cpu")
        atoms.get_stress()
        atoms.calc.results["forces"] = atoms.calc.results["forces"] + rng.normal(
            scale=0.1, size=(len(atoms), 3)
        )
    ase.io.write(data, structures)
    metrics = []
    for model in (source, package):
        out = tmp_path / "metrics.json"
        assert cli.main(["eval", model, str(data), "--stress", "--device", "cpu", "--json", str(out)]) == 0
        metrics.append(json.loads(out.read_text()))
    assert metrics[0]["forces_mae"] > 50.0  # the added noise, in meV/Å
    for key in ("energy_mae", "forces_mae", "forces_rmse", "stress_mae"):
        assert metrics[1][key] == pytest.approx(metrics[0][key], rel=1e-9, abs=1e-9)


def _rewrite_metadata(package: str, target, **changes: str) -> None:
    """A copy of ``package`` whose contract metadata has ``changes`` (as a package built elsewhere)."""
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(target, "w") as dst:
        for item in src.infolist():
            payload = src.read(item)
            if item.filename.endswith("_metadata.json"):
                payload = json.dumps({**json.loads(payload), **changes}).encode()
            dst.writestr(item, payload)


def test_mismatched_packages_are_refused(packages, tmp_path, capsys):
    _, package = packages["nequip"]
    meta = read_metadata(package)
    assert meta["mlip_format"] == "1" and meta["species"] == "1,6,8" and meta["num_layers"] == "2"
    assert meta["dtype"] == "float64" and meta["device"] == "cpu" and meta["model"] == "nequip"
    assert float(meta["r_max"]) == R_MAX and meta["torch_version"] == torch.__version__
    assert len(meta["model_sha256"]) == 64
    with pytest.raises(PackageError, match="dtype='float64'.*'float32'"):
        load(package, dtype=torch.float32)
    with pytest.raises(PackageError, match="dtype"):
        load(package).to(torch.float32)
    with pytest.raises(PackageError, match="device='cpu'.*'cuda'"):
        load(package, device="cuda")
    for field, value in (("torch_version", "2.0.0"), ("device", "cuda"), ("mlip_format", "2")):
        other = tmp_path / f"{field}.pt2"
        _rewrite_metadata(package, other, **{field: value})
        with pytest.raises(PackageError, match=f"{field}='{value}'"):
            load(other)
    # CLI: an MD run on a float32 request exits 2 with the field named; no overwrite without the flag
    assert cli.main(["md", "CCO", "--smiles", "--model", package, "--dtype", "float32", "--steps", "1"]) == 2
    assert "dtype" in capsys.readouterr().err
    source, _ = packages["nequip"]
    assert cli.main(["compile", source, "-o", package]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["compile", source, "-o", str(tmp_path / "x.so")]) == 2
    stray = tmp_path / "stray.pt2"
    with zipfile.ZipFile(stray, "w") as z:
        z.writestr("a.txt", "not a package")
    with pytest.raises(PackageError, match="not an mlip .pt2 package"):
        load(stray)


def test_padded_md_through_the_package_equals_eager_step_by_step(packages, run_md, caplog):
    """The Python MD driver on a package with the fixed-capacity padded list: same trajectory as eager
    on a periodic cell and a molecule, shapes constant over rebuilds, the capacity grown once (logged);
    and the package's single-threaded runner through the static-buffer step (the CUDA-graph path, no
    capture on the CPU) equals it too."""
    source, package = packages["nequip"]
    structures = [triclinic((2, 1, 1)), molecule("CH3CH2OH")]
    frames, ff = run_md(load(source).eval(), 16, structures=structures)
    assert not ff.fixed_shape and ff.neighbors.builds >= 2
    shapes = []
    compiled = load(package)
    assert not compiled.fixed_shape and not md.ForceField(compiled).fixed_shape  # the CPU default
    original = compiled.step
    compiled.step = lambda *inputs: shapes.append(inputs[2].shape) or original(*inputs)
    with caplog.at_level(logging.WARNING, logger="mlip.data.neighbors"):
        padded_frames, padded_ff = run_md(
            compiled, 16, {0: 1024, 8: 64}, structures=structures, fixed_shape=True
        )
    assert padded_ff.fixed_shape and padded_ff.neighbors.builds == ff.neighbors.builds
    assert padded_ff.neighbors.growths == 1 and "exceed the padded capacity of 64" in caplog.text
    assert (
        len(set(shapes)) == 2 and shapes[0] == (2, 1024) and shapes[-1] == (2, padded_ff.neighbors.capacity)
    )
    graphed = cuda_graph(compiled, capture=False)
    static_frames, _ = run_md(graphed, 16, structures=structures)
    assert graphed.step.captures == 1 and graphed.step.replays == 17
    for run in (padded_frames, static_frames):
        assert len(run) == len(frames) == 17
        for i, ((x, f), (x_ref, f_ref)) in enumerate(zip(run, frames, strict=True)):
            torch.testing.assert_close(x, x_ref, **TOL, msg=lambda m, i=i: f"step {i}: {m}")
            torch.testing.assert_close(f, f_ref, **TOL, msg=lambda m, i=i: f"step {i}: {m}")
