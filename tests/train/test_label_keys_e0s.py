"""Issue 20 items 1-2: MACE-style label keys (REF_energy, ...) from YAML and --option; a training set
without labels names the keys looked for and those present; E0s from isolated atoms, a mapping, the
average, or least squares (which falls back to the average when compositions do not determine it)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlip.cli import main as cli_main

TINY_MACE = {"hidden_irreps": "4x0e+4x1o", "max_ell": 1, "correlation": 2, "num_interactions": 1,
             "r_max": 4.0, "radial_mlp": [8], "num_bessel": 4}  # fmt: skip


def _ethanol(count: int) -> list:
    from ase.io import read

    source = resources.files("mlip") / "demo_data" / "ethanol_pbe_def2svp.extxyz"
    with resources.as_file(source) as demo:
        return read(demo, index=f":{count}")


def _mace_style(frames: list, path: Path) -> Path:
    """extxyz with the labels under MACE's names: REF_energy in info, REF_forces per atom, no calculator."""
    from ase.io import write

    out = []
    for atoms in frames:
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms = atoms.copy()
        atoms.calc = None
        atoms.info["REF_energy"] = energy
        atoms.arrays["REF_forces"] = forces
        out.append(atoms)
    write(path, out, format="extxyz")
    return path


def _config(data: Path, out: Path, **data_section) -> dict:
    return {
        "data": {"train": str(data), "valid_fraction": 0.25, **data_section},
        "model": {"name": "mace", "hyperparameters": dict(TINY_MACE)},
        "train": {"max_steps": 1, "batch_size": 4, "valid_every": 1},
        "output": {"dir": str(out), "progress": False, "tensorboard": False, "plots": False},
    }


def _yaml(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def test_label_keys_from_yaml_and_option(tmp_path, capsys):
    data = _mace_style(_ethanol(12), tmp_path / "mace.extxyz")
    keys = {"energy": "REF_energy", "forces": "REF_forces"}
    # YAML data.options.keys: the run trains (1 step) on the labels stored under REF_*
    config = _yaml(tmp_path / "c.yaml", _config(data, tmp_path / "run", options={"keys": keys}))
    assert cli_main(["train", str(config)]) == 0
    # --option keys=... on the data verb sees the same labels
    stats = tmp_path / "stats.json"
    argv = ["data", "stats", str(data), "--option", "keys={energy: REF_energy, forces: REF_forces}"]
    assert cli_main([*argv, "--json", str(stats)]) == 0
    result = json.loads(stats.read_text())
    assert result["elements"] == [1, 6, 8] and result["forces_rms"] > 0
    # a label name that is not a LabelKeys field is a one-line error
    assert cli_main(["data", "stats", str(data), "--option", "keys={energie: REF_energy}"]) == 2
    assert "option keys: unknown label 'energie'" in capsys.readouterr().err


def test_training_set_without_labels_names_the_keys(tmp_path, capsys):
    data = _mace_style(_ethanol(12), tmp_path / "mace.extxyz")
    config = _yaml(tmp_path / "c.yaml", _config(data, tmp_path / "run"))
    assert cli_main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert (
        "mace.extxyz: the training set has no energy or force labels; looked for ['energy', 'forces', " in err
    )
    held = err[err.index("the file holds [") : err.index("]; name them")]
    assert "'REF_energy'" in held and "'REF_forces'" in held, err
    assert err.rstrip().endswith(
        "name them with data.options.keys, e.g. {energy: REF_energy, forces: REF_forces}"
    )


ISOLATED = {1: -13.571, 6: -1027.592, 8: -2039.734}  # eV, single-atom reference energies


def _with_isolated_atoms(frames: list, path: Path) -> Path:
    """The frames, then one single-atom frame per element with config_type=IsolatedAtom (MACE's layout)."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    atoms_frames = list(frames)
    for z, energy in ISOLATED.items():
        atom = Atoms(numbers=[z], positions=[[0.0, 0.0, 0.0]])
        atom.info["config_type"] = "IsolatedAtom"
        atom.calc = SinglePointCalculator(atom, energy=energy, forces=np.zeros((1, 3)))
        atoms_frames.insert(2 * z % len(frames), atom)  # spread through the file
    write(path, atoms_frames, format="extxyz")
    return path


def _trainer(config: dict):
    import torch

    from mlip.train.config import config_from_dict
    from mlip.train.distributed import Context
    from mlip.train.trainer import Trainer

    return Trainer(config_from_dict(config), Context(0, 1, torch.device("cpu")))


def _mean_energy_per_atom(frames: list) -> float:
    return float(np.mean([a.get_potential_energy() / len(a) for a in frames]))


def test_e0s_from_isolated_atom_frames(tmp_path):
    """Default e0s (auto) on a file with IsolatedAtom frames: E0s are their energies, the frames are left
    out of every split, and the model carries the E0s."""
    frames = _ethanol(12)
    data = _with_isolated_atoms(frames, tmp_path / "iso.extxyz")
    trainer = _trainer(_config(data, tmp_path / "run"))
    assert trainer.stats.e0 == ISOLATED and trainer.stats.e0_method == "given"
    records = trainer.train_records + trainer.valid_records
    assert len(records) == 12 and all(r["positions"].shape[0] == 9 for r in records)
    assert trainer.model.config.e0s == [ISOLATED[1], ISOLATED[6], ISOLATED[8]]


# model.e0s -> (expected E0 per Z, as a function of the training frames; the stderr expected)
E0_CHOICES = {
    "mapping": ({"H": -13.6, "C": -1030.0, "O": -2040.0}, lambda fr: {1: -13.6, 6: -1030.0, 8: -2040.0}, ""),
    "average": ("average", lambda fr: dict.fromkeys((1, 6, 8), _mean_energy_per_atom(fr)), ""),
    # the minimum-norm least-squares split E * n_Z / |n|^2 would give H about -616 eV
    "least squares on one composition falls back to the average": (
        "least_squares",
        lambda fr: dict.fromkeys((1, 6, 8), _mean_energy_per_atom(fr)),
        "least squares cannot separate the E0s of elements [1, 6, 8]",
    ),
}


@pytest.mark.parametrize("case", list(E0_CHOICES))
def test_e0_choices(case, tmp_path, capsys):
    from ase.io import write

    e0s, expected, warning = E0_CHOICES[case]
    frames = _ethanol(12)
    write(tmp_path / "ethanol.extxyz", frames, format="extxyz")
    config = _config(tmp_path / "ethanol.extxyz", tmp_path / "run", valid_fraction=0.0)
    config["model"]["e0s"] = e0s
    trainer = _trainer(config)
    assert trainer.stats.e0 == pytest.approx(expected(frames), abs=1e-9)
    assert warning in capsys.readouterr().err


def test_isolated_atoms_requested_but_absent(tmp_path, capsys):
    from ase.io import write

    write(tmp_path / "ethanol.extxyz", _ethanol(12), format="extxyz")
    config = _config(tmp_path / "ethanol.extxyz", tmp_path / "run")
    config["model"]["e0s"] = "isolated_atoms"
    assert cli_main(["train", str(_yaml(tmp_path / "c.yaml", config))]) == 2
    err = capsys.readouterr().err
    assert (
        "error: model.e0s: isolated_atoms, but " in err and "holds no config_type=IsolatedAtom frames" in err
    )
