"""rMD17 / MD17 npz loaders against a direct numpy parse, units included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units

from mlip.data import DataError
from mlip.datasets import load
from mlip.datasets.rmd17 import KCAL_PER_MOL, load_rmd17


def test_kcal_factor():
    assert KCAL_PER_MOL == pytest.approx(0.0433641, rel=1e-6)


def test_rmd17_npz_values_and_units(fx, tmp_path):
    arrays = fx.write_rmd17(tmp_path / "rmd17_ethanol.npz")
    ds = load(tmp_path / "rmd17_ethanol.npz")
    assert len(ds) == 6 and ds.metadata["format"] == "rmd17"
    raw = np.load(tmp_path / "rmd17_ethanol.npz")
    for i in (0, 5, -1):
        r = ds[i]
        np.testing.assert_array_equal(r["positions"].numpy(), raw["coords"][i])
        np.testing.assert_array_equal(r["atomic_numbers"].numpy(), raw["nuclear_charges"].astype(np.int64))
        assert r["energy"].item() == pytest.approx(raw["energies"][i] * units.kcal / units.mol, rel=1e-14)
        np.testing.assert_allclose(r["forces"].numpy(), raw["forces"][i] * 0.0433641, rtol=1e-6)
        assert r["positions"].dtype == torch.float64 and not r["pbc"].any()
    atoms = ds.to_atoms(2)
    assert atoms.get_potential_energy() == pytest.approx(arrays["energies"][2] * KCAL_PER_MOL)
    np.testing.assert_allclose(atoms.get_forces(), arrays["forces"][2] * KCAL_PER_MOL)
    assert atoms.get_chemical_formula() == "C2H6O"


def test_rmd17_old_labels(fx, tmp_path):
    arrays = fx.write_rmd17(tmp_path / "m.npz")
    ds = load_rmd17(tmp_path / "m.npz", old_labels=True)
    assert ds[1]["energy"].item() == pytest.approx(arrays["old_energies"][1] * KCAL_PER_MOL)
    np.testing.assert_allclose(ds[1]["forces"].numpy(), arrays["old_forces"][1] * KCAL_PER_MOL)


def test_md17_keys(fx, tmp_path):
    f = fx.rmd17_frames(4, seed=3)
    np.savez(
        tmp_path / "md17_ethanol.npz",
        z=fx.ETHANOL_Z.astype(np.int64),
        R=f["coords"],
        E=f["energies"][:, None],
        F=f["forces"],
        name=np.array("ethanol"),
        theory=np.array("PBE+vdW-TS"),
    )
    ds = load(tmp_path / "md17_ethanol.npz")
    assert ds.metadata["format"] == "md17" and len(ds) == 4
    assert ds[3]["energy"].item() == pytest.approx(f["energies"][3] * KCAL_PER_MOL)
    np.testing.assert_allclose(ds[0]["forces"].numpy(), f["forces"][0] * KCAL_PER_MOL)


def test_release_layout_with_official_split(fx, tmp_path):
    (tmp_path / "npz_data").mkdir()
    (tmp_path / "splits").mkdir()
    arrays = fx.write_rmd17(tmp_path / "npz_data" / "rmd17_ethanol.npz", n=20)
    train = [3, 17, 0, 9]
    (tmp_path / "splits" / "index_train_02.csv").write_text("".join(f"{i}\n" for i in train))
    ds = load(tmp_path, molecule="ethanol", split=2, part="train")
    assert len(ds) == 4
    for k, i in enumerate(train):
        np.testing.assert_array_equal(ds[k]["positions"].numpy(), arrays["coords"][i])
    full = load_rmd17(tmp_path / "npz_data" / "rmd17_ethanol.npz", split=2, part="train")
    np.testing.assert_array_equal(full[1]["positions"].numpy(), arrays["coords"][17])
    with pytest.raises(FileNotFoundError, match="index_test_02"):
        load(tmp_path, molecule="ethanol", split=2, part="test")


def test_per_split_folder(fx, tmp_path):
    a = fx.write_rmd17(tmp_path / "rmd17_ethanol_test_03.npz", n=5, seed=8)
    ds = load(tmp_path, molecule="ethanol", split=3, part="test")
    np.testing.assert_array_equal(ds[4]["positions"].numpy(), a["coords"][4])


def test_truncated_npz(fx, tmp_path):
    fx.write_rmd17(tmp_path / "good.npz")
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "bad.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="bad.npz"):
        load(tmp_path / "bad.npz")


def test_missing_key(fx, tmp_path):
    f = fx.rmd17_frames(2)
    np.savez(tmp_path / "nokeys.npz", coords=f["coords"], energies=f["energies"])
    with pytest.raises(DataError, match=r"nokeys.npz.*nuclear_charges"):
        load(tmp_path / "nokeys.npz")
    np.savez(tmp_path / "other.npz", x=f["coords"])
    with pytest.raises(DataError, match=r"other.npz.*'coords'"):
        load(tmp_path / "other.npz")


def test_nan_and_shape_errors_name_record_and_field(fx, tmp_path):
    arrays = {"nuclear_charges": fx.ETHANOL_Z, **fx.rmd17_frames(5)}
    arrays["forces"][3, 2, 1] = np.nan
    np.savez(tmp_path / "nan.npz", **arrays)
    with pytest.raises(DataError, match=r"nan.npz, record 3: field 'forces' is not finite"):
        load(tmp_path / "nan.npz")
    arrays = {"nuclear_charges": fx.ETHANOL_Z, **fx.rmd17_frames(5)}
    arrays["forces"] = arrays["forces"][:, :8]
    np.savez(tmp_path / "shape.npz", **arrays)
    with pytest.raises(DataError, match=r"shape.npz: field 'forces' has shape"):
        load(tmp_path / "shape.npz")
    arrays = {"nuclear_charges": fx.ETHANOL_Z, **fx.rmd17_frames(5)}
    arrays["energies"] = arrays["energies"][:4]
    np.savez(tmp_path / "short.npz", **arrays)
    with pytest.raises(DataError, match=r"short.npz: field 'energy' has shape"):
        load(tmp_path / "short.npz")


def test_shared_rmd17(shared_data):
    folder = shared_data / "rmd17"
    path = folder / "rmd17_aspirin_train_01.npz"
    ds = load(folder, molecule="aspirin", split=1, part="train")
    raw = np.load(path)
    assert len(ds) == raw["coords"].shape[0] == 1000
    for i in (0, 499, 999):
        np.testing.assert_array_equal(ds[i]["positions"].numpy(), raw["coords"][i])
        assert ds[i]["energy"].item() == pytest.approx(raw["energies"][i] * units.kcal / units.mol, rel=1e-14)
        np.testing.assert_allclose(
            ds[i]["forces"].numpy(), raw["forces"][i] * units.kcal / units.mol, rtol=1e-14
        )
    # about -406,270 kcal/mol = -17,617 eV (PROVENANCE.md)
    assert ds[0]["energy"].item() == pytest.approx(-17617.7, abs=5)
    ethanol = load(folder / "rmd17_ethanol_test_05.npz")
    assert (
        ethanol[0]["atomic_numbers"].tolist()
        == np.load(folder / "rmd17_ethanol_test_05.npz")["nuclear_charges"].tolist()
    )
