"""Fixtures of the active-learning tests: a tiny PBE/STO-3G water data set labelled here, a tiny config."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

DFT = {"xc": "PBE", "basis": "sto-3g", "grid_level": 1, "conv_tol": 1e-8}
TINY_MACE = {
    "hidden_irreps": "4x0e+4x1o",
    "max_ell": 1,
    "correlation": 2,
    "num_interactions": 1,
    "r_max": 3.0,
    "radial_mlp": [8],
    "num_bessel": 4,
}


@pytest.fixture(scope="session")
def water_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(seed, test): 8 and 4 thermal water configurations (normal modes at 600 K), PBE/STO-3G labels."""
    if importlib.util.find_spec("pyscf") is None:
        pytest.skip("pyscf (extra 'dft') not installed")
    from mlip.dft import sampling
    from mlip.dft.executor import LocalExecutor
    from mlip.dft.labelling import label_configurations
    from mlip.dft.pyscf_labeler import DFTSettings

    folder = tmp_path_factory.mktemp("water")
    frames = sampling.sample_molecule(sampling.molecule_from_smiles("O"), 12, 600.0, seed=0)
    seed, test = folder / "seed.extxyz", folder / "test.extxyz"
    for path, part in ((seed, frames[:8]), (test, frames[8:])):
        # one OpenMP thread: two threads on a shared 2-core machine run PySCF ~10x slower
        report = label_configurations(part, path, DFTSettings(**DFT), LocalExecutor(1, 1), progress=False)
        assert not report.failed
    return seed, test


@pytest.fixture
def learn_config(water_sets):
    """``learn_config(out_dir, **sections)``: a plain ``mlip learn`` config dict for a short run; each
    section's fields update the defaults (a plain field such as ``warm_start`` is set)."""
    seed, test = water_sets

    def make(out: Path, **sections) -> dict:
        config = {
            "train": {
                "data": {"train": str(seed), "valid_fraction": 0.25},
                "model": {"name": "mace", "hyperparameters": dict(TINY_MACE), "e0s": "average"},
                "optim": {"lr": 0.01},
                "schedule": {"kind": "constant"},
                "train": {"max_steps": 6, "batch_size": 4, "valid_every": 3, "committee": 2},
                "output": {"progress": False, "tensorboard": False, "plots": False},
            },
            "test": str(test),
            "md": {"temperature": 600.0, "steps": 60, "write_interval": 3},
            "select": {"threshold": 0.001, "frames": 3, "min_distance": 0.001},
            "dft": dict(DFT),
            "label": {"threads_per_worker": 1},
            "stop": {"max_rounds": 2},
            "output": {"dir": str(out), "progress": False},
        }
        for name, values in sections.items():  # a section's fields are updated, a plain field replaced
            if isinstance(values, dict):
                config.setdefault(name, {}).update(values)
            else:
                config[name] = values
        return config

    return make


@pytest.fixture
def write_yaml():
    """``write_yaml(path, config)`` writes a config dict as YAML and returns the path."""

    def write(path: Path, config: dict) -> Path:
        path.write_text(yaml.safe_dump(config))
        return path

    return write
