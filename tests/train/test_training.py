"""Training runs on 40 real ethanol frames with a tiny MACE: learning, resume, crash safety, DDP, eval."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mlip.cli import main as cli_main
from mlip.train.checkpoint import load_checkpoint
from mlip.train.config import config_from_dict
from mlip.train.distributed import Context
from mlip.train.trainer import Trainer, train

BIN = Path(sys.executable).parent
# subprocesses use this process's thread count, so their arithmetic matches in-process runs bit for bit
ENV = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "PYTHONSAFEPATH": "1"}


def _trainer(config: dict, resume: bool = False) -> Trainer:
    return Trainer(config_from_dict(config), Context(0, 1, torch.device("cpu")), resume=resume)


def _final_state(out: Path) -> dict:
    return load_checkpoint(out / "checkpoint_last.pt")


def _assert_same_state(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for x, y in zip(a["ema"]["shadow"], b["ema"]["shadow"], strict=True):
        assert torch.equal(x, y)
    assert a["schedule"] == b["schedule"]


def test_short_run_lowers_loss_and_writes_outputs(tmp_path, make_config):
    config = make_config(
        tmp_path / "run",
        optim={"lr": 0.02},
        train={"max_steps": 60, "valid_every": 30},
        output={"plots": True, "tensorboard": True},
    )
    trainer = _trainer(config)
    before = trainer.evaluate(trainer.valid_records)
    trainer.run()
    results = trainer.finish()
    after = trainer.evaluate(trainer.valid_records)
    assert after["loss"] < 0.75 * before["loss"], (before, after)
    assert after["forces_mae"] < before["forces_mae"]
    out = tmp_path / "run"
    for name in ("config.yaml", "log.csv", "best.model", "last.model", "metrics.json", "learning_curve.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "parity_test.png").exists() and any((out / "tensorboard").iterdir())
    assert (
        json.loads((out / "metrics.json").read_text())["test"]["forces_mae"] == results["test"]["forces_mae"]
    )
    rows = (out / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and [r.split(",")[0] for r in rows[1:]] == ["30", "60"]
    # `mlip eval` on the held-out frames reproduces the trainer's test errors of the best model
    data = tmp_path / "test.extxyz"
    from ase.io import write

    write(data, [_to_atoms(r) for r in trainer.test_records], format="extxyz")
    assert cli_main(["eval", str(out / "best.model"), str(data), "--json", str(tmp_path / "e.json")]) == 0
    evaluated = json.loads((tmp_path / "e.json").read_text())
    assert evaluated["forces_mae"] == pytest.approx(results["test"]["forces_mae"], rel=1e-5)
    assert evaluated["energy_mae"] == pytest.approx(results["test"]["energy_mae"], rel=1e-4)


def _to_atoms(record):
    from mlip.data import to_atoms

    return to_atoms({k: v for k, v in record.items() if k not in ("edge_index", "cell_shifts")})


def test_resume_equals_uninterrupted_run(tmp_path, make_config):
    sections = dict(
        schedule={"kind": "plateau", "warmup_steps": 3, "plateau_patience": 1}, train={"valid_every": 2}
    )
    full = make_config(tmp_path / "full", **sections)
    full["train"]["max_steps"] = 8
    train(config_from_dict(full))
    half = make_config(tmp_path / "half", **sections)
    half["train"]["max_steps"] = 4
    train(config_from_dict(half))
    assert _final_state(tmp_path / "half")["step"] == 4
    train(config_from_dict(half, ["train.max_steps=8"]), resume=True)
    _assert_same_state(_final_state(tmp_path / "full"), _final_state(tmp_path / "half"))
    from mlip.train.logs import read_log

    logs = [read_log(tmp_path / run / "log.csv") for run in ("full", "half")]
    for column in ("step", "lr", "valid_loss", "valid_energy_mae", "valid_forces_mae"):
        assert logs[0][column] == logs[1][column], column


def test_sigkilled_run_resumes_from_last_checkpoint(tmp_path, make_config, to_yaml):
    def config(name):
        return make_config(
            tmp_path / name,
            schedule={"kind": "cosine", "warmup_steps": 2},
            train={"max_steps": 24, "valid_every": 8, "checkpoint_every": 1},
        )

    mlip = [str(BIN / "mlip"), "train"]
    train(config_from_dict(config("reference")))
    killed = tmp_path / "killed"
    to_yaml(tmp_path / "killed.yaml", config("killed"))
    proc = subprocess.Popen(
        [*mlip, str(tmp_path / "killed.yaml")], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        ckpt = killed / "checkpoint_last.pt"
        if ckpt.exists() and load_checkpoint(ckpt)["step"] >= 9:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    state = load_checkpoint(killed / "checkpoint_last.pt")  # loads: the kill never leaves a torn file
    assert 9 <= state["step"] < 24
    from mlip import models

    models.load(killed / "last.model")
    subprocess.run(
        [*mlip, str(tmp_path / "killed.yaml"), "--resume"], env=ENV, check=True, capture_output=True
    )
    _assert_same_state(_final_state(tmp_path / "reference"), _final_state(killed))
    steps = [r.split(",")[0] for r in (killed / "log.csv").read_text().splitlines()[1:]]
    assert steps == ["8", "16", "24"]


@pytest.mark.skipif(shutil.which("torchrun", path=str(BIN)) is None, reason="torchrun not installed")
def test_two_process_ddp_equals_one_process(tmp_path, make_config, to_yaml):
    sections = dict(train={"dtype": "float64", "max_steps": 6, "valid_every": 3, "batch_size": 5})
    one = make_config(tmp_path / "one", **sections)
    two = to_yaml(tmp_path / "two.yaml", make_config(tmp_path / "two", **sections))
    train(config_from_dict(one))
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "--no-python", str(BIN / "mlip")]
    subprocess.run([*cmd, "train", str(two)], env=ENV, check=True, capture_output=True, timeout=600)
    a, b = _final_state(tmp_path / "one"), _final_state(tmp_path / "two")
    assert a["step"] == b["step"] == 6
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-9, atol=1e-11)
    metrics = [json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("one", "two")]
    assert metrics[0]["valid"]["forces_mae"] == pytest.approx(metrics[1]["valid"]["forces_mae"], rel=1e-9)
