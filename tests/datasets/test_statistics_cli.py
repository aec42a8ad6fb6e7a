"""Statistics (E0 least squares, force mean/RMS, neighbours), splits and the ``mlip data`` CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase import Atoms

from mlip.cli import main as mlip_main
from mlip.data import from_atoms
from mlip.datasets import CacheDataset, ListDataset, load, nested_subsets, random_split, write_cache
from mlip.datasets.statistics import compute_statistics


def synthetic(n: int = 30, seed: int = 0) -> tuple[ListDataset, dict[int, float]]:
    """Random H/C/O molecules with energy = sum of known E0 + small noise, random forces."""
    rng = np.random.default_rng(seed)
    e0 = {1: -13.6, 6: -1029.8, 8: -2042.6}
    records = []
    for i in range(n):
        numbers = rng.choice([1, 6, 8], size=int(rng.integers(2, 7)))
        atoms = Atoms(numbers=numbers, positions=rng.uniform(0, 3, size=(len(numbers), 3)))
        energy = sum(e0[int(z)] for z in numbers) + 0.01 * rng.normal()
        records.append(from_atoms(atoms, energy=energy, forces=rng.normal(size=(len(numbers), 3)), index=i))
    return ListDataset(records, "synthetic", {"format": "test"}), e0


def test_e0_least_squares_and_forces(fx):
    ds, e0 = synthetic()
    stats = compute_statistics(ds, cutoff=2.0, neighbor_fn=fx.neighbor_fn)
    assert stats.elements == [1, 6, 8] and stats.e0_method == "least_squares"
    for z, value in e0.items():
        assert stats.e0[z] == pytest.approx(value, abs=0.02)
    forces = np.concatenate([r["forces"].numpy().ravel() for r in ds])
    assert stats.forces_rms == pytest.approx(np.sqrt((forces**2).mean()))
    assert stats.forces_mean == pytest.approx(forces.mean())
    edges = sum(fx.neighbor_fn(r["positions"], r["cell"], r["pbc"], 2.0)[0].shape[1] for r in ds)
    atoms = sum(r["positions"].shape[0] for r in ds)
    assert stats.avg_num_neighbors == pytest.approx(edges / atoms)
    given = compute_statistics(ds, e0=e0)
    residual = [
        (r["energy"].item() - sum(e0[int(z)] for z in r["atomic_numbers"])) / len(r["atomic_numbers"])
        for r in ds
    ]
    assert given.energy_per_atom_mean == pytest.approx(np.mean(residual))
    assert given.energy_per_atom_rms == pytest.approx(np.sqrt(np.mean(np.square(residual))))
    with pytest.raises(ValueError, match="lack elements"):
        compute_statistics(ds, e0={1: 0.0})


def test_neighbors_from_package_and_cache_agree(fx, tmp_path):
    ds, _ = synthetic(8)
    write_cache(ds, tmp_path / "s.h5", cutoffs=(2.0,))  # default: mlip.data.neighbors
    cache = CacheDataset(tmp_path / "s.h5", cutoff=2.0)
    for i in range(len(ds)):
        edges, shifts = fx.neighbor_fn(ds[i]["positions"], ds[i]["cell"], ds[i]["pbc"], 2.0)
        ours = {tuple(e) for e in cache[i]["edge_index"].T.tolist()}
        assert ours == {tuple(e) for e in edges.T.tolist()}
    a = compute_statistics(cache, cutoff=2.0).avg_num_neighbors
    b = compute_statistics(ds, cutoff=2.0, neighbor_fn=fx.neighbor_fn).avg_num_neighbors
    assert a == pytest.approx(b)


def test_splits_are_seeded_disjoint_and_nested():
    a = random_split(100, [0.8, 10, 10], seed=3)
    b = random_split(100, [0.8, 10, 10], seed=3)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    assert [len(x) for x in a] == [80, 10, 10]
    assert len(set(np.concatenate(a).tolist())) == 100
    assert random_split(100, [50], seed=4)[0].tolist() != a[0][:50].tolist()
    subsets = nested_subsets(a[0], [10, 40, 80], seed=0)
    assert [len(s) for s in subsets] == [10, 40, 80]
    assert set(subsets[0]) <= set(subsets[1]) <= set(subsets[2]) == set(a[0].tolist())
    with pytest.raises(ValueError):
        random_split(10, [8, 5])


def test_cli_convert_and_stats(fx, tmp_path, capsys):
    fx.write_rmd17(tmp_path / "rmd17_ethanol.npz", n=12)
    assert mlip_main(["data", "convert", str(tmp_path / "rmd17_ethanol.npz"), str(tmp_path / "e.h5")]) == 0
    src, cache = load(tmp_path / "rmd17_ethanol.npz"), load(tmp_path / "e.h5")
    assert len(cache) == 12 and torch.equal(cache[11]["forces"], src[11]["forces"])
    out = tmp_path / "stats.json"
    assert mlip_main(["data", "stats", str(tmp_path / "e.h5"), "--json", str(out)]) == 0
    stats = json.loads(out.read_text())
    forces = np.concatenate([r["forces"].numpy().ravel() for r in src])
    assert stats["forces_rms"] == pytest.approx(np.sqrt((forces**2).mean()))
    assert "forces_rms" in capsys.readouterr().out
    (tmp_path / "npz_data").mkdir()
    (tmp_path / "rmd17_ethanol.npz").rename(tmp_path / "npz_data" / "rmd17_ethanol.npz")
    argv = ["data", "convert", str(tmp_path), str(tmp_path / "f.h5"), "--option", "molecule=ethanol"]
    assert mlip_main(argv) == 0 and len(load(tmp_path / "f.h5")) == 12
