"""Fixtures: a small extxyz of real DFT frames (from the embedded demo data) and a tiny MACE config."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml

TINY_MACE = {
    "hidden_irreps": "4x0e+4x1o",
    "max_ell": 1,
    "correlation": 2,
    "num_interactions": 1,
    "r_max": 4.0,
    "radial_mlp": [8],
    "num_bessel": 4,
}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 ethanol frames (PBE/def2-SVP energies and forces) written as extxyz."""
    from ase.io import read, write

    source = resources.files("mlip") / "demo_data" / "ethanol_pbe_def2svp.extxyz"
    path = tmp_path_factory.mktemp("data") / "ethanol40.extxyz"
    with resources.as_file(source) as demo:
        write(path, read(demo, index=":40"), format="extxyz")
    return path


def _tiny_config(data: Path, out: Path, **sections: dict) -> dict:
    config = {
        "data": {"train": str(data), "valid_fraction": 0.2, "test_fraction": 0.1},
        "model": {"name": "mace", "hyperparameters": dict(TINY_MACE)},
        "optim": {"lr": 0.01},
        "schedule": {"kind": "constant"},
        "train": {"max_steps": 8, "batch_size": 4, "valid_every": 4},
        "output": {"dir": str(out), "progress": False, "tensorboard": False, "plots": False},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    return config


@pytest.fixture
def make_config(tiny_data: Path):
    """``make_config(out_dir, **sections)``: a plain config dict for a few-second run on ``tiny_data``;
    ``sections`` update the defaults section by section."""
    return lambda out, **sections: _tiny_config(tiny_data, out, **sections)


def write_yaml(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def to_yaml():
    """``to_yaml(path, config)`` writes a config dict as YAML and returns the path."""
    return write_yaml
