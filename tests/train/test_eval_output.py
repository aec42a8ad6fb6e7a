"""``mlip eval --output``: per-structure predictions beside the references in extxyz; units in the JSON;
no overwrite without ``--overwrite``."""

import json

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from mlip.calculator import MLIPCalculator
from mlip.cli import main as cli_main
from mlip.models import create, load

from .conftest import TINY_MACE


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.model"
    create("mace", species=["H", "C", "O", "Cu"], seed=0, **TINY_MACE).save(path)
    return path


def test_eval_writes_predictions_beside_references(model_file, tiny_data, tmp_path):
    out, metrics = tmp_path / "predictions.extxyz", tmp_path / "metrics.json"
    args = ["eval", str(model_file), str(tiny_data), "--device", "cpu", "--output", str(out)]
    assert cli_main([*args, "--json", str(metrics)]) == 0

    source, written = read(tiny_data, ":"), read(out, ":")
    assert len(written) == len(source) == 40
    calc = MLIPCalculator(load(model_file), dtype=torch.float32)
    for i in (0, 17, 39):
        np.testing.assert_allclose(written[i].positions, source[i].positions)
        assert written[i].info["REF_energy"] == pytest.approx(source[i].get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(written[i].arrays["REF_forces"], source[i].get_forces(), atol=1e-9)
        atoms = source[i].copy()
        atoms.calc = calc
        assert written[i].info["MLIP_energy"] == pytest.approx(atoms.get_potential_energy(), abs=1e-3)
        np.testing.assert_allclose(written[i].arrays["MLIP_forces"], atoms.get_forces(), atol=1e-4)
    assert "MLIP_stress" not in written[0].info  # not asked for

    report = json.loads(metrics.read_text())
    assert report["units"]["energy_mae"] == "meV/atom" and report["units"]["forces_rmse"] == "meV/Å"
    assert set(report["units"]) == set(report) - {"model", "data", "units"}

    before = out.read_bytes()
    assert cli_main(args) == 2  # exists: refused before any work, file untouched
    assert out.read_bytes() == before
    assert cli_main([*args, "--overwrite"]) == 0


def test_eval_output_holds_stress_of_periodic_cells(model_file, tmp_path):
    frames = []
    for a in (3.55, 3.6):
        atoms = bulk("Cu", "fcc", a=a, cubic=True)
        stress = np.array([0.01, 0.02, 0.03, 0.0, 0.0, 0.001])
        atoms.calc = SinglePointCalculator(atoms, energy=-14.0, forces=np.zeros((4, 3)), stress=stress)
        frames.append(atoms)
    data, out = tmp_path / "cu.extxyz", tmp_path / "cu_pred.extxyz"
    write(data, frames, format="extxyz")
    assert (
        cli_main(["eval", str(model_file), str(data), "--stress", "--device", "cpu", "--output", str(out)])
        == 0
    )
    written = read(out, ":")
    calc = MLIPCalculator(load(model_file), dtype=torch.float32)
    for frame, source in zip(written, frames, strict=True):
        ref = np.asarray(frame.info["REF_stress"]).reshape(3, 3)
        np.testing.assert_allclose(
            ref[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]], source.get_stress(), atol=1e-12
        )
        atoms = source.copy()
        atoms.calc = calc
        predicted = np.asarray(frame.info["MLIP_stress"]).reshape(3, 3)
        np.testing.assert_allclose(
            predicted[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]], atoms.get_stress(), atol=1e-5
        )
