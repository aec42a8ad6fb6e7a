"""The neighbour list against ASE's primitive_neighbor_list (exact set of (i, j, shift) triples), and our
torch list against vesin's (the two methods of ``neighbor_list``)."""

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.neighborlist import primitive_neighbor_list

from mlip.data import collate, from_atoms
from mlip.data import keys as K
from mlip.data.neighbors import SkinNeighborList, add_neighbors, batched_neighbor_list, neighbor_list


def _triples(i, j, shifts) -> set:
    s = np.rint(np.asarray(shifts)).astype(int)
    return set(zip(np.asarray(i).tolist(), np.asarray(j).tolist(), map(tuple, s.tolist()), strict=True))


def _ours(positions, cell, pbc, cutoff) -> set:
    """The triples of our torch list; where vesin applies (periodic in all directions or none), vesin's
    (``method="auto"`` on the CPU) must be the same set."""
    pbc = np.asarray(pbc)
    methods = ["torch", "auto"] if pbc.all() or not pbc.any() else ["torch"]
    sets = []
    for method in methods:
        edge_index, shifts = neighbor_list(
            torch.as_tensor(positions),
            torch.as_tensor(np.asarray(cell)),
            torch.as_tensor(pbc),
            cutoff,
            method=method,
        )
        assert edge_index.dtype == torch.int64 and shifts.dtype == torch.float64
        assert torch.equal(shifts, shifts.round())
        if method == "torch":
            assert bool((edge_index[0][1:] >= edge_index[0][:-1]).all()), "edges grouped by ascending src"
        found = _triples(edge_index[0].numpy(), edge_index[1].numpy(), shifts.numpy())
        assert len(found) == edge_index.shape[1], "duplicate edges"
        sets.append(found)
    assert all(found == sets[0] for found in sets), "vesin and our list differ"
    return sets[0]


def test_vesin_equals_ours_on_large_unwrapped_box():
    rng = np.random.default_rng(7)
    cell = np.array([[14.0, 0.0, 0.0], [3.0, 13.0, 0.0], [-2.0, 1.5, 15.0]])
    positions = rng.uniform(-0.5, 1.5, size=(1200, 3)) @ cell  # outside the home cell too
    assert len(_ours(positions, cell, np.ones(3, bool), 4.0)) > 40_000


def test_vesin_cutoff_is_strict_and_mixed_pbc_is_ours():
    positions = torch.tensor([[0.0, 0.0, 0.0], [2.5, 0.0, 0.0], [0.0, 2.4, 0.0]], dtype=torch.float64)
    for method in ("torch", "vesin"):
        ei, _ = neighbor_list(positions, torch.zeros(3, 3), torch.zeros(3, dtype=bool), 2.5, method=method)
        assert sorted(map(tuple, ei.T.tolist())) == [(0, 2), (2, 0)], method
    with pytest.raises(ValueError, match="structures periodic in all directions or none"):
        neighbor_list(positions, torch.eye(3) * 5, torch.tensor([True, False, True]), 2.5, method="vesin")
    with pytest.raises(ValueError, match="method 'fast'"):
        neighbor_list(positions, torch.eye(3) * 5, torch.ones(3, dtype=bool), 2.5, method="fast")


def _ase(positions, cell, pbc, cutoff) -> set:
    i, j, s = primitive_neighbor_list("ijS", pbc, np.asarray(cell), positions, cutoff)
    return _triples(i, j, s)


@pytest.mark.parametrize("seed", range(40))
def test_random_triclinic_mixed_pbc_matches_ase(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    cell = rng.normal(size=(3, 3)) * rng.uniform(0.5, 4) + np.eye(3) * rng.uniform(2, 9)
    pbc = rng.random(3) < 0.6
    positions = rng.uniform(-0.4, 1.4, size=(n, 3)) @ cell  # some atoms outside the cell
    cutoff = float(rng.uniform(1.0, 7.0))
    assert _ours(positions, cell, pbc, cutoff) == _ase(positions, cell, pbc, cutoff)


@pytest.mark.parametrize("pbc", [(True, True, True), (True, False, True), (False, False, True)])
def test_cell_shorter_than_cutoff_has_many_images_and_self_images(pbc):
    cell = np.array([[1.3, 0.0, 0.0], [0.4, 1.1, 0.0], [0.2, 0.3, 1.7]])
    positions = np.array([[0.1, 0.2, 0.3], [0.7, 0.5, 1.1]])
    ours = _ours(positions, cell, np.array(pbc), 4.5)
    assert ours == _ase(positions, cell, np.array(pbc), 4.5)
    assert any(i == j for i, j, _ in ours), "self-images expected"
    assert all(s != (0, 0, 0) for i, j, s in ours if i == j), "no self-pair at zero shift"


def test_molecule_without_cell_matches_ase():
    atoms = molecule("C6H6")
    ours = _ours(atoms.positions, np.zeros((3, 3)), np.zeros(3, bool), 2.5)
    assert ours == _ase(atoms.positions, np.zeros((3, 3)), np.zeros(3, bool), 2.5)
    assert all(s == (0, 0, 0) for *_, s in ours)


def test_slab_with_vacuum_and_single_atom_bulk():
    slab = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    slab.center(vacuum=6.0, axis=2)
    slab.pbc = (True, True, False)
    assert _ours(slab.positions, slab.cell, slab.pbc, 5.0) == _ase(slab.positions, slab.cell, slab.pbc, 5.0)
    cu = bulk("Cu", "fcc", a=3.6)  # primitive, 1 atom, triclinic
    ours = _ours(cu.positions, cu.cell, cu.pbc, 6.0)
    assert ours == _ase(cu.positions, cu.cell, cu.pbc, 6.0)
    assert len([s for *_, s in ours if np.linalg.norm(np.array(s) @ cu.cell) < 2.6]) == 12  # fcc shell


def test_empty_and_isolated():
    ei, sh = neighbor_list(
        torch.zeros(0, 3, dtype=torch.float64), torch.zeros(3, 3), torch.zeros(3, dtype=bool), 3.0
    )
    assert ei.shape == (2, 0) and sh.shape == (0, 3)
    ei, _ = neighbor_list(
        torch.tensor([[0.0, 0, 0], [10.0, 0, 0]]), torch.zeros(3, 3), torch.zeros(3, dtype=bool), 3.0
    )
    assert ei.shape == (2, 0)


def test_errors_name_the_problem():
    pos = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="cutoff must be positive"):
        neighbor_list(pos, torch.eye(3), torch.ones(3, dtype=bool), 0.0)
    with pytest.raises(ValueError, match="zero lattice vector"):
        neighbor_list(pos, torch.diag(torch.tensor([2.0, 0.0, 2.0])), torch.ones(3, dtype=bool), 1.0)


def test_positions_requiring_grad_are_accepted():
    pos = torch.rand(5, 3, dtype=torch.float64, requires_grad=True)
    ei, _ = neighbor_list(pos, torch.eye(3, dtype=torch.float64) * 2, torch.ones(3, dtype=bool), 1.5)
    assert ei.shape[1] > 0


def _structures():
    si = bulk("Si", "diamond", a=5.43)
    nacl = bulk("NaCl", "rocksalt", a=5.6, cubic=True)
    nacl.positions += np.random.default_rng(1).normal(scale=0.1, size=nacl.positions.shape)
    return [molecule("CH3CH2OH"), si, nacl, molecule("H2O")]


def test_batched_equals_single_with_offsets():
    structures = _structures()
    batch = collate([from_atoms(a) for a in structures])
    edge_index, shifts = batched_neighbor_list(
        batch[K.POSITIONS], batch[K.CELL], batch[K.PBC], batch[K.BATCH], 4.0
    )
    assert bool((batch[K.BATCH][edge_index[0]] == batch[K.BATCH][edge_index[1]]).all())
    found = _triples(edge_index[0].numpy(), edge_index[1].numpy(), shifts.numpy())
    expected = set()
    for b, atoms in enumerate(structures):
        offset = int(batch[K.PTR][b])
        expected |= {
            (i + offset, j + offset, s) for i, j, s in _ase(atoms.positions, atoms.cell, atoms.pbc, 4.0)
        }
    assert found == expected


def test_batched_vesin_equals_batched_torch_with_interleaved_atoms():
    structures = _structures() + [bulk("Cu", "fcc", a=3.6)]  # one atom, many self-images at 4 Å
    batch = collate([from_atoms(a) for a in structures])
    perm = torch.from_numpy(np.random.default_rng(0).permutation(batch[K.POSITIONS].shape[0]))
    args = (batch[K.POSITIONS][perm], batch[K.CELL], batch[K.PBC], batch[K.BATCH][perm], 4.0)
    lists = [batched_neighbor_list(*args, method=m) for m in ("torch", "vesin", "auto")]
    sets = [_triples(e[0].numpy(), e[1].numpy(), s.numpy()) for e, s in lists]
    assert sets[0] == sets[1] == sets[2]
    assert all(len(sets[0]) == e.shape[1] for e, _ in lists), "duplicate edges"


def test_add_neighbors_on_record_and_batch():
    records = [from_atoms(a) for a in _structures()]
    single = add_neighbors(records[1], 3.0)
    assert K.EDGE_INDEX in single and K.EDGE_INDEX not in records[1]
    batch = add_neighbors(collate(records), 3.0)
    per = collate([add_neighbors(r, 3.0) for r in records])
    got = _triples(
        batch[K.EDGE_INDEX][0].numpy(), batch[K.EDGE_INDEX][1].numpy(), batch[K.CELL_SHIFTS].numpy()
    )
    want = _triples(per[K.EDGE_INDEX][0].numpy(), per[K.EDGE_INDEX][1].numpy(), per[K.CELL_SHIFTS].numpy())
    assert got == want


def _assert_covers(edges, positions, cell, pbc, cutoff):
    """The reused list holds exactly the pairs closer than cutoff now (none of the skin shell)."""
    have = _triples(edges[0][0].numpy(), edges[0][1].numpy(), edges[1].numpy())
    need = _ase(positions.numpy(), cell[0].numpy(), pbc[0].numpy(), cutoff)
    assert need == have


def test_skin_list_rebuilds_only_when_needed():
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)
    rng = np.random.default_rng(0)
    pos = torch.as_tensor(atoms.positions)
    cell = torch.as_tensor(np.asarray(atoms.cell))[None]
    pbc = torch.ones(1, 3, dtype=bool)
    batch = torch.zeros(len(atoms), dtype=torch.int64)
    nl = SkinNeighborList(cutoff=5.0, skin=1.0)
    nl(pos, cell, pbc, batch)
    assert nl.builds == 1
    for _ in range(5):  # every atom moves < skin / 2 in total: no rebuild, still complete
        pos = pos + torch.as_tensor(rng.uniform(-0.05, 0.05, size=pos.shape))
        edges = nl(pos, cell, pbc, batch)
        _assert_covers(edges, pos, cell, pbc, 5.0)
    assert nl.builds == 1
    moved = pos.clone()
    moved[3, 0] += 0.6  # one atom beyond skin / 2
    nl(moved, cell, pbc, batch)
    assert nl.builds == 2
    strained = cell * 1.01  # small strain with atoms following affinely: reuse, still complete
    edges = nl(moved * 1.01, strained, pbc, batch)
    assert nl.builds == 2
    _assert_covers(edges, moved * 1.01, strained, pbc, 5.0)
    nl(moved * 1.2, cell * 1.2, pbc, batch)  # large strain: rebuild
    assert nl.builds == 3
    nl(moved[:-1] * 1.2, cell * 1.2, pbc, batch[:-1])  # different atoms: rebuild
    assert nl.builds == 4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(3)
    cell = np.eye(3) * 12 + rng.normal(size=(3, 3))
    pos = rng.uniform(0, 1, size=(300, 3)) @ cell
    args = (torch.as_tensor(cell), torch.ones(3, dtype=bool), 4.0)
    ei, sh = neighbor_list(torch.as_tensor(pos).cuda(), *args)
    assert ei.is_cuda and sh.is_cuda
    assert _triples(ei[0].cpu(), ei[1].cpu(), sh.cpu()) == _ase(pos, cell, np.ones(3, bool), 4.0)
