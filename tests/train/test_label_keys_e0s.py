"""Issue 20 items 1-2: MACE-style label keys (REF_energy, ...) from YAML and --option; a training set
without labels names the keys looked for and those present; E0s from isolated atoms, a mapping, the
average, or least squares (which falls back to the average when compositions do not determine it)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

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
