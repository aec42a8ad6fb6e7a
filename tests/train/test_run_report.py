"""A run that talks: start summary and one plain line per validation (stdout and train.log, also without
a progress bar); ETA and cosine schedule follow ``train.time_limit``."""

from __future__ import annotations

import math

import pytest

from mlip.train.config import ScheduleConfig, config_from_dict
from mlip.train.logs import read_log
from mlip.train.schedule import LRSchedule
from mlip.train.trainer import expected_steps, train


def test_summary_and_validation_lines_without_progress_bar(make_config, tmp_path, capsys):
    out = tmp_path / "run"
    config = make_config(out, train={"max_steps": 8, "valid_every": 4, "device": "cpu"})
    train(config_from_dict(config))
    printed = capsys.readouterr().out
    for expected in (
        "train 28 structures (energy 28, forces 28, stress 0)",  # 40 frames: 20 % valid, 10 % test
        "valid 8 structures (energy 8, forces 8, stress 0)",
        "test  4 structures (energy 4, forces 4, stress 0)",
        "elements H C O",
        "E0s [eV] H ",
        "parameters, float32 on cpu",
        "8 steps of batch 4, validation every 4, schedule constant",
    ):
        assert expected in printed, expected
    lines = [line for line in printed.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["4/8", "8/8"]
    assert all("E MAE" in line and "meV/atom" in line and "F MAE" in line for line in lines)
    log = (out / "train.log").read_text()
    assert "elements H C O" in log and all(line in log for line in lines)
    assert len(lines) == len(read_log(out / "log.csv")["step"])


def test_expected_steps_is_whichever_limit_comes_first():
    assert expected_steps(10, 5.0, 1000, 20.0) == 40  # 2 steps/s, 15 s left -> 30 more
    assert expected_steps(10, 5.0, 25, 20.0) == 25  # max_steps first
    assert expected_steps(10, 25.0, 1000, 20.0) == 10  # past the limit: stops now
    assert expected_steps(0, 0.0, 1000, 20.0) == 1000  # no pace yet


def test_cosine_follows_the_time_limit():
    cfg = ScheduleConfig(kind="cosine", min_lr=1e-4)
    schedule = LRSchedule(cfg, base_lr=1e-2, max_steps=100_000, time_limit=60.0)
    assert schedule.lr(10, elapsed=0.0) == pytest.approx(1e-2, rel=1e-6)
    middle = 1e-4 + 0.5 * (1e-2 - 1e-4) * (1 + math.cos(math.pi * 0.5))
    assert schedule.lr(10, elapsed=30.0) == pytest.approx(middle)
    assert schedule.lr(10, elapsed=60.0) == pytest.approx(1e-4)
    assert schedule.lr(99_000, elapsed=1.0) < 1e-3  # the step count still counts when it is ahead
    assert LRSchedule(cfg, 1e-2, 100_000).lr(10, elapsed=60.0) == pytest.approx(1e-2, rel=1e-6)


def test_time_limited_cosine_run_ends_at_min_lr(make_config, tmp_path, capsys):
    out = tmp_path / "run"
    config = make_config(
        out,
        schedule={"kind": "cosine", "min_lr": 1e-5},
        train={"max_steps": 100_000, "valid_every": 100_000, "time_limit": 1.0, "device": "cpu"},
    )
    results = train(config_from_dict(config))
    assert results["step"] < 100_000 and results["train_seconds"] >= 1.0
    log = read_log(out / "log.csv")
    assert log["lr"][-1] == pytest.approx(1e-5)
    assert "time limit 1 s, schedule cosine" in capsys.readouterr().out
