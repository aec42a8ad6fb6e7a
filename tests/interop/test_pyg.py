"""torch-geometric: AtomicData <-> Data round trip, models take a PyG Batch, PyG's DataLoader trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from mlip.data import keys as K
from mlip.data.atomic_data import collate, from_atoms
from mlip.data.neighbors import add_neighbors
from mlip.interop.pyg import PyGDataset, from_pyg, to_pyg
from mlip.testing import tiny_mace

SPECIES = [1, 6, 8, 29]


def structures():
    """Water, methanol and a periodic Cu cell (rattled) with energies, forces and stress labels."""
    from ase.build import bulk, molecule
    from ase.calculators.singlepoint import SinglePointCalculator

    out = []
    for i, atoms in enumerate([molecule("H2O"), molecule("CH3OH"), bulk("Cu", "fcc", a=3.6).repeat(2)]):
        atoms.rattle(0.05, seed=i)
        n = len(atoms)
        stress = np.eye(3) * (0.01 if atoms.pbc.all() else 0.0)
        atoms.calc = SinglePointCalculator(atoms, energy=-float(n), forces=np.zeros((n, 3)), stress=stress)
        out.append(atoms)
    return out


def records():
    return [from_atoms(atoms) for atoms in structures()]


@pytest.fixture(scope="module")
def model():
    return tiny_mace(SPECIES, num_bessel=4)


def test_round_trip_keeps_every_field():
    for record in records():
        record = add_neighbors(record, 3.0)
        back = from_pyg(to_pyg(record))
        assert set(back) == set(record)
        for key, value in record.items():
            assert back[key].shape == value.shape and torch.equal(back[key], value), key
    pyg = to_pyg(records()[0])
    assert pyg.pos.shape == (3, 3) and pyg.z.tolist() == [8, 1, 1] and pyg.num_nodes == 3


def test_pyg_batch_equals_our_collate(model):
    recs = [add_neighbors(r, model.cutoff) for r in records()]
    ours = collate(recs)
    batch = Batch.from_data_list([to_pyg(r) for r in recs])
    converted = from_pyg(batch)
    for key in ours:
        assert torch.equal(converted[key], ours[key]), key
    a, b = model(ours, compute_stress=False), model(batch, compute_stress=False)
    assert torch.equal(a["energy"], b["energy"]) and torch.equal(a["forces"], b["forces"])


def extxyz_dataset(path):
    """:func:`structures` written as extxyz and read back by ``mlip.datasets.load``."""
    from ase.io import write

    import mlip.datasets

    write(path, structures(), format="extxyz")
    return mlip.datasets.load(path)


def test_training_step_from_pyg_dataloader(model, tmp_path):
    model = tiny_mace(SPECIES, seed=1, num_interactions=1, num_bessel=4).train()
    dataset = extxyz_dataset(tmp_path / "train.extxyz")
    loader = DataLoader(PyGDataset(dataset, cutoff=model.cutoff), batch_size=2, shuffle=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(15):
        for batch in loader:
            data = from_pyg(batch)
            out = model(batch)
            loss = ((out["energy"] - data[K.ENERGY]) / data[K.NUM_ATOMS]).pow(2).mean()
            loss = loss + (out["forces"] - data[K.FORCES]).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert len(losses) == 30 and losses[-1] < 0.5 * losses[0], losses[:: len(losses) - 1]


def test_dataset_without_cutoff_names_the_record():
    with pytest.raises(ValueError, match="record 0 has no neighbour list"):
        PyGDataset(records())[0]
