"""OC20: LMDBs of pickled Data (restricted unpickler), .aselmdb, S2EF extxyz.xz + txt, trajectories."""

from __future__ import annotations

import json
import lzma
import os
import pickle
import zlib

import ase.io
import lmdb
import numpy as np
import pytest
import torch
from ase.db.row import AtomsRow
from torch_geometric.data import Data

from mlip.data import DataError
from mlip.datasets import load
from mlip.datasets.safe_pickle import UnsafePickleError, restricted_loads


def s2ef_record(i: int, n: int = 5) -> Data:
    """A record with the S2EF keys and dtypes of the OC20 release (adsorption energy ``y``, eV, Å)."""
    g = torch.Generator().manual_seed(i)
    return Data(
        pos=torch.rand(n, 3, generator=g) * 5,
        cell=(torch.eye(3) * 6.0).unsqueeze(0),
        atomic_numbers=torch.tensor([29.0, 29.0, 29.0, 8.0, 1.0][:n]),
        natoms=n,
        tags=torch.tensor([0, 1, 1, 2, 2][:n]),
        fixed=torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0][:n]),
        sid=1000 + i,
        fid=i,
        y=-1.5 + 0.1 * i,
        force=torch.randn(n, 3, generator=g),
    )


def write_lmdb(path, records, length_key: bool = True, raw: dict | None = None):
    """An OC20-style single-file LMDB: keys "0".."n-1" -> pickle.dumps(Data), optional "length"."""
    env = lmdb.open(str(path), subdir=False, map_size=1 << 26, meminit=False)
    with env.begin(write=True) as txn:
        for i, r in enumerate(records):
            txn.put(str(i).encode("ascii"), pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL))
        for key, value in (raw or {}).items():
            txn.put(key.encode("ascii"), value)
        if length_key:
            txn.put(b"length", pickle.dumps(len(records) + len(raw or {})))
    env.close()


class Evil:
    """A pickle payload that would run a shell command if unpickled by the standard loader."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_s2ef_lmdb_values(tmp_path):
    records = [s2ef_record(i) for i in range(4)]
    write_lmdb(tmp_path / "data.lmdb", records)
    ds = load(tmp_path / "data.lmdb")
    assert len(ds) == 4 and ds.metadata["energy_reference"] == "adsorption"
    for i, ref in enumerate(records):
        r = ds[i]
        np.testing.assert_array_equal(r["positions"].numpy(), ref.pos.double().numpy())
        assert r["atomic_numbers"].tolist() == [29, 29, 29, 8, 1]
        np.testing.assert_array_equal(r["cell"].numpy(), np.eye(3) * 6.0)
        assert r["pbc"].all() and r["tags"].tolist() == [0, 1, 1, 2, 2]
        assert r["fixed"].tolist() == [True, False, False, False, False]
        assert (
            r["energy"].item() == pytest.approx(ref.y)
            and r["sid"].item() == 1000 + i
            and r["fid"].item() == i
        )
        np.testing.assert_array_equal(r["forces"].numpy(), ref.force.double().numpy())
    atoms = ds.to_atoms(2)
    assert atoms.info["sid"] == 1002 and atoms.constraints[0].get_indices().tolist() == [0]
    refs = {f"random{1000 + i}": 100.0 + i for i in range(4)}
    total = load(tmp_path / "data.lmdb", energy_reference="total", reference_energies=refs)
    assert total[3]["energy"].item() == pytest.approx(records[3].y + 103.0)
    assert total[3]["reference_energy"].item() == 103.0
    with pytest.raises(DataError, match=r"record 0: field 'reference_energy' missing"):
        load(tmp_path / "data.lmdb", energy_reference="total")[0]


def test_is2re_lmdb_and_folder(tmp_path):
    (tmp_path / "is2re").mkdir()
    recs = []
    for i in range(3):
        r = s2ef_record(i)
        recs.append(
            Data(
                pos=r.pos,
                pos_relaxed=r.pos + 0.1,
                cell=r.cell,
                atomic_numbers=r.atomic_numbers,
                natoms=r.natoms,
                tags=r.tags,
                sid=r.sid,
                y_init=2.0 + i,
                y_relaxed=-0.5 - i,
            )
        )
    write_lmdb(tmp_path / "is2re" / "a.lmdb", recs[:2], length_key=False)
    write_lmdb(tmp_path / "is2re" / "b.lmdb", recs[2:], length_key=False)
    ds = load(tmp_path / "is2re")
    assert len(ds) == 3
    assert ds[2]["energy"].item() == pytest.approx(-2.5) and "forces" not in ds[2]
    relaxed = load(tmp_path / "is2re", positions="relaxed", target="y_init")
    np.testing.assert_allclose(relaxed[1]["positions"].numpy(), recs[1].pos_relaxed.double().numpy())
    assert relaxed[1]["energy"].item() == pytest.approx(3.0)


def test_pyg1_style_record(tmp_path):
    """Records pickled by torch-geometric 1.x: plain attributes on Data, no _store."""
    ref = s2ef_record(7)
    state = {"pos": ref.pos, "cell": ref.cell, "atomic_numbers": ref.atomic_numbers, "natoms": 5, "y": 0.25,
             "force": ref.force, "tags": ref.tags, "fixed": ref.fixed, "sid": 7, "fid": 0, "x": None,
             "edge_index": None, "__num_nodes__": None}  # fmt: skip
    payload = (
        b"\x80\x03ctorch_geometric.data.data\nData\n)\x81" + pickle.dumps(state, protocol=3)[2:-1] + b"b."
    )
    write_lmdb(tmp_path / "old.lmdb", [], length_key=False, raw={"0": payload})
    r = load(tmp_path / "old.lmdb")[0]
    assert r["energy"].item() == 0.25
    np.testing.assert_array_equal(r["forces"].numpy(), ref.force.double().numpy())


def test_malicious_pickle_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(UnsafePickleError, match=r"where: refused to unpickle class 'posix.system'"):
        restricted_loads(pickle.dumps(Evil(marker)), "where")
    assert not marker.exists()
    bad = Data(pos=torch.zeros(1, 3), payload=Evil(marker))
    write_lmdb(tmp_path / "evil.lmdb", [s2ef_record(0)], raw={"1": pickle.dumps(bad)})
    ds = load(tmp_path / "evil.lmdb")
    assert ds[0]["sid"].item() == 1000
    with pytest.raises(
        UnsafePickleError, match=r"evil.lmdb, record 1: refused to unpickle class 'posix.system'"
    ):
        ds[1]
    assert not marker.exists()
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        restricted_loads(b"cbuiltins\neval\n(S'1+1'\ntR.", "x")


def test_bad_lmdb_records(tmp_path):
    good = pickle.dumps(s2ef_record(0))
    no_cell = s2ef_record(1)
    del no_cell.cell
    nan = s2ef_record(2)
    nan.force[1, 1] = float("nan")
    shape = s2ef_record(3)
    shape.tags = torch.tensor([0, 1])
    raw = {
        "0": good[: len(good) // 2],
        "1": pickle.dumps(no_cell),
        "2": pickle.dumps(nan),
        "3": pickle.dumps(shape),
    }
    write_lmdb(tmp_path / "bad.lmdb", [], raw=raw)
    ds = load(tmp_path / "bad.lmdb")
    with pytest.raises(DataError, match=r"bad.lmdb, record 0: corrupt pickle"):
        ds[0]
    with pytest.raises(DataError, match=r"bad.lmdb, record 1: missing field 'cell'"):
        ds[1]
    with pytest.raises(DataError, match=r"bad.lmdb, record 2: field 'forces' is not finite"):
        ds[2]
    with pytest.raises(DataError, match=r"bad.lmdb, record 3: field 'tags' has shape"):
        ds[3]
    (tmp_path / "junk.lmdb").write_bytes(b"not an lmdb file" * 10)
    with pytest.raises(DataError, match="junk.lmdb"):
        load(tmp_path / "junk.lmdb")


def write_aselmdb(path, frames, kvps):
    """An ASE-DB LMDB as fairchem's LMDBDatabase._write stores it: "<id>" -> zlib(JSON of the row)."""
    env = lmdb.open(str(path), subdir=False, map_size=1 << 26, meminit=False)
    with env.begin(write=True) as txn:
        for idx, (atoms, kvp) in enumerate(zip(frames, kvps, strict=True), start=1):
            row = AtomsRow(atoms)
            dct = {k: row[k] for k in row.__dict__ if k[0] != "_" and k not in row._keys and k != "id"}
            dct["mtime"] = 0.0
            dct["key_value_pairs"] = kvp
            dct["constraints"] = [c.todict() for c in atoms.constraints]
            dct["cell"] = np.asarray(dct["cell"])
            blob = json.dumps(dct, default=lambda o: o.tolist() if hasattr(o, "tolist") else o).encode()
            txn.put(str(idx).encode("ascii"), zlib.compress(blob))
        txn.put(b"nextid", zlib.compress(json.dumps(len(frames) + 1).encode()))
    env.close()


def test_aselmdb(fx, tmp_path):
    frames = fx.periodic_frames(3, seed=2)
    write_aselmdb(
        tmp_path / "d.aselmdb", frames, [{"sid": 5 + i, "fid": i, "ref_energy": 1.5} for i in range(3)]
    )
    ds = load(tmp_path / "d.aselmdb")
    assert len(ds) == 3
    for i, atoms in enumerate(frames):
        r = ds[i]
        np.testing.assert_allclose(r["positions"].numpy(), atoms.positions)
        assert r["energy"].item() == pytest.approx(atoms.get_potential_energy())
        np.testing.assert_allclose(r["forces"].numpy(), atoms.calc.results["forces"])
        np.testing.assert_allclose(r["stress"].numpy(), atoms.get_stress(voigt=False))
        assert r["fixed"].tolist() == [True, False, False, False] and r["tags"].tolist() == [0, 1, 1, 2]
        assert r["sid"].item() == 5 + i
    ads = load(tmp_path / "d.aselmdb", energy_reference="adsorption")
    assert ads[1]["energy"].item() == pytest.approx(frames[1].get_potential_energy() - 1.5)
    write_aselmdb(tmp_path / "c.aselmdb", frames, [{}] * 3)
    env = lmdb.open(str(tmp_path / "c.aselmdb"), subdir=False, map_size=1 << 26)
    with env.begin(write=True) as txn:
        txn.put(b"2", b"\x78\x9c garbage")
    env.close()
    with pytest.raises(DataError, match=r"c.aselmdb, record 1 \(id 2\): corrupt entry"):
        load(tmp_path / "c.aselmdb")[1]


def test_s2ef_extxyz_pairs(fx, tmp_path):
    frames = fx.periodic_frames(4, seed=5)
    ase.io.write(tmp_path / "0.extxyz", frames, format="extxyz")
    (tmp_path / "0.extxyz.xz").write_bytes(lzma.compress((tmp_path / "0.extxyz").read_bytes()))
    (tmp_path / "0.extxyz").unlink()
    refs = [-3.0, -3.5, -4.0, -4.5]
    (tmp_path / "0.txt").write_text("".join(f"random77,frame{i},{refs[i]}\n" for i in range(4)))
    ds = load(tmp_path)
    assert ds.metadata["format"] == "oc20-s2ef" and ds.metadata["energy_reference"] == "total"
    for i, atoms in enumerate(frames):
        r = ds[i]
        assert r["energy"].item() == pytest.approx(atoms.get_potential_energy())
        assert r["sid"].item() == 77 and r["fid"].item() == i and r["reference_energy"].item() == refs[i]
        np.testing.assert_allclose(r["forces"].numpy(), atoms.calc.results["forces"])
    ads = load(tmp_path / "0.extxyz.xz", energy_reference="adsorption")
    assert ads[2]["energy"].item() == pytest.approx(frames[2].get_potential_energy() + 4.0)
    (tmp_path / "0.txt").write_text("random77,frame0,-3.0\n")
    with pytest.raises(DataError, match=r"0.txt: 1 lines for 4 frames"):
        load(tmp_path)


def test_oc20_traj(fx, tmp_path):
    frames = fx.periodic_frames(3, seed=6)
    ase.io.write(tmp_path / "random42.traj", frames)
    ds = load(
        tmp_path / "random42.traj",
        format="oc20-traj",
        energy_reference="adsorption",
        reference_energies={42: -9.0},
    )
    for i, atoms in enumerate(frames):
        assert ds[i]["energy"].item() == pytest.approx(atoms.get_potential_energy() + 9.0)
        assert ds[i]["sid"].item() == 42 and ds[i]["fid"].item() == i
    with pytest.raises(DataError, match=r"random42.traj, record 0: field 'reference_energy' missing"):
        load(tmp_path / "random42.traj", format="oc20-traj", energy_reference="adsorption")


def test_shared_oc20_trajectory(shared_data):
    path = shared_data / "oc20_s2ef_trajs" / "random1000156.traj"
    ds = load(path, format="oc20-traj")
    ref = ase.io.read(path, ":")
    assert len(ds) == len(ref) == 36
    for i in (0, 35):
        r = ds[i]
        assert r["energy"].item() == pytest.approx(ref[i].get_potential_energy(apply_constraint=False))
        np.testing.assert_allclose(r["forces"].numpy(), ref[i].get_forces(apply_constraint=False))
        assert int(r["fixed"].sum()) == 36 and r["sid"].item() == 1000156 and r["pbc"].all()
    assert ds[0]["energy"].item() == pytest.approx(-67.091, abs=1e-3)  # PROVENANCE.md: first / last energy
    assert ds[35]["energy"].item() == pytest.approx(-67.474, abs=1e-3)
