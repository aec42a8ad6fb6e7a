"""Generic ASE formats (extxyz, traj, ASE db) against a direct ASE parse."""

from __future__ import annotations

import ase.db
import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from mlip.data import DataError, collate
from mlip.datasets import load
from mlip.datasets.ase_formats import LabelKeys


def test_extxyz_energy_forces_stress(fx, tmp_path):
    frames = fx.periodic_frames()
    ase.io.write(tmp_path / "a.extxyz", frames, format="extxyz")
    ds = load(tmp_path / "a.extxyz")
    ref = ase.io.read(tmp_path / "a.extxyz", ":")
    assert len(ds) == len(ref) == 4
    for i, atoms in enumerate(ref):
        r = ds[i]
        np.testing.assert_allclose(r["positions"].numpy(), atoms.positions)
        np.testing.assert_allclose(r["cell"].numpy(), atoms.cell[:])
        assert r["energy"].item() == pytest.approx(atoms.get_potential_energy())
        np.testing.assert_allclose(r["forces"].numpy(), atoms.calc.results["forces"])
        s = atoms.get_stress(voigt=False)
        np.testing.assert_allclose(r["stress"].numpy(), s)
        assert r["tags"].tolist() == [0, 1, 1, 2]
        assert r["fixed"].tolist() == [True, False, False, False]
    back = ds.to_atoms(1)
    np.testing.assert_allclose(back.get_stress(), ref[1].get_stress())


def test_extxyz_custom_keys_virial_and_weights(tmp_path):
    rng = np.random.default_rng(1)
    lines = []
    expected = []
    for k in range(3):
        pos = rng.uniform(0, 3, size=(2, 3))
        f = rng.normal(size=(2, 3))
        virial = rng.normal(size=(3, 3))
        virial = virial + virial.T
        e = -3.5 + k
        weight = f" config_weight={0.5 * (k + 1)}" if k != 1 else ""
        header = (
            f'Lattice="3 0 0 0 3 0 0 0 3" Properties=species:S:1:pos:R:3:REF_forces:R:3 REF_energy={e} '
            f'REF_virial="{" ".join(map(str, virial.ravel()))}"{weight} pbc="T T T"'
        )
        lines += ["2", header] + [
            f"H {p[0]} {p[1]} {p[2]} {g[0]} {g[1]} {g[2]}" for p, g in zip(pos, f, strict=True)
        ]
        expected.append((e, f, -virial / 27.0, 0.5 * (k + 1) if k != 1 else 1.0))
    (tmp_path / "custom.xyz").write_text("\n".join(lines) + "\n")
    keys = LabelKeys(energy="REF_energy", forces="REF_forces", virial="REF_virial")
    ds = load(tmp_path / "custom.xyz", keys=keys)
    for i, (e, f, stress, w) in enumerate(expected):
        r = ds[i]
        assert r["energy"].item() == pytest.approx(e)
        np.testing.assert_allclose(r["forces"].numpy(), f)
        np.testing.assert_allclose(r["stress"].numpy(), stress)
        assert r["energy_weight"].item() == pytest.approx(w)
        assert r["forces_weight"].item() == pytest.approx(w)
    collate([ds[i] for i in range(3)])


def test_missing_labels_become_zero_weight(tmp_path):
    a = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    a.calc = SinglePointCalculator(a, energy=-31.0, forces=[[0, 0, 1.0], [0, 0, -1.0]])
    b = Atoms("H", positions=[[0, 0, 0]])
    b.calc = SinglePointCalculator(b, energy=-13.6)
    ase.io.write(tmp_path / "mixed.xyz", [a, b], format="extxyz")
    ds = load(tmp_path / "mixed.xyz")
    assert ds[0]["forces_weight"].item() == 1.0 and ds[1]["forces_weight"].item() == 0.0
    assert ds[1]["forces"].abs().sum().item() == 0.0
    assert ds[1]["energy"].item() == pytest.approx(-13.6)
    batch = collate([ds[0], ds[1]])
    assert batch["forces"].shape == (3, 3)


def test_traj_and_db(fx, tmp_path):
    frames = fx.periodic_frames(3, seed=4)
    ase.io.write(tmp_path / "t.traj", frames)
    with ase.db.connect(tmp_path / "t.db") as db:
        for i, atoms in enumerate(frames):
            db.write(atoms, data={"dipole": [0.0, 0.0, float(i)]}, kind="slab")
    for name in ("t.traj", "t.db"):
        ds = load(tmp_path / name)
        assert len(ds) == 3
        for i, atoms in enumerate(frames):
            r = ds[i]
            np.testing.assert_allclose(r["positions"].numpy(), atoms.positions)
            assert r["energy"].item() == pytest.approx(atoms.get_potential_energy())
            np.testing.assert_allclose(r["forces"].numpy(), atoms.calc.results["forces"])
            np.testing.assert_allclose(r["stress"].numpy(), atoms.get_stress(voigt=False))
            assert r["fixed"].tolist() == [True, False, False, False]
    ds = load(tmp_path / "t.db", selection="kind=slab")
    assert len(ds) == 3


def test_db_label_from_data(tmp_path):
    with ase.db.connect(tmp_path / "q.db") as db:
        db.write(Atoms("H2O", positions=np.eye(3)), data={"energy_U0": -76.4})
    ds = load(tmp_path / "q.db", keys=LabelKeys(energy="energy_U0"))
    assert ds[0]["energy"].item() == pytest.approx(-76.4)


def test_bad_extxyz(fx, tmp_path):
    frames = fx.periodic_frames(3)
    ase.io.write(tmp_path / "a.xyz", frames, format="extxyz")
    text = (tmp_path / "a.xyz").read_text().splitlines()
    (tmp_path / "trunc.xyz").write_text("\n".join(text[:-2]) + "\n")
    with pytest.raises(DataError, match="trunc.xyz"):
        load(tmp_path / "trunc.xyz")
    frames[2].calc.results["forces"][1, 0] = np.nan
    ase.io.write(tmp_path / "nan.xyz", frames, format="extxyz")
    with pytest.raises(DataError, match=r"nan.xyz, record 2: field 'forces' is not finite"):
        load(tmp_path / "nan.xyz")
    (tmp_path / "garbage.xyz").write_text("3\nnot an xyz\nQ 1 2\n")
    with pytest.raises(DataError, match="garbage.xyz"):
        load(tmp_path / "garbage.xyz")


def test_shared_botnet_extxyz(shared_data):
    path = shared_data / "botnet_datasets" / "dataset_ethanol" / "test_eth_meth.xyz"
    ds = load(path)
    ref = ase.io.read(path, ":")
    assert len(ds) == len(ref) == 1145
    for i in (0, 600, 1144):
        assert ds[i]["energy"].item() == pytest.approx(ref[i].get_potential_energy(), rel=1e-15)
        np.testing.assert_allclose(ds[i]["forces"].numpy(), ref[i].get_forces())
        np.testing.assert_allclose(ds[i]["positions"].numpy(), ref[i].positions)
    dimers = load(shared_data / "botnet_datasets" / "dataset_ethanol" / "test_dimers.xyz")
    assert len(dimers) == 429 and "forces" not in dimers[0]
