"""`mlip learn`: two labelling rounds end to end, bad input, and a resume after SIGKILL mid-labelling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlip.cli import main as cli_main
from mlip.errors import UserInputError


def _ids(path: Path) -> list[int]:
    from ase.io import read

    return [int(a.info["config_id"]) for a in read(path, index=":")]


def test_two_rounds_end_to_end(tmp_path, learn_config, write_yaml, capsys):
    from ase.io import read

    from mlip.models import Committee, load

    out = tmp_path / "run"
    config = write_yaml(tmp_path / "learn.yaml", learn_config(out))
    assert cli_main(["learn", str(config)]) == 0
    assert "stopped: max_rounds after round 2; 6 DFT calls" in capsys.readouterr().out
    state = json.loads((out / "state.json").read_text())
    assert state["phase"] == "done" and state["stopped"] == "max_rounds"
    history = state["history"]
    assert [r["round"] for r in history] == [0, 1, 2]
    assert [r["train_size"] for r in history] == [8, 11, 14]  # seed + 3 labelled frames per round
    assert [r["labelled"] for r in history[:2]] == [3, 3] and "labelled" not in history[2]
    assert all(
        r["test_forces_mae"] > 0 and r["max_uncertainty"] >= r["mean_uncertainty"] > 0 for r in history
    )
    # the labelled frames: stable ids per round, PBE/STO-3G labels, the selected frames' uncertainty
    labelled = read(out / "labelled.extxyz", index=":")
    assert sorted(_ids(out / "labelled.extxyz")) == [0, 1, 2, 100000, 100001, 100002]
    for atoms in labelled:
        assert atoms.info["dft_xc"] == "PBE" and atoms.info["dft_basis"] == "sto-3g"
        assert atoms.info["committee_forces_std"] > 0.001 and atoms.get_forces().shape == (3, 3)
    selected = read(out / "round1" / "selected.extxyz", index=":")
    stds = [a.info["committee_forces_std"] for a in selected]
    assert stds == sorted(stds, reverse=True)  # most uncertain first
    assert stds == pytest.approx(history[1]["selected_std"], abs=1e-6)
    # round 2 trained on the seed set and both rounds' frames, and is the final model
    assert len(read(out / "round2" / "train.extxyz", index=":")) == 14
    committee = load(out / "committee.model")
    assert isinstance(committee, Committee) and len(committee) == 2
    assert (out / "committee.model").read_bytes() == (out / "round2/committee/committee.model").read_bytes()
    assert (out / "learn.png").stat().st_size > 10_000
    rows = (out / "history.csv").read_text().splitlines()
    assert rows[0].startswith("round,train_size,test_forces_mae") and len(rows) == 4
    # the run folder is not reused by accident; a finished run resumed does no more DFT
    assert cli_main(["learn", str(config)]) == 2
    assert "holds an earlier learning run" in capsys.readouterr().err
    assert cli_main(["learn", str(config), "--resume"]) == 0
    assert len(_ids(out / "labelled.extxyz")) == 6
    # raising the round budget on resume goes on from round 2
    more = write_yaml(tmp_path / "more.yaml", learn_config(out, stop={"max_rounds": 3}, md={"steps": 20}))
    assert cli_main(["learn", str(more), "--resume"]) == 0
    assert sorted(_ids(out / "labelled.extxyz"))[6:] == [200000, 200001, 200002]
    assert json.loads((out / "state.json").read_text())["round"] == 3


def test_bad_input_is_refused_before_any_work(tmp_path, learn_config, write_yaml, capsys):
    out = tmp_path / "run"
    cases = [
        (learn_config(out, select={"frames": 0}), "select.frames: must be >= 1, got 0"),
        (learn_config(out, stop={"budget": 3}), "stop.budget: unknown field"),
        (learn_config(out, dft={"basis": "def2-SVP"}), "seed.extxyz: frame 0: dft_basis = 'sto-3g'"),
        (learn_config(out, md={"max_uncertainty": 0.0005}), "md.max_uncertainty: 0.0005 must exceed"),
    ]
    solo = learn_config(out)
    solo["train"]["train"]["committee"] = 1
    cases.append((solo, "train.train.committee: the loop needs a committee of >= 2 models"))
    for config, message in cases:
        assert cli_main(["learn", str(write_yaml(tmp_path / "bad.yaml", config))]) == 2
        assert message in capsys.readouterr().err
    assert not out.exists()
    config = write_yaml(tmp_path / "ok.yaml", learn_config(out))
    assert cli_main(["learn", str(config), "--resume"]) == 2
    assert "--resume: no state.json" in capsys.readouterr().err


def test_resume_after_sigkill_mid_labelling_loses_and_repeats_nothing(tmp_path, learn_config, write_yaml):
    out = tmp_path / "run"
    config = learn_config(out, stop={"max_rounds": 1}, select={"frames": 4}, warm_start=True)
    # a finer grid and tolerance (not part of the level of theory) make each frame last long enough to
    # kill the run between frames
    config["dft"].update(conv_tol=1e-10, grid_level=3)
    path = write_yaml(tmp_path / "learn.yaml", config)
    mlip = Path(sys.executable).with_name("mlip")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    labelled = out / "labelled.extxyz"
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115 - closed after the process ends
    process = subprocess.Popen([str(mlip), "learn", str(path)], stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if labelled.exists() and labelled.read_text().count("config_id=") >= 1:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    log.close()
    assert process.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-2000:]
    from mlip.dft import store

    done = [int(a.info["config_id"]) for a in store.read_frames(labelled)]  # drops a frame torn by the kill
    before = labelled.read_text()
    assert 1 <= len(done) < 4, f"the kill came after {len(done)} of 4 frames"
    assert json.loads((out / "state.json").read_text())["phase"] == "label"
    resumed = subprocess.run(
        [str(mlip), "learn", str(path), "--resume"], capture_output=True, text=True, env=env, timeout=300
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"round 0 label: {4 - len(done)} of 4 frames to go" in resumed.stdout
    ids = _ids(labelled)
    assert sorted(ids) == [0, 1, 2, 3]  # every selected frame once
    assert labelled.read_text().startswith(
        before
    )  # the frames labelled before the kill are kept as they were
    state = json.loads((out / "state.json").read_text())
    assert state["stopped"] == "max_rounds" and state["round"] == 1
    assert [r["train_size"] for r in state["history"]] == [8, 12]
    assert "stopped: max_rounds after round 1; 4 DFT calls" in resumed.stdout
    # warm start: round 1's members were initialised from round 0's
    text = (out / "round1/committee/member1/config.yaml").read_text()
    assert str(out / "round0/committee/member1/best.model") in text


def _prepared_run(tmp_path, learn_config, write_yaml, state: dict, **sections):
    """A fresh run folder whose state is set to ``state`` (no training run): the config path."""
    from mlip.learn.config import config_from_dict
    from mlip.learn.loop import Loop

    out = tmp_path / "run"
    config = learn_config(out, **sections)
    Loop(config_from_dict(config))  # creates the run folder, config.yaml and state.json
    stored = json.loads((out / "state.json").read_text())
    (out / "state.json").write_text(json.dumps({**stored, **state}))
    return write_yaml(tmp_path / "learn.yaml", config), out


def test_a_round_whose_every_frame_fails_to_label_fails_the_run(tmp_path, learn_config, write_yaml, capsys):
    from ase.build import molecule
    from ase.io import write

    state = {"phase": "label", "history": [{"round": 0, "train_size": 8}]}
    dft = {"max_cycle": 1}  # no SCF converges in one cycle (max_cycle is not part of the level of theory)
    config, out = _prepared_run(tmp_path, learn_config, write_yaml, state, dft=dft)
    frames = [molecule("H2O"), molecule("H2O")]
    for j, atoms in enumerate(frames):
        atoms.positions[0, 0] += 0.05 * j
        atoms.info.update(config_id=j, learn_round=0)
    (out / "round0").mkdir()
    write(out / "round0" / "selected.extxyz", frames, format="extxyz")
    assert cli_main(["learn", str(config), "--resume"]) == 1
    err = capsys.readouterr().err
    assert "mlip learn: failed: round 0: labelling failed for every frame (config 0: SCFNotConverged" in err
    state = json.loads((out / "state.json").read_text())
    assert state["phase"] == "label" and state["failed_calls"] == 2  # counted, and retried by a resume
    assert not (out / "labelled.extxyz").exists() or not _ids(out / "labelled.extxyz")
    assert not (out / "committee.model").exists()


@pytest.mark.parametrize(
    ("record", "stop", "reason"),
    [
        ({"md_stopped": {}, "max_uncertainty": 0.0009}, {}, "converged"),
        ({"md_stopped": {"0": "step 5: uncertain"}, "max_uncertainty": 0.0009}, {"max_dft_calls": 1}, None),
        ({"md_stopped": {}, "max_uncertainty": 0.5}, {"max_rounds": 1}, None),
    ],
)
def test_the_stops_are_named(tmp_path, learn_config, write_yaml, record, stop, reason, capsys):
    """converged: a whole MD run at or below select.threshold (0.001 here), even with budget left."""
    import torch

    from mlip.models import Committee, create, save

    history = [{"round": 0, "train_size": 8, **record}]
    config, out = _prepared_run(
        tmp_path, learn_config, write_yaml, {"phase": "select", "history": history}, stop=stop
    )
    if reason is None:  # the budget stops need a spent budget: one earlier failed DFT call, or round 1
        state = json.loads((out / "state.json").read_text())
        if "max_rounds" in stop:
            state.update(round=1, history=[{"round": 0}, {"round": 1, **record}])
            reason = "max_rounds"
        else:
            state["failed_calls"] = 1
            reason = "max_dft_calls"
        (out / "state.json").write_text(json.dumps(state))
    folder = out / f"round{json.loads((out / 'state.json').read_text())['round']}" / "committee"
    folder.mkdir(parents=True)
    members = [create("mace", species=[1, 8], seed=i, r_max=3.0).to(torch.float64) for i in range(2)]
    save(Committee(members), folder / "committee.model")
    assert cli_main(["learn", str(config), "--resume"]) == 0
    assert f"stopped: {reason}" in capsys.readouterr().out
    state = json.loads((out / "state.json").read_text())
    assert state["stopped"] == reason and state["phase"] == "done"
    assert (out / "committee.model").read_bytes() == (folder / "committee.model").read_bytes()


def test_a_spent_time_limit_ends_the_invocation_ready_to_resume(tmp_path, learn_config, write_yaml, capsys):
    state = {"phase": "label", "history": [{"round": 0, "train_size": 8}]}
    config, out = _prepared_run(tmp_path, learn_config, write_yaml, state, stop={"time_limit": 1e-9})
    assert cli_main(["learn", str(config), "--resume"]) == 0
    output = capsys.readouterr().out
    assert "label: time limit of 0 s reached; resume to go on" in output
    assert "stopped: time_limit (resume with --resume to go on)" in output
    after = json.loads((out / "state.json").read_text())
    assert after["phase"] == "label" and after["stopped"] is None


def test_overwrite_replaces_an_earlier_run(tmp_path, learn_config, write_yaml):
    from mlip.learn.config import config_from_dict
    from mlip.learn.loop import Loop

    state = {"round": 1, "phase": "md", "history": [{"round": 0}, {"round": 1}]}
    config, out = _prepared_run(tmp_path, learn_config, write_yaml, state)
    (out / "labelled.extxyz").write_text("")
    (out / "round0").mkdir()
    with pytest.raises(UserInputError, match="--resume and --overwrite exclude each other"):
        Loop(config_from_dict(learn_config(out)), resume=True, overwrite=True)
    loop = Loop(config_from_dict(learn_config(out)), overwrite=True)
    assert (loop.state.round, loop.state.phase) == (0, "train")
    assert json.loads((out / "state.json").read_text())["phase"] == "train"
    assert not (out / "labelled.extxyz").exists() and not (out / "round0").exists()
