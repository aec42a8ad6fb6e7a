"""Trajectory files: H5MD append/resume, a killed run leaves a readable file, extxyz and .traj writers."""

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
        assert g["position/value"].attrs["unit"] == "Å"
        assert g["box/edges/value"].shape == (6, 3, 3)
        assert f["observables/system_0000/total/value"].shape == (6,)


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
