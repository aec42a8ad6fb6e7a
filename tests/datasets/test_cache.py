"""HDF5 cache: round trip, metadata, stored neighbour lists, lazy per-worker opening, bad files."""

from __future__ import annotations

import pickle

import ase.io
import h5py
import numpy as np
import pytest
import torch

from mlip.data import DataError, collate
from mlip.datasets import CacheDataset, ListDataset, load, write_cache
from mlip.datasets.base import file_sha256


def assert_same_records(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_roundtrip_molecules_with_metadata(fx, tmp_path):
    fx.write_rmd17(tmp_path / "rmd17_ethanol.npz", n=50)
    src = load(tmp_path / "rmd17_ethanol.npz")
    write_cache(src, tmp_path / "c.h5")
    cache = load(tmp_path / "c.h5")
    assert isinstance(cache, CacheDataset) and len(cache) == 50
    for i in range(50):
        assert_same_records(cache[i], src[i])
    meta = cache.metadata
    assert meta["source_format"] == "rmd17" and meta["format"] == "hdf5-cache"
    assert meta["units"]["energy"] == "eV" and meta["source_units"]["energy"] == "kcal/mol"
    assert meta["source_sha256"] == file_sha256([tmp_path / "rmd17_ethanol.npz"])
    assert cache.verify_source()
    with h5py.File(tmp_path / "c.h5") as f:
        assert f.attrs["format_version"] == 1
        assert f["atoms/positions"].compression == "gzip" and f["atoms/positions"].chunks is not None
        assert f["atoms/positions"].shape == (450, 3)
        np.testing.assert_array_equal(f["offsets"][:], np.arange(51) * 9)
    on_disk = CacheDataset(tmp_path / "c.h5", in_memory=False)
    assert_same_records(on_disk[17], src[17])


def test_roundtrip_periodic_with_neighbors(fx, tmp_path):
    ase.io.write(tmp_path / "p.extxyz", fx.periodic_frames(5), format="extxyz")
    src = load(tmp_path / "p.extxyz")
    write_cache(src, tmp_path / "p.h5", cutoffs=(2.5, 4.0), neighbor_fn=fx.neighbor_fn)
    plain = CacheDataset(tmp_path / "p.h5")
    assert plain.cutoffs == [2.5, 4.0]
    for cutoff in (2.5, 4.0):
        cache = CacheDataset(tmp_path / "p.h5", cutoff=cutoff)
        for i in range(len(src)):
            r = cache[i]
            assert_same_records(
                {k: v for k, v in r.items() if k not in ("edge_index", "cell_shifts")}, src[i]
            )
            edges, shifts = fx.neighbor_fn(src[i]["positions"], src[i]["cell"], src[i]["pbc"], cutoff)
            torch.testing.assert_close(r["edge_index"], edges)
            torch.testing.assert_close(r["cell_shifts"], shifts)
            # edge vectors follow the documented convention and lie within the cutoff
            pos, cell = r["positions"], r["cell"]
            vec = pos[r["edge_index"][1]] - pos[r["edge_index"][0]] + r["cell_shifts"] @ cell
            assert (vec.norm(dim=1) <= cutoff + 1e-9).all()
    batch = collate([CacheDataset(tmp_path / "p.h5", cutoff=4.0)[i] for i in range(3)])
    assert batch["edge_index"].max() < batch["positions"].shape[0]
    with pytest.raises(DataError, match="no neighbour list stored for cutoff 3"):
        CacheDataset(tmp_path / "p.h5", cutoff=3.0)


def test_lazy_open_and_dataloader_workers(fx, tmp_path):
    fx.write_rmd17(tmp_path / "m.npz", n=40)
    src = load(tmp_path / "m.npz")
    write_cache(src, tmp_path / "m.h5")
    cache = CacheDataset(tmp_path / "m.h5")
    assert cache._file is None and cache._arrays is None  # nothing opened in the main process yet
    clone = pickle.loads(pickle.dumps(cache))
    assert_same_records(clone[3], src[3])
    loader = torch.utils.data.DataLoader(cache, batch_size=8, num_workers=2, collate_fn=collate)
    energies = torch.cat([b["energy"] for b in loader])
    torch.testing.assert_close(energies, torch.stack([src[i]["energy"] for i in range(40)]))
    assert cache._arrays is None  # workers opened their own handles


def test_inconsistent_keys_and_invalid_records(fx, tmp_path):
    fx.write_rmd17(tmp_path / "m.npz", n=3)
    src = load(tmp_path / "m.npz")
    records = [src[0], src[1], {k: v for k, v in src[2].items() if k != "forces"}]
    with pytest.raises(DataError, match=r"mixed, record 2: has fields"):
        write_cache(ListDataset(records, "mixed", {}), tmp_path / "x.h5")
    bad = src[1]
    bad["energy"] = torch.tensor(float("nan"), dtype=torch.float64)
    with pytest.raises(DataError, match=r"nanset, record 1: field 'energy' is not finite"):
        write_cache(ListDataset([src[0], bad], "nanset", {}), tmp_path / "y.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]  # no cache, no partial file


def test_corrupt_cache(fx, tmp_path):
    fx.write_rmd17(tmp_path / "m.npz", n=3)
    write_cache(load(tmp_path / "m.npz"), tmp_path / "m.h5")
    data = (tmp_path / "m.h5").read_bytes()
    (tmp_path / "t.h5").write_bytes(data[:1000])
    with pytest.raises(DataError, match="t.h5"):
        CacheDataset(tmp_path / "t.h5")
    with h5py.File(tmp_path / "m.h5", "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(DataError, match="format version 99"):
        CacheDataset(tmp_path / "m.h5")


def test_shared_oc20_traj_cache(fx, shared_data, tmp_path):
    path = shared_data / "oc20_s2ef_trajs" / "random1000156.traj"
    src = load(path)
    write_cache(src, tmp_path / "o.h5", cutoffs=(6.0,), neighbor_fn=fx.neighbor_fn)
    cache = CacheDataset(tmp_path / "o.h5", cutoff=6.0)
    for i in (0, len(src) - 1):
        r = cache[i]
        assert_same_records({k: v for k, v in r.items() if k not in ("edge_index", "cell_shifts")}, src[i])
        assert r["edge_index"].shape[1] > 0
