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
    config["dft"]["conv_tol"] = 1e-10  # a few more SCF cycles per frame: time to kill between frames
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
    before = labelled.read_text()
    done = _ids(labelled)
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
