"""Config loading: defaults, overrides, round trip, and errors that name the offending field."""

from __future__ import annotations

import pytest

from mlip.cli import main as cli_main
from mlip.train.config import config_from_dict, dump_config, load_config
from mlip.train.typed_config import ConfigError

BASE = {"data": {"train": "x.extxyz"}}


def test_defaults_overrides_and_round_trip(tmp_path):
    config = config_from_dict(BASE, ["optim.lr=1e-3", "train.dtype=float64", "loss.stages=[{start_step: 5}]"])
    assert config.optim.lr == 1e-3 and isinstance(config.optim.lr, float)
    assert config.train.dtype == "float64"
    assert config.loss.stages[0].start_step == 5 and config.loss.stages[0].forces_weight == 100.0
    assert config.model.name == "mace" and config.train.batch_size == 8
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(config))
    assert load_config(path) == config


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"optim": {"lr": "fast"}}, "optim.lr"),
        ({"optim": {"lrr": 0.1}}, "optim.lrr"),
        ({"loss": {"kind": "l1"}}, "loss.kind"),
        ({"loss": {"stages": [{"start_step": 2}, {"start_step": "x"}]}}, "loss.stages[1].start_step"),
        ({"train": {"batch_size": 0}}, "train.batch_size"),
        ({"train": {"max_steps": 2.5}}, "train.max_steps"),
        ({"output": {"progress": "yes"}}, "output.progress"),
        ({"data": {"train": "x", "valid_fraction": 1.5}}, "data.valid_fraction"),
        ({"model": {"e0s": "mean"}}, "model.e0s"),
        ({"data": {}}, "data.train"),
        ({"trian": {}}, "trian"),
    ],
)
def test_errors_name_the_field(patch, field):
    data = {**BASE, **patch}
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert str(info.value).startswith(f"{field}:"), str(info.value)


def test_cli_reports_config_error(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("data: {train: x.extxyz}\noptim: {lr: [1]}\n")
    assert cli_main(["train", str(path)]) == 2
    assert "optim.lr" in capsys.readouterr().err
    assert cli_main(["train", str(path), "--set", "optim.lr=0.5", "--print-config"]) == 0
    assert "lr: 0.5" in capsys.readouterr().out
