"""Bad input to training, model files and datasets: every case is one row of a table below.

Each row writes a file in its real format (extxyz, npz, QM9 CSV, HDF5 cache, OC20 LMDB, safetensors model,
training checkpoint, YAML config), feeds it to the package the way a user would (``mlip.datasets.load``,
``mlip.models.load``, ``mlip train/eval/data``), and states the error expected and what must be kept.
Issue 15 items: 8 model/checkpoint integrity, 9 no silent overwrite of a run, 10 ``--resume`` compares
configs, 11 non-finite loss and invalid config values, 12 resume bookkeeping, 13 parse errors name file,
record and field, 14 HDF5 cache validated on read, 15 bounded unpickling, 16 one-line CLI errors.
Training runs use a tiny MACE on 24 real ethanol frames for 2-4 steps.
"""

from __future__ import annotations

import os
import pickle
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mlip.cli import main as cli_main
from mlip.data import DataError
from mlip.models.io import ModelFileError

TINY_MACE = {
    "hidden_irreps": "4x0e+4x1o",
    "max_ell": 1,
    "correlation": 2,
    "num_interactions": 1,
    "r_max": 4.0,
    "radial_mlp": [8],
    "num_bessel": 4,
}


# -- files in their real formats ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def frames():
    """24 ethanol frames (PBE/def2-SVP energies and forces) as ase.Atoms."""
    from ase.io import read

    source = resources.files("mlip") / "demo_data" / "ethanol_pbe_def2svp.extxyz"
    with resources.as_file(source) as demo:
        return read(demo, index=":24")


@pytest.fixture(scope="module")
def ethanol(frames, tmp_path_factory) -> Path:
    from ase.io import write

    path = tmp_path_factory.mktemp("data") / "ethanol.extxyz"
    write(path, frames, format="extxyz")
    return path


def _extxyz_non_numeric(d: Path, ethanol: Path) -> Path:
    """Two frames; the second frame's comment line says ``energy=abc``."""
    import re

    lines = ethanol.read_text().splitlines(keepends=True)
    n = int(lines[0])
    lines[n + 3] = re.sub(r"energy=\S+", "energy=abc", lines[n + 3])
    (d / "bad.extxyz").write_text("".join(lines[: 2 * (n + 2)]))
    return d / "bad.extxyz"


def _npz_string_energies(d: Path, ethanol: Path) -> Path:
    z = np.array([6, 6, 8, 1, 1, 1, 1, 1, 1])
    np.savez(
        d / "strings.npz",
        nuclear_charges=z,
        coords=np.zeros((2, 9, 3)) + np.arange(9)[:, None],
        energies=np.array(["-97000.1", "n/a"]),
        forces=np.zeros((2, 9, 3)),
    )
    return d / "strings.npz"


def _qm9_csv(rows: list[list[str]]) -> str:
    from mlip.datasets.qm9 import CSV_COLUMNS

    header = ["Index", "Elements", "XYZ_Ang", *CSV_COLUMNS.values()]
    return "\n".join(",".join(r) for r in [header, *rows]) + "\n"


def _qm9_row(index: int) -> list[str]:
    xyz = '"[[0.0,0.0,0.0],[0.63,0.63,0.63],[-0.63,-0.63,0.63],[-0.63,0.63,-0.63],[0.63,-0.63,-0.63]]"'
    values = ["157.7", "157.7", "157.7", "0.0", "13.21", "-0.3877", "0.1171", "0.5048", "35.36"]
    values += ["0.044749", "-40.47893", "-40.476062", "-40.475117", "-40.498597", "6.469"]
    return [str(index), "\"['C', 'H', 'H', 'H', 'H']\"", xyz, *values]


def _qm9_csv_cut(d: Path, ethanol: Path) -> Path:
    text = _qm9_csv([_qm9_row(1), _qm9_row(2)])
    (d / "cut.csv").write_text(text[: text.rindex("-40.47893")])  # the file ends inside the second row
    return d / "cut.csv"


def _random_bytes_csv(d: Path, ethanol: Path) -> Path:
    (d / "random.csv").write_bytes(bytes(np.random.default_rng(0).integers(128, 256, 400, dtype=np.uint8)))
    return d / "random.csv"


def _cache(d: Path, ethanol: Path, name: str) -> Path:
    from mlip.datasets import load, write_cache

    return write_cache(load(ethanol), d / name)


def _cache_flipped_byte(d: Path, ethanol: Path) -> Path:
    import h5py

    path = _cache(d, ethanol, "flipped.h5")
    with h5py.File(path, "r") as f:
        chunk = f["atoms/positions"].id.get_chunk_info(0)
    data = bytearray(path.read_bytes())
    data[chunk.byte_offset + chunk.size // 2] ^= 0x10
    path.write_bytes(bytes(data))
    return path


def _cache_edited(d: Path, ethanol: Path, name: str, field: str, index: tuple, value: float) -> Path:
    import h5py

    path = _cache(d, ethanol, name)
    with h5py.File(path, "r+") as f:
        f[field][index] = value
    return path


def _cache_nan_position(d: Path, ethanol: Path) -> Path:  # atom 20 is in structure 2 (9 atoms each)
    return _cache_edited(d, ethanol, "nan_pos.h5", "atoms/positions", (20, 1), np.nan)


def _cache_inf_energy(d: Path, ethanol: Path) -> Path:
    return _cache_edited(d, ethanol, "inf_energy.h5", "structures/energy", (1,), np.inf)


def memo_bomb(levels: int = 7, width: int = 10) -> bytes:
    """A 174-byte protocol-2 pickle: level k is a list of ``width`` memo references to level k-1, so the
    result expands to ``width**levels`` = 10 M entries while unpickling costs almost nothing."""
    out = b"\x80\x02]q\x00"
    for k in range(1, levels + 1):
        out += b"(" + (b"h" + bytes([k - 1])) * width + b"lq" + bytes([k])
    return out + b"."


def _lmdb_memo_bomb(d: Path, ethanol: Path) -> Path:
    import lmdb

    env = lmdb.open(str(d / "bomb.lmdb"), subdir=False, map_size=1 << 22, meminit=False)
    with env.begin(write=True) as txn:
        txn.put(b"0", memo_bomb())
        txn.put(b"length", pickle.dumps(1))
    env.close()
    return d / "bomb.lmdb"


# item: (writer, expected DataError message, as a regex)
DATA_FILES = {
    "13 extxyz non-numeric energy": (
        _extxyz_non_numeric,
        r"bad\.extxyz, record 1: field 'energy' is not numeric",
    ),
    "13 npz string energies": (_npz_string_energies, r"strings\.npz: field 'energies' holds <U\d+ values"),
    "13 QM9 CSV cut mid-row": (
        _qm9_csv_cut,
        r"cut\.csv, record 1 \(CSV row 3\): field 'InternalEnergy_298K_au' missing \(row cut short",
    ),
    "13 random bytes .csv": (_random_bytes_csv, r"random\.csv: not a UTF-8 text CSV file"),
    "13 HDF5 cache flipped byte": (
        _cache_flipped_byte,
        r"flipped\.h5: field 'atoms/positions' cannot be read, the file is corrupt",
    ),
    "14 HDF5 cache NaN position": (
        _cache_nan_position,
        r"nan_pos\.h5, record 2: field 'positions' is not finite \(atom 2\)",
    ),
    "14 HDF5 cache inf energy": (
        _cache_inf_energy,
        r"inf_energy\.h5, record 1: field 'energy' is not finite",
    ),
    "15 OC20 LMDB memo bomb": (
        _lmdb_memo_bomb,
        r"bomb\.lmdb, record 0: refused, containers expand to more than \d+ entries",
    ),
}


@pytest.mark.parametrize("case", list(DATA_FILES))
def test_bad_data_file_is_named(case, tmp_path, ethanol):
    """Items 13-15: reading every record of the file raises DataError naming file, record and field."""
    from mlip.datasets import load

    write, message = DATA_FILES[case]
    path = write(tmp_path, ethanol)
    with pytest.raises(DataError, match=message):
        dataset = load(path)
        for i in range(len(dataset)):
            dataset[i]


def test_memo_bomb_is_refused_before_it_expands():
    """Item 15: the refusal comes from measuring the unpickled graph, in linear time: the bomb would be
    10**7 entries if walked naively, and the same shape one level smaller (10**6) is refused too."""
    from mlip.datasets.safe_pickle import restricted_loads

    assert len(memo_bomb()) == 174
    for levels in (6, 7):
        with pytest.raises(DataError, match="refused, containers expand"):
            restricted_loads(memo_bomb(levels), "x")
    assert restricted_loads(memo_bomb(levels=2), "x") == [[[]] * 10] * 10  # 110 entries: fine


# -- model files and checkpoints (item 8) --------------------------------------------------------------
@pytest.fixture(scope="module")
def run(ethanol, tmp_path_factory) -> Path:
    """A finished 4-step run (checkpoints at steps 2 and 4)."""
    out = tmp_path_factory.mktemp("runs") / "base"
    config = _config(ethanol, out)
    assert cli_main(["train", str(_yaml(out.parent / "base.yaml", config))]) == 0
    return out


def _config(data: Path, out: Path, **sections) -> dict:
    config = {
        "data": {"train": str(data), "valid_fraction": 0.25},
        "model": {"name": "mace", "hyperparameters": dict(TINY_MACE), "e0s": "average"},  # one molecule
        "optim": {"lr": 0.01},
        "schedule": {"kind": "constant"},
        "train": {"max_steps": 4, "batch_size": 4, "valid_every": 2},
        "output": {"dir": str(out), "progress": False, "tensorboard": False, "plots": False},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    return config


def _yaml(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def _flip_last_byte_but(path: Path, back: int) -> None:
    data = bytearray(path.read_bytes())
    data[-back] ^= 0x01
    path.write_bytes(bytes(data))


def _model_flipped(model: Path) -> None:
    _flip_last_byte_but(model, 3)  # inside the tensor data, after the header


def _model_nan_weight(model: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from mlip.models.io import tensor_digest

    with safe_open(str(model), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(model))
    name = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
    tensors[name][0] = float("nan")
    save_file(tensors, str(model), metadata={**metadata, "sha256": tensor_digest(tensors)})


MODEL_FILES = {
    "8 model file with a flipped byte": (_model_flipped, r"best\.model: corrupt model file, the tensor data"),
    "8 model file with a NaN weight": (_model_nan_weight, r"best\.model: weight '.+' holds NaN or inf"),
}


@pytest.mark.parametrize("case", list(MODEL_FILES))
def test_damaged_model_file_is_refused(case, run, tmp_path):
    from mlip import models

    damage, message = MODEL_FILES[case]
    model = shutil.copy(run / "best.model", tmp_path / "best.model")
    damage(Path(model))
    with pytest.raises(ModelFileError, match=message):
        models.load(model)


def test_model_file_without_checksum_still_loads(run, tmp_path):
    """Item 8: a file written before the digest existed (no ``sha256`` in its metadata) loads unchanged."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from mlip import models

    with safe_open(str(run / "best.model"), framework="pt") as f:
        metadata = {k: v for k, v in f.metadata().items() if k != "sha256"}
    save_file(load_file(str(run / "best.model")), str(tmp_path / "old.model"), metadata=metadata)
    old, new = models.load(tmp_path / "old.model"), models.load(run / "best.model")
    for (name, a), b in zip(old.state_dict().items(), new.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def _checkpoint_flipped(out: Path) -> None:
    """Flip one byte in the middle of the largest tensor record of the checkpoint's zip."""
    import struct
    import zipfile

    path = out / "checkpoint_last.pt"
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    data[info.header_offset + 30 + name_len + extra_len + info.file_size // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _checkpoint_mismatched(out: Path) -> None:
    """An old-style checkpoint (no digest) whose weights are for another architecture."""
    state = torch.load(out / "checkpoint_last.pt", weights_only=True)
    del state["sha256"]
    key = next(k for k, v in state["model"].items() if v.ndim == 2)
    state["model"][key] = torch.zeros(3, 5)
    torch.save(state, out / "checkpoint_last.pt")


CHECKPOINTS = {
    "8 checkpoint with a flipped byte": (
        _checkpoint_flipped,
        r"checkpoint_last\.pt: corrupt checkpoint, its contents do not match its sha256 digest",
    ),
    "8 checkpoint of another model": (
        _checkpoint_mismatched,
        r"checkpoint_last\.pt: checkpoint does not fit this run \(RuntimeError: Error\(s\) in loading",
    ),
}


@pytest.mark.parametrize("case", list(CHECKPOINTS))
def test_damaged_checkpoint_on_resume(case, run, ethanol, tmp_path, capsys):
    """Item 8 through ``mlip train --resume``: exit 2, one line naming the file; the files stay."""
    damage, message = CHECKPOINTS[case]
    out = tmp_path / "run"
    shutil.copytree(run, out)
    damage(out)
    before = (out / "checkpoint_last.pt").read_bytes()
    config = _yaml(tmp_path / "c.yaml", _config(ethanol, out, train={"max_steps": 6}))
    assert cli_main(["train", str(config), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mlip train: error: "), err
    assert _search(message, err)
    assert (out / "checkpoint_last.pt").read_bytes() == before


# -- runs: overwrite, resume, non-finite loss, config values (items 9-12, 16) ---------------------------
def _search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text) is not None


# item: (extra CLI arguments, config sections, expected exit code, stderr regex, files kept unchanged)
RUNS = {
    "9 train again in a used output.dir": (
        [],
        {},
        2,
        r"error: output\.dir .+ holds an earlier run \(best\.model, checkpoint_best\.pt, "
        r"checkpoint_last\.pt, "
        r"last\.model\): pass --resume to continue it or --overwrite to replace it",
        ("checkpoint_last.pt", "best.model", "log.csv"),
    ),
    "10 resume with other model and data fields": (
        ["--resume", "--set", "model.hyperparameters.r_max=3.5", "--set", "data.valid_fraction=0.5"],
        {"train": {"max_steps": 6}},
        2,
        r"error: --resume: the config differs .+ define the model or the data: "
        r"data\.valid_fraction: 0\.25 -> "
        r"0\.5; model\.hyperparameters\.r_max: 4\.0 -> 3\.5$",
        ("checkpoint_last.pt", "best.model", "log.csv"),
    ),
    "10 resume with other dtype": (
        ["--resume", "--set", "train.dtype=float64"],
        {},
        2,
        r"error: --resume: .+: train\.dtype: 'float32' -> 'float64'$",
        ("checkpoint_last.pt", "best.model", "log.csv"),
    ),
    "10 resume with longer run and new lr warns": (
        ["--resume", "--set", "optim.lr=0.005"],
        {"train": {"max_steps": 6}},
        0,
        r"warning: resuming with changed fields: optim\.lr: 0\.01 -> 0\.005; train\.max_steps: 4 -> 6",
        (),
    ),
    "11 non-finite loss term": (
        ["--overwrite"],
        {"loss": {"stages": [{"start_step": 2, "energy_weight": 1.0, "forces_weight": 1e39}]}},
        1,
        r"failed: step 2: loss term 'forces' is inf; training stopped, kept .+checkpoint_last\.pt \(step 2\) "
        r"and best\.model$",
        (),
    ),
}


@pytest.mark.parametrize("case", list(RUNS))
def test_training_run_table(case, run, ethanol, tmp_path, capsys):
    """Items 9, 10, 11 (and 16: the CLI prints one line): each row runs ``mlip train`` in a copy of a finished
    4-step run folder and checks exit code, message and the files kept."""
    extra, sections, code, message, kept = RUNS[case]
    out = tmp_path / "run"
    shutil.copytree(run, out)
    before = {name: (out / name).read_bytes() for name in kept}
    config = _yaml(tmp_path / "c.yaml", _config(ethanol, out, **sections))
    assert cli_main(["train", str(config), *extra]) == code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("mlip train: ")]
    assert len(lines) == 1 and _search(message, lines[0]), err
    for name, data in before.items():
        assert (out / name).read_bytes() == data, name
    if case.startswith("11"):  # the last checkpoint is the finite one of step 2; best.model loads
        from mlip import models
        from mlip.train.checkpoint import load_checkpoint

        state = load_checkpoint(out / "checkpoint_last.pt")
        assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values())
        models.load(out / "best.model")


def test_resume_without_checkpoint_is_an_error(ethanol, tmp_path, capsys):
    """Item 9: ``--resume`` in an empty folder does not start a fresh run."""
    config = _yaml(tmp_path / "c.yaml", _config(ethanol, tmp_path / "empty"))
    assert cli_main(["train", str(config), "--resume"]) == 2
    assert _search(
        r"^mlip train: error: --resume: no checkpoint_last\.pt in output\.dir .+empty, nothing to "
        r"resume\n$",
        capsys.readouterr().err,
    )
    assert not (tmp_path / "empty").exists()


def test_overwrite_replaces_the_earlier_run(run, ethanol, tmp_path):
    """Item 9: ``--overwrite`` deletes the earlier outputs and trains afresh (2 steps, one validation)."""
    out = tmp_path / "run"
    shutil.copytree(run, out)
    config = _yaml(tmp_path / "c.yaml", _config(ethanol, out, train={"max_steps": 2}))
    assert cli_main(["train", str(config), "--overwrite"]) == 0
    assert [r.split(",")[0] for r in (out / "log.csv").read_text().splitlines()[1:]] == ["2"]


CONFIG_VALUES = {
    "optim.lr=0": r"optim\.lr: must be > 0, got 0\.0",
    "optim.lr=-1e-3": r"optim\.lr: must be > 0, got -0\.001",
    "loss.forces_weight=-1": r"loss\.forces_weight: must be finite and >= 0, got -1\.0",
    "loss.stages=[{start_step: 2, energy_weight: -5}]": r"loss\.stages\[0\]\.energy_weight: must be finite",
    "optim.clip_grad_norm=0": r"optim\.clip_grad_norm: must be > 0",
    "schedule.plateau_factor=1.5": r"schedule\.plateau_factor: must be in \(0, 1\)",
    "train.batch_size=100": r"train\.batch_size: 100 exceeds the 18 training structures of .+ethanol\.extxyz",
}


@pytest.mark.parametrize("override", list(CONFIG_VALUES))
def test_invalid_config_value_names_the_field(override, ethanol, tmp_path, capsys):
    """Item 11: values that cannot train are config errors (exit 2) naming the field; nothing is written."""
    config = _yaml(tmp_path / "c.yaml", _config(ethanol, tmp_path / "out"))
    assert cli_main(["train", str(config), "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlip train: error: ") and err.count("\n") == 1, err
    assert _search(CONFIG_VALUES[override], err), err
    assert not (tmp_path / "out" / "checkpoint_last.pt").exists()


def test_resumed_log_equals_uninterrupted_one(ethanol, tmp_path):
    """Item 12: a run of 4 steps whose log.csv was torn mid-row by a crash and which left a temporary file,
    resumed to 8 steps, writes the log of an uninterrupted 8-step run (running train-loss means included),
    and leaves no ``*.tmp*`` file."""
    full = _yaml(tmp_path / "full.yaml", _config(ethanol, tmp_path / "full", train={"max_steps": 8}))
    assert cli_main(["train", str(full)]) == 0
    half = tmp_path / "half"
    assert cli_main(["train", str(_yaml(tmp_path / "half.yaml", _config(ethanol, half)))]) == 0
    with open(half / "log.csv", "a") as f:
        f.write("6,1.33,0.51,0.00")  # the crash tore this row
    (half / f".checkpoint_last.pt.tmp{os.getpid() + 1}").write_bytes(b"partial")
    resumed = _yaml(tmp_path / "half.yaml", _config(ethanol, half, train={"max_steps": 8}))
    assert cli_main(["train", str(resumed), "--resume"]) == 0

    def rows(out: Path) -> list[list[str]]:  # time_s (column 3) is wall time
        return [r.split(",")[:2] + r.split(",")[3:] for r in (out / "log.csv").read_text().splitlines()]

    assert rows(half) == rows(tmp_path / "full") and len(rows(half)) == 5
    assert [p.name for p in half.iterdir() if ".tmp" in p.name] == []


# -- CLI: one line, exit 2, traceback only with --debug (item 16) --------------------------------------
def _eval_unknown_element(tmp: Path, run: Path, ethanol: Path) -> list[str]:
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    atoms = Atoms("NH3", positions=[[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=np.zeros((4, 3)))
    write(tmp / "nh3.extxyz", atoms)
    return ["eval", str(run / "best.model"), str(tmp / "nh3.extxyz")]


def _train_missing_data(tmp: Path, run: Path, ethanol: Path) -> list[str]:
    return ["train", str(_yaml(tmp / "c.yaml", _config(tmp / "nowhere.extxyz", tmp / "out")))]


def _train_bad_yaml(tmp: Path, run: Path, ethanol: Path) -> list[str]:
    (tmp / "bad.yaml").write_text("data:\n  train: [unclosed\n")
    return ["train", str(tmp / "bad.yaml")]


def _data_stats_bad_option(tmp: Path, run: Path, ethanol: Path) -> list[str]:
    return ["data", "stats", str(ethanol), "--option", "molecule=aspirin"]


def _data_convert_corrupt(tmp: Path, run: Path, ethanol: Path) -> list[str]:
    return ["data", "convert", str(_random_bytes_csv(tmp, ethanol)), str(tmp / "out.h5")]


CLI = {
    "16 train: missing config file": (
        lambda tmp, run, ethanol: ["train", str(tmp / "missing.yaml")],
        r"mlip train: error: .+missing\.yaml: No such file or directory",
    ),
    "16 train: missing data path": (
        _train_missing_data,
        r"mlip train: error: .+nowhere\.extxyz does not exist",
    ),
    "16 train: bad YAML": (_train_bad_yaml, r"mlip train: error: .+bad\.yaml: not valid YAML \(.+line 3"),
    "16 eval: unknown element": (
        _eval_unknown_element,
        r"mlip eval: error: element N \(Z=7\) not in the model",
    ),
    "16 eval: missing model": (
        lambda tmp, run, ethanol: ["eval", str(tmp / "none.model"), str(ethanol)],
        r"mlip eval: error: .+none\.model: no such model file",
    ),
    "16 data: unknown loader option": (
        _data_stats_bad_option,
        r"mlip data: error: .+ethanol\.extxyz: unknown option 'molecule' for load_ase; known: \['format'",
    ),
    "16 data: corrupt source": (
        _data_convert_corrupt,
        r"mlip data: error: .+random\.csv: not a UTF-8 text CSV",
    ),
}


@pytest.mark.parametrize("case", list(CLI))
def test_cli_user_error_is_one_line(case, run, ethanol, tmp_path, capsys, monkeypatch):
    """Item 16: exit 2, one line ``mlip VERB: error: ...``, no traceback; ``--debug`` and ``MLIP_DEBUG=1``
    raise the error with its traceback instead."""
    argv, message = CLI[case]
    args = argv(tmp_path, run, ethanol)
    monkeypatch.delenv("MLIP_DEBUG", raising=False)
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and _search(f"^{message}", err), err
    with pytest.raises((ValueError, OSError)):
        cli_main(["--debug", *args])
    monkeypatch.setenv("MLIP_DEBUG", "1")
    with pytest.raises((ValueError, OSError)):
        cli_main(args)
