"""``AtomicData``: one structure as a ``dict[str, torch.Tensor]`` with the key names of :mod:`mlip.data.keys`.

Conversions from ``ase.Atoms``, pymatgen ``Structure``/``Molecule`` and rdkit ``Mol`` (with a 3D
conformer), back to ``ase.Atoms``, validation with errors that name the source, and batching.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mlip.data import keys as K
from mlip.data.voigt import matrix_to_voigt, voigt_to_matrix
from mlip.errors import UserInputError

AtomicData = dict[str, torch.Tensor]

_MAX_Z = 118


class DataError(UserInputError):
    """Invalid input structure; the message names the source, record and field."""


def _where(source: str | None, index: int | None) -> str:
    parts = []
    if source is not None:
        parts.append(str(source))
    if index is not None:
        parts.append(f"record {index}")
    return (", ".join(parts) + ": ") if parts else ""


def validate(data: AtomicData, source: str | None = None, index: int | None = None) -> AtomicData:
    """Check shapes, dtypes and values of one record; raise :class:`DataError` naming the bad field.

    Checks: positions ``[N, 3]`` finite; atomic numbers in 1..118; a periodic direction has a non-zero
    cell vector; labels (energy, forces, stress) have the right shapes and are finite.
    """
    where = _where(source, index)
    pos = data.get(K.POSITIONS)
    if pos is None:
        raise DataError(f"{where}missing field '{K.POSITIONS}'")
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise DataError(f"{where}field '{K.POSITIONS}' has shape {tuple(pos.shape)}, expected [N, 3]")
    n = pos.shape[0]
    if not torch.isfinite(pos).all():
        bad = int((~torch.isfinite(pos)).any(dim=1).nonzero()[0, 0])
        raise DataError(f"{where}field '{K.POSITIONS}' is not finite (atom {bad})")
    z = data.get(K.ATOMIC_NUMBERS)
    if z is None:
        raise DataError(f"{where}missing field '{K.ATOMIC_NUMBERS}'")
    if z.shape != (n,):
        raise DataError(f"{where}field '{K.ATOMIC_NUMBERS}' has shape {tuple(z.shape)}, expected [{n}]")
    if n and (int(z.min()) < 1 or int(z.max()) > _MAX_Z):
        raise DataError(f"{where}field '{K.ATOMIC_NUMBERS}' holds {z.tolist()}, expected values in 1..118")
    cell, pbc = data.get(K.CELL), data.get(K.PBC)
    if cell is not None and cell.shape != (3, 3):
        raise DataError(f"{where}field '{K.CELL}' has shape {tuple(cell.shape)}, expected [3, 3]")
    if pbc is not None and bool(pbc.any()):
        if cell is None:
            raise DataError(f"{where}periodic structure without field '{K.CELL}'")
        lengths = cell.norm(dim=1)
        for d in range(3):
            if bool(pbc[d]) and float(lengths[d]) == 0.0:
                raise DataError(f"{where}field '{K.CELL}': periodic direction {d} has a zero lattice vector")
        if bool(pbc.all()) and abs(float(torch.linalg.det(cell))) < 1e-8:
            raise DataError(f"{where}field '{K.CELL}' is singular (volume 0) for a fully periodic structure")
    expected = {K.ENERGY: (), K.FORCES: (n, 3), K.STRESS: (3, 3)}
    for key, shape in expected.items():
        value = data.get(key)
        if value is None:
            continue
        if tuple(value.shape) != shape:
            raise DataError(f"{where}field '{key}' has shape {tuple(value.shape)}, expected {list(shape)}")
        if not torch.isfinite(value).all():
            raise DataError(f"{where}field '{key}' is not finite")
    return data


def from_atoms(
    atoms: Any,
    energy: float | None = None,
    forces: np.ndarray | None = None,
    stress: np.ndarray | None = None,
    use_calculator_labels: bool = True,
    source: str | None = None,
    index: int | None = None,
) -> AtomicData:
    """Build a record from an ``ase.Atoms``.

    Labels are taken from the arguments, else (``use_calculator_labels``) from a calculator attached to
    ``atoms`` that holds stored results (e.g. a ``SinglePointCalculator`` from a file). ``stress`` may be
    Voigt-6 or ``[3, 3]``, in eV/Å^3 with ASE's sign.
    """
    data: AtomicData = {
        K.POSITIONS: torch.as_tensor(np.asarray(atoms.get_positions()), dtype=torch.float64),
        K.ATOMIC_NUMBERS: torch.as_tensor(np.asarray(atoms.get_atomic_numbers()), dtype=torch.int64),
        K.CELL: torch.as_tensor(np.asarray(atoms.get_cell()), dtype=torch.float64).reshape(3, 3),
        K.PBC: torch.as_tensor(np.asarray(atoms.get_pbc()), dtype=torch.bool).reshape(3),
    }
    calc = getattr(atoms, "calc", None)
    results = getattr(calc, "results", {}) if (calc is not None and use_calculator_labels) else {}
    if energy is None and "energy" in results:
        energy = results["energy"]
    if forces is None and "forces" in results:
        forces = results["forces"]
    if stress is None and "stress" in results:
        stress = results["stress"]
    if energy is not None:
        data[K.ENERGY] = torch.tensor(float(energy), dtype=torch.float64)
    if forces is not None:
        data[K.FORCES] = torch.as_tensor(np.asarray(forces, dtype=np.float64))
    if stress is not None:
        s = np.asarray(stress, dtype=np.float64)
        data[K.STRESS] = torch.as_tensor(voigt_to_matrix(s) if s.shape == (6,) else s.reshape(s.shape))
    if "tags" in atoms.arrays:
        data[K.TAGS] = torch.as_tensor(atoms.get_tags(), dtype=torch.int64)
    fixed = _fixed_mask(atoms)
    if fixed is not None:
        data[K.FIXED] = fixed
    return validate(data, source, index)


def _fixed_mask(atoms: Any) -> torch.Tensor | None:
    from ase.constraints import FixAtoms

    indices = [c.get_indices() for c in atoms.constraints if isinstance(c, FixAtoms)]
    if not indices:
        return None
    mask = torch.zeros(len(atoms), dtype=torch.bool)
    mask[torch.as_tensor(np.concatenate(indices), dtype=torch.int64)] = True
    return mask


def to_atoms(data: AtomicData) -> Any:
    """Convert a single record to ``ase.Atoms`` with its labels in a ``SinglePointCalculator`` (eV, Å)."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.constraints import FixAtoms

    atoms = Atoms(
        numbers=data[K.ATOMIC_NUMBERS].cpu().numpy(),
        positions=data[K.POSITIONS].detach().cpu().numpy(),
        cell=data[K.CELL].cpu().numpy() if K.CELL in data else None,
        pbc=data[K.PBC].cpu().numpy() if K.PBC in data else False,
    )
    if K.TAGS in data:
        atoms.set_tags(data[K.TAGS].cpu().numpy())
    if K.FIXED in data and bool(data[K.FIXED].any()):
        atoms.set_constraint(FixAtoms(mask=data[K.FIXED].cpu().numpy()))
    results: dict[str, Any] = {}
    if K.ENERGY in data:
        results["energy"] = float(data[K.ENERGY])
    if K.FORCES in data:
        results["forces"] = data[K.FORCES].cpu().numpy()
    if K.STRESS in data:
        results["stress"] = matrix_to_voigt(data[K.STRESS].cpu().numpy())
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def from_pymatgen(structure: Any) -> AtomicData:
    """Build a record from a pymatgen ``Structure`` (periodic) or ``Molecule`` (open boundaries)."""
    from pymatgen.io.ase import AseAtomsAdaptor

    return from_atoms(AseAtomsAdaptor.get_atoms(structure), use_calculator_labels=False)


def from_rdkit(mol: Any, conformer_id: int = -1) -> AtomicData:
    """Build a record from an rdkit ``Mol`` with a 3D conformer (hydrogens must be explicit)."""
    if mol.GetNumConformers() == 0:
        raise DataError("rdkit Mol has no conformer: embed one (AllChem.EmbedMolecule) first")
    conf = mol.GetConformer(conformer_id)
    if not conf.Is3D():
        raise DataError("rdkit Mol conformer is 2D: a 3D conformer is needed")
    positions = np.array(conf.GetPositions(), dtype=np.float64)
    numbers = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
    data: AtomicData = {
        K.POSITIONS: torch.as_tensor(positions),
        K.ATOMIC_NUMBERS: torch.as_tensor(numbers),
        K.CELL: torch.zeros(3, 3, dtype=torch.float64),
        K.PBC: torch.zeros(3, dtype=torch.bool),
    }
    return validate(data, "rdkit Mol")


def collate(records: Sequence[AtomicData]) -> AtomicData:
    """Batch records: concatenate per-atom and per-edge fields, stack per-structure ones.

    Adds ``batch`` ``[N]``, ``ptr`` ``[B + 1]`` and ``num_atoms`` ``[B]``; offsets ``edge_index`` by the
    atom offset of each structure. Every record must hold the same set of keys.
    """
    if not records:
        raise DataError("cannot collate an empty list of records")
    key_set = set(records[0])
    for i, r in enumerate(records):
        if set(r) != key_set:
            raise DataError(f"record {i} has keys {sorted(r)}, record 0 has {sorted(key_set)}")
    counts = torch.tensor([r[K.POSITIONS].shape[0] for r in records], dtype=torch.int64)
    ptr = torch.zeros(len(records) + 1, dtype=torch.int64)
    ptr[1:] = torch.cumsum(counts, 0)
    out: AtomicData = {
        K.NUM_ATOMS: counts,
        K.PTR: ptr,
        K.BATCH: torch.repeat_interleave(torch.arange(len(records)), counts),
    }
    for key in key_set:
        if key in (K.NUM_ATOMS, K.PTR, K.BATCH):
            continue
        values = [r[key] for r in records]
        if key == K.EDGE_INDEX:
            out[key] = torch.cat([v + ptr[i] for i, v in enumerate(values)], dim=1)
        elif key in K.PER_ATOM_KEYS or key in K.PER_EDGE_KEYS:
            out[key] = torch.cat(values, dim=0)
        else:
            out[key] = torch.stack(values, dim=0)
    return out
