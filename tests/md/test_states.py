"""Typed MD states: integrator variables declared per atom / per system, a batch cut by system, and the
explosion guard dropping one replica while the others run on."""

import dataclasses
import re

import ase.io
import h5py
import pytest
import torch

from mlip import cli, md
from mlip.md import cli as md_cli
from mlip.md.fields import ATOM, SYSTEM


def _batch(argon, temperatures):
    state = md.from_atoms([argon, argon[:20], argon], seed=3)
    md.maxwell_boltzmann(state, torch.tensor(temperatures))
    return state


@pytest.mark.parametrize(
    "integrator, params",
    [
        (md.langevin, {"temperature": 40.0}),
        (md.nose_hoover, {"temperature": 40.0}),
        (md.csvr, {"temperature": 40.0}),
        (md.npt, {"temperature": 40.0, "mode": "full"}),
    ],
    ids=["langevin", "nhc", "csvr", "npt"],
)
def test_split_states_run_on_exactly_like_the_batch(argon, lj, integrator, params):
    state = _batch(argon, [40.0, 40.0, 40.0])
    ff = md.ForceField(lj, skin=0.5)
    integrator.init(state, ff, **params)
    for _ in range(3):
        integrator.step(state, ff, 5.0)
    parts = state.split()
    assert [int(p.system_ids[0]) for p in parts] == [0, 1, 2]
    variables = state.variables
    for b, part in enumerate(parts):
        assert type(part.variables) is type(variables)
        for f in dataclasses.fields(variables):
            value, got = getattr(variables, f.name), getattr(part.variables, f.name)
            per = f.metadata.get("per")
            if per == SYSTEM:
                torch.testing.assert_close(got, value[b : b + 1])
            elif per == ATOM:
                torch.testing.assert_close(got, value[state.batch == b])
            else:
                assert got == value
    part_ffs = [md.ForceField(lj, skin=0.5) for _ in parts]
    for _ in range(3):  # each part continues with its own generator and variables: same numbers as the batch
        integrator.step(state, ff, 5.0)
        for part, part_ff in zip(parts, part_ffs, strict=True):
            integrator.step(part, part_ff, 5.0)
    torch.testing.assert_close(
        torch.cat([p.positions for p in parts]), state.positions, rtol=1e-12, atol=1e-12
    )
    torch.testing.assert_close(torch.cat([p.velocities for p in parts]), state.velocities)


def test_select_refuses_unordered_systems_and_variables_name_their_integrator(argon, lj):
    state = _batch(argon, [40.0, 40.0, 40.0])
    with pytest.raises(ValueError, match="ascending"):
        state.select([2, 0])
    two = state.select([0, 2])
    assert two.system_ids.tolist() == [0, 2] and two.batch.unique().tolist() == [0, 1]
    md.fire.init(state, md.ForceField(lj, skin=0.5))
    with pytest.raises(ValueError, match="FIREVariables variables, not LangevinVariables"):
        md.langevin.ornstein_uhlenbeck(state, 1.0)


def test_guard_drops_the_exploded_replica_and_the_others_run_on(tmp_path, argon, lj):
    state = _batch(argon, [10.0, 300.0, 10.0])  # replica 1 is too hot for a 60 fs step
    ff = md.ForceField(lj, skin=0.5)
    md.nve.init(state, ff)
    path = tmp_path / "replicas.h5"
    with md.H5MDWriter(path) as writer, pytest.warns(RuntimeWarning, match=r"replica 1 dropped at step \d+"):
        result = md.simulate(state, ff, md.nve.step, 100, 60.0, writers=[writer], on_explosion="drop")
    assert list(result.dropped) == [1]
    failure = result.dropped[1]
    assert failure.system == 1 and "total energy changed" in failure.reason and failure.step < 100
    assert result.state.system_ids.tolist() == [0, 2] and result.state.step == 100
    drift = result.log.drift(state.num_atoms)
    assert torch.isnan(drift[1]) and bool(torch.isfinite(drift[[0, 2]]).all())  # never a drift for it
    with h5py.File(path, "r") as f:
        assert f["particles/system_0001/position/step"][-1] == failure.step
        assert f["particles/system_0002/position/step"][-1] == 100
    resumed = md.resume(path)  # the replicas that reached the last step
    assert resumed.system_ids.tolist() == [0, 2] and resumed.step == 100
    state = _batch(argon, [10.0, 300.0, 10.0])
    md.nve.init(state, ff)
    with pytest.raises(md.ExplosionError, match="system 1: total energy changed"):  # the default stops
        md.simulate(state, ff, md.nve.step, 100, 60.0)


def test_cli_reports_the_dropped_replicas_and_exits_1(tmp_path, argon, lj, capsys):
    structure = tmp_path / "argon.extxyz"
    ase.io.write(structure, argon)
    argv = ["md", str(structure), "--model", "unused", "--ensemble", "nve", "--replicas", "4", "--dt", "62"]
    argv += ["--temperature", "200", "--steps", "100", "--output", str(tmp_path / "run.h5"), "--no-progress"]
    with pytest.warns(RuntimeWarning, match="dropped"), pytest.raises(md.ExplosionError) as failure:
        md_cli.run(cli.build_parser().parse_args(argv), model=lj)
    message = str(failure.value)
    assert message.startswith("step 100: ") and "of 4 replicas exploded and were dropped" in message
    dropped = sorted(int(i) for i in re.findall(r"replica (\d+) at step", message))
    drift_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("NVE drift"))
    shown = drift_line.split(": ")[1].split(", ")
    assert [i for i, value in enumerate(shown) if value == "dropped"] == dropped and len(dropped) < 4
