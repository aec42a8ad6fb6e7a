"""pair_style mlip with a real model: `mlip compile` of a small MACE (float64) against MLIPCalculator on
1, 2 and 4 MPI ranks, and LAMMPS' first 20 NVE steps against `mlip md` from the same state."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("mlip.compile") is None:
    pytest.skip("mlip compile is not part of this checkout", allow_module_level=True)

BIN = Path(sys.prefix) / "bin"
NKTV2P = 1.6021765e6  # LAMMPS metal units: bar per eV/Å^3
ELEMENTS = ["H", "C", "O"]

INPUT = """units metal
atom_style atomic
boundary p p p
read_data {data}
neighbor 0.5 bin
neigh_modify every 1 delay 0 check yes
plugin load {plugin}
pair_style mlip
pair_coeff * * {package} H C O
"""


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A small two-layer MACE (random weights, r_max 3 Å) saved, and compiled by `mlip compile`."""
    from mlip.testing import tiny_mace

    folder = tmp_path_factory.mktemp("mace")
    model = tiny_mace(ELEMENTS, dtype=None, radial_mlp=[64, 64, 64])  # float32
    model.save(folder / "mace.model")
    run = subprocess.run(
        [str(BIN / "mlip"), "compile", str(folder / "mace.model"), "-o", str(folder / "mace.pt2")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return folder / "mace.model", folder / "mace.pt2"


@pytest.fixture(scope="module")
def reference(box, model_files):
    import torch

    from mlip.calculator import MLIPCalculator

    atoms = box.copy()
    atoms.calc = MLIPCalculator(str(model_files[0]), device="cpu", dtype=torch.float64)
    return {
        "energy": atoms.get_potential_energy(),
        "forces": atoms.get_forces(),
        "energies": atoms.get_potential_energies(),
        "virial": -atoms.get_stress(voigt=False) * atoms.get_volume(),
    }


def _relative(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


@pytest.mark.parametrize("ranks", [1, 2, 4])
def test_equals_calculator_on_ranks(ranks, tmp_path, plugin, model_files, box, reference, h):
    h.write_data(box, tmp_path / "data.lmp")
    text = INPUT.format(data="data.lmp", plugin=plugin, package=model_files[1]) + (
        "compute pe all pe/atom\ncompute v all pressure NULL virial\n"
        "dump d all custom 1 dump.txt id fx fy fz c_pe\ndump_modify d format float %.17g sort id\nrun 0\n"
        'print "RESULT $(pe:%.17g) $(vol:%.17g) $(c_v[1]:%.17g) $(c_v[2]:%.17g) $(c_v[3]:%.17g) &\n'
        '$(c_v[4]:%.17g) $(c_v[5]:%.17g) $(c_v[6]:%.17g)"\n'
    )
    run = h.lammps(tmp_path, text, ranks=ranks)
    values = [
        float(v) for v in next(x for x in run.stdout.splitlines() if x.startswith("RESULT")).split()[1:]
    ]
    dump = h.read_dump(tmp_path / "dump.txt")
    w = reference["virial"]
    errors = {
        "energy": abs(values[0] - reference["energy"]) / abs(reference["energy"]),
        "forces": _relative(dump[:, 1:4], reference["forces"]),
        "atom energies": _relative(dump[:, 4], reference["energies"]),
        "virial": _relative(
            np.array(values[2:]) * values[1] / NKTV2P, [w[0, 0], w[1, 1], w[2, 2], w[0, 1], w[0, 2], w[1, 2]]
        ),
    }
    print(ranks, "ranks:", {k: f"{v:.1e}" for k, v in errors.items()})
    assert max(errors.values()) < 1e-8, errors


def _data_from_h5md(path: Path, dest: Path) -> None:
    """A LAMMPS data file (types H C O, Å/ps velocities) of frame 0 of an `mlip md` H5MD trajectory."""
    import h5py

    with h5py.File(path) as f:
        p = f["particles/system_0000"]
        pos, vel = p["position/value"][0], p["velocity/value"][0] * 1000.0  # Å/fs -> Å/ps
        numbers, masses, cell = p["species"][:], p["mass"][:], p["box/edges/value"][0]
    assert np.allclose(cell, np.diag(cell.diagonal()))
    types = np.array([[1, 6, 8].index(z) + 1 for z in numbers])
    lines = ["mlip md frame 0", "", f"{len(numbers)} atoms", "3 atom types", ""]
    lines += [f"0 {float(cell[k, k])!r} {a}lo {a}hi" for k, a in enumerate("xyz")] + ["", "Masses", ""]
    lines += [f"{t} {float(masses[types == t][0])!r}" for t in (1, 2, 3)] + ["", "Atoms # atomic", ""]
    lines += [f"{i + 1} {types[i]} {x!r} {y!r} {z!r}" for i, (x, y, z) in enumerate(pos.tolist())]
    lines += ["", "Velocities", ""] + [
        f"{i + 1} {x!r} {y!r} {z!r}" for i, (x, y, z) in enumerate(vel.tolist())
    ]
    dest.write_text("\n".join(lines) + "\n")


def test_first_20_nve_steps_match_mlip_md(tmp_path, plugin, model_files, box, h):
    import ase.io
    import h5py

    ase.io.write(tmp_path / "box.extxyz", box)
    md = subprocess.run(
        [str(BIN / "mlip"), "md", "box.extxyz", "--model", str(model_files[0]), "--ensemble", "nve"]
        + ["--temperature", "300", "--seed", "0", "--steps", "20", "--dt", "0.5", "--write-interval", "1"]
        + ["--log-interval", "1", "--output", "md.h5", "--no-progress"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert md.returncode == 0, md.stdout + md.stderr
    _data_from_h5md(tmp_path / "md.h5", tmp_path / "start.data")
    text = INPUT.format(data="start.data", plugin=plugin, package=model_files[1]) + (
        "timestep 0.0005\nfix 1 all nve\nthermo_style custom step pe\nthermo_modify format float %.17g\n"
        "thermo 1\ndump d all custom 1 nve.dump id x y z vx vy vz\ndump_modify d format float %.17g sort id\n"
        "run 20\n"
    )
    run = h.lammps(tmp_path, text, ranks=2)
    lines = run.stdout.splitlines()
    start = next(i for i, x in enumerate(lines) if x.split() == ["Step", "PotEng"]) + 1
    pe = np.array([float(x.split()[1]) for x in lines[start : start + 21]])
    frames = (tmp_path / "nve.dump").read_text().split("ITEM: TIMESTEP\n")[1:]
    with h5py.File(tmp_path / "md.h5") as f:
        ref_pos = f["particles/system_0000/position/value"][:]
        ref_vel = f["particles/system_0000/velocity/value"][:]
        ref_pe = f["observables/system_0000/potential/value"][:]
        cell = f["particles/system_0000/box/edges/value"][0].diagonal()
    assert len(frames) == 21 and len(ref_pos) == 21
    worst = {"position (Å)": 0.0, "velocity (rel)": 0.0, "energy (rel)": 0.0}
    for step, frame in enumerate(frames):
        data = np.array([[float(v) for v in x.split()] for x in frame.splitlines()[8:]])
        d = data[:, 1:4] - ref_pos[step]
        d -= np.round(d / cell) * cell
        worst["position (Å)"] = max(worst["position (Å)"], float(np.abs(d).max()))
        worst["velocity (rel)"] = max(
            worst["velocity (rel)"], _relative(data[:, 4:7] / 1000.0, ref_vel[step])
        )
        worst["energy (rel)"] = max(worst["energy (rel)"], abs(pe[step] - ref_pe[step]) / abs(ref_pe[step]))
    print("20 NVE steps, LAMMPS vs mlip md:", {k: f"{v:.1e}" for k, v in worst.items()})
    # LAMMPS' metal-unit force-to-acceleration constant (1/1.0364269e-4) has 8 digits: the trajectories
    # agree to that precision, not to round-off.
    assert worst["position (Å)"] < 1e-6 and worst["velocity (rel)"] < 1e-6 and worst["energy (rel)"] < 1e-7
