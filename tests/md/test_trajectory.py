"""Trajectory files: H5MD append/resume (also of files with the old unit strings), read by MDAnalysis, a
killed run leaves a readable file, the FIRE path, extxyz and .traj writers."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import h5py
import numpy as np
import pytest
import torch

from mlip import md


def _run(state, lj, writers, steps):
    ff = md.ForceField(lj, skin=0.5)
    md.nve.init(state, ff)
    return md.simulate(state, ff, md.nve.step, steps=steps, dt=5.0, writers=writers, write_interval=2)


def test_h5md_layout_append_and_resume(tmp_path, argon, lj):
    path = tmp_path / "run.h5"
    state = md.from_atoms([argon, argon[:10]], seed=0)
    md.maxwell_boltzmann(state, 40.0)
    with md.H5MDWriter(path) as writer:
        _run(state, lj, [writer], steps=4)  # frames at steps 0, 2, 4
    with pytest.raises(FileExistsError, match="append=True"):
        md.H5MDWriter(path)
    resumed = md.resume(path)
    assert resumed.step == 4 and resumed.time == pytest.approx(20.0)
    torch.testing.assert_close(resumed.positions, state.positions)
    torch.testing.assert_close(resumed.velocities, state.velocities)
    with md.H5MDWriter(path, append=True) as writer:
        _run(resumed, lj, [writer], steps=4)  # step 4 again, then 6, 8
    with h5py.File(path, "r") as f:
        assert tuple(f["h5md"].attrs["version"]) == (1, 1)
        g = f["particles/system_0001"]
        assert g["position/value"].shape == (6, 10, 3)
        assert g["position/step"][()].tolist() == [0, 2, 4, 4, 6, 8]
        assert g["position/value"].attrs["unit"] == "Angstrom"
        assert f["observables/system_0000/total/value"].attrs["unit"] == "eV"
        assert g["box/edges/value"].shape == (6, 3, 3)
        assert f["observables/system_0000/total/value"].shape == (6,)


def test_mdanalysis_reads_our_h5md_file(tmp_path, argon, lj):
    from MDAnalysis.coordinates.H5MD import H5MDReader

    from mlip.md.units import EV_TO_KJ_PER_MOL

    path = tmp_path / "run.h5"
    skewed = argon.copy()
    skewed.set_cell(argon.cell[:] + np.array([[0, 0, 0], [1.0, 0, 0], [0.5, -0.7, 0]]), scale_atoms=True)
    state = md.from_atoms([skewed], seed=0)
    md.maxwell_boltzmann(state, 40.0)
    frames = []

    class Keep:  # the states the writer saw, to compare with what MDAnalysis reads
        def write(self, s):
            frames.append((s.step, s.time, s.positions.clone(), s.velocities.clone(), s.forces.clone()))

        def close(self):
            pass

    with md.H5MDWriter(path) as writer:
        _run(state, lj, [writer, Keep()], steps=4)
    reader = H5MDReader(str(path))  # convert_units=True: MDAnalysis' units Å, ps, Å/ps, kJ/(mol Å)
    assert reader.n_frames == len(frames) == 3 and reader.n_atoms == 32
    for ts, (step, time_fs, positions, velocities, forces) in zip(reader, frames, strict=True):
        assert ts.data["step"] == step and ts.time == pytest.approx(time_fs / 1000)
        np.testing.assert_allclose(ts.positions, positions.numpy(), atol=1e-4)  # MDAnalysis: float32
        np.testing.assert_allclose(ts.velocities, 1000 * velocities.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ts.forces, EV_TO_KJ_PER_MOL * forces.numpy(), rtol=1e-5, atol=1e-6)
        assert np.isfinite(ts.data["system_0000/potential"]) and ts.data["system_0000/temperature"] > 0
    np.testing.assert_allclose(ts.dimensions, skewed.cell.cellpar(), rtol=1e-5)
    reader.close()


def test_files_with_the_old_unit_strings_still_resume(tmp_path, argon, lj):
    path = tmp_path / "old.h5"
    state = md.from_atoms([argon], seed=0)
    md.maxwell_boltzmann(state, 40.0)
    with md.H5MDWriter(path) as writer:
        _run(state, lj, [writer], steps=2)
    with h5py.File(path, "a") as f:  # as written before the H5MD units: Å, Å fs-1, eV Å-1, none
        g = f["particles/system_0000"]
        for name, unit in (
            ("position", "Å"),
            ("velocity", "Å fs-1"),
            ("force", "eV Å-1"),
            ("box/edges", "Å"),
        ):
            g[f"{name}/value"].attrs["unit"] = unit
        for obs in f["observables/system_0000"].values():
            del obs["value"].attrs["unit"]
    resumed = md.resume(path)
    assert resumed.step == 2
    torch.testing.assert_close(resumed.positions, state.positions)
    with md.H5MDWriter(path, append=True) as writer:
        _run(resumed, lj, [writer], steps=2)
    assert md.read_h5md(path)[1] == 4


def test_fire_cell_stores_the_relaxation_path(tmp_path, argon, lj):
    from mlip import cli
    from mlip.md import cli as md_cli

    structure = tmp_path / "compressed.extxyz"
    compressed = argon.copy()
    compressed.set_cell(argon.cell * 0.97, scale_atoms=True)
    ase.io.write(structure, compressed)
    argv = ["md", str(structure), "--model", "unused", "--ensemble", "fire-cell", "--steps", "300"]
    argv += [
        "--fmax",
        "1e-3",
        "--write-interval",
        "20",
        "--output",
        str(tmp_path / "fire.h5"),
        "--no-progress",
        "--xyz",
        str(tmp_path / "fire.extxyz"),
    ]
    md_cli.run(cli.build_parser().parse_args(argv), model=lj)
    with h5py.File(tmp_path / "fire.h5", "r") as f:
        steps = f["particles/system_0000/position/step"][()].tolist()
        cells = f["particles/system_0000/box/edges/value"][()]
    assert steps[0] == 0 and len(steps) >= 4, steps
    assert all(s % 20 == 0 for s in steps[1:-1]) and steps == sorted(set(steps))
    assert md.resume(tmp_path / "fire.h5").step == steps[-1]
    assert len(ase.io.read(tmp_path / "fire.extxyz", ":")) == len(steps)  # the same path for ASE
    volumes = [abs(np.linalg.det(c)) for c in cells]
    assert volumes[-1] > volumes[0]  # the compressed cell expands along the stored path


def test_killed_run_leaves_a_readable_h5md_file(tmp_path):
    path = tmp_path / "killed.h5"
    script = f"""
import sys, torch
from ase.build import bulk
from mlip import md
from mlip.models.classical import LennardJones
torch.set_num_threads(1)
state = md.from_atoms(bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2), seed=0)
md.maxwell_boltzmann(state, 50.0)
ff = md.ForceField(LennardJones(cutoff=6.0), skin=0.5)
md.nve.init(state, ff)
writer = md.H5MDWriter({str(path)!r})
for i in range(100000):
    md.nve.step(state, ff, 5.0)
    writer.write(state)
    if i == 5:
        print("ready", flush=True)
"""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONSAFEPATH="1")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    frames, step, _ = md.read_h5md(path)
    assert step >= 6 and len(frames[0]) == 32
    assert np.isfinite(frames[0].positions).all()


@pytest.mark.parametrize("suffix", [".extxyz", ".traj"])
def test_ase_writers_round_trip(tmp_path, argon, lj, suffix):
    state = md.from_atoms([argon, argon[:5]], seed=0)
    md.maxwell_boltzmann(state, 40.0)
    writer = md.ASEWriter(tmp_path / f"frames{suffix}")
    _run(state, lj, [writer], steps=4)
    paths = writer.paths([0, 1])
    assert [p.name for p in paths] == [f"frames_0{suffix}", f"frames_1{suffix}"]
    frames = ase.io.read(paths[1], index=":")
    assert len(frames) == 3 and len(frames[-1]) == 5
    np.testing.assert_allclose(frames[-1].positions, state.positions[32:].numpy(), atol=1e-6)
    np.testing.assert_allclose(frames[-1].get_potential_energy(), float(state.energy[1]), atol=1e-6)
    with pytest.raises(ValueError, match="not frames.pdb"):
        md.ASEWriter(Path("frames.pdb"))
