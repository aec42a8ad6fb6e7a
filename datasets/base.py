"""Dataset base classes: indexing to ``AtomicData``, conversion back to ``ase.Atoms``, subsets, concatenation.

Every loader in :mod:`mlip.datasets` returns an :class:`AtomicDataset`. Records hold the keys of
:mod:`mlip.data.keys` in eV / Å units; this module adds the keys of dataset-specific per-structure labels.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlip.data import AtomicData, DataError, to_atoms
from mlip.data import keys as K

# Per-structure extras added by dataset loaders (collated by stacking, like every per-structure key).
TARGETS = "targets"  # [P] float64: named scalar targets, names and units in ``metadata["targets"]``
SYSTEM_ID = "sid"  # [] int64: OC20 system id (the number in "random<sid>")
FRAME_ID = "fid"  # [] int64: OC20 frame index within its relaxation
REFERENCE_ENERGY = "reference_energy"  # [] float64, eV: OC20 slab + gas-phase reference energy

DEFAULT_UNITS = {"energy": "eV", "length": "Å", "forces": "eV/Å", "stress": "eV/Å^3"}


class AtomicDataset(torch.utils.data.Dataset):
    """A sequence of ``AtomicData`` records read from one source.

    Subclasses implement :meth:`__len__` and :meth:`get` (non-negative index). ``metadata`` is a JSON-able
    dict: at least ``format`` and ``units``; loaders add what the source defines (energy reference,
    target names, ...). ``source`` names the file or folder in every error message.
    """

    source: str
    metadata: dict[str, Any]

    def __len__(self) -> int:
        raise NotImplementedError

    def get(self, index: int) -> AtomicData:
        """Record ``index`` (``0 <= index < len(self)``) as ``AtomicData`` (eV, Å, eV/Å, eV/Å^3)."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> AtomicData:
        """Record ``index`` (negative counts from the end); ``IndexError`` outside the range."""
        n = len(self)
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"{self.source}: index {index} out of range for {n} records")
        return self.get(i)

    def __iter__(self) -> Iterator[AtomicData]:
        for i in range(len(self)):
            yield self.get(i)

    def to_atoms(self, index: int) -> Any:
        """Record ``index`` as ``ase.Atoms``: labels (eV, Å) in a ``SinglePointCalculator``.

        Named targets go to ``atoms.info`` under their names; OC20 ids and reference energy under
        ``sid``, ``fid``, ``reference_energy``.
        """
        data = self[index]
        atoms = to_atoms(data)
        names = self.metadata.get("targets", {}).get("names")
        if TARGETS in data and names:
            atoms.info.update({name: float(v) for name, v in zip(names, data[TARGETS].tolist(), strict=True)})
        for key in (SYSTEM_ID, FRAME_ID, REFERENCE_ENERGY):
            if key in data:
                atoms.info[key] = data[key].item()
        return atoms

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, {len(self)} records)"


class ListDataset(AtomicDataset):
    """Records already held in memory (loaders that must parse a whole file anyway)."""

    def __init__(self, records: Sequence[AtomicData], source: str, metadata: dict[str, Any]) -> None:
        self.records = list(records)
        self.source = source
        self.metadata = metadata

    def __len__(self) -> int:
        return len(self.records)

    def get(self, index: int) -> AtomicData:
        """Stored record ``index`` (a shallow copy, so callers may add keys)."""
        return dict(self.records[index])


class Subset(AtomicDataset):
    """The records of ``dataset`` at ``indices`` (any integer sequence), in that order."""

    def __init__(self, dataset: AtomicDataset, indices: Sequence[int] | np.ndarray) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(dataset)
        if self.indices.size and (self.indices.min() < -n or self.indices.max() >= n):
            raise IndexError(f"{dataset.source}: subset indices out of range for {n} records")
        self.indices = np.where(self.indices < 0, self.indices + n, self.indices)
        self.source = dataset.source
        self.metadata = dataset.metadata

    def __len__(self) -> int:
        return int(self.indices.size)

    def get(self, index: int) -> AtomicData:
        """Record ``indices[index]`` of the parent dataset."""
        return self.dataset.get(int(self.indices[index]))


class ConcatDataset(AtomicDataset):
    """Several datasets of the same format one after another (e.g. a folder of files)."""

    def __init__(self, datasets: Sequence[AtomicDataset], source: str) -> None:
        if not datasets:
            raise DataError(f"{source}: no datasets to concatenate")
        self.datasets = list(datasets)
        self.offsets = np.cumsum([0] + [len(d) for d in self.datasets]).tolist()
        self.source = source
        self.metadata = dict(self.datasets[0].metadata)
        self.metadata["parts"] = [d.source for d in self.datasets]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def get(self, index: int) -> AtomicData:
        """Record ``index`` of the concatenation (located by bisection over the part offsets)."""
        part = bisect.bisect_right(self.offsets, index) - 1
        return self.datasets[part].get(index - self.offsets[part])


def file_sha256(paths: Sequence[str | Path]) -> str:
    """SHA-256 hex digest of the contents of ``paths`` (in the given order; file names not included)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def check_finite(array: np.ndarray, source: str, field: str, record_offset: int = 0) -> None:
    """Raise :class:`DataError` naming the first record of ``array`` (``[F, ...]``) with a NaN or inf."""
    finite = np.isfinite(array.reshape(array.shape[0], -1)).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0]) + record_offset
        raise DataError(f"{source}, record {bad}: field '{field}' is not finite")


def molecule_record(
    positions: np.ndarray,
    numbers: np.ndarray,
    energy: float | None = None,
    forces: np.ndarray | None = None,
) -> AtomicData:
    """Open-boundary record: positions ``[N, 3]`` Å, numbers ``[N]``, energy eV, forces ``[N, 3]`` eV/Å.

    Builds tensors without validation (the caller validates in bulk or calls :func:`mlip.data.validate`).
    """
    data: AtomicData = {
        K.POSITIONS: torch.from_numpy(np.ascontiguousarray(positions, dtype=np.float64)),
        K.ATOMIC_NUMBERS: torch.from_numpy(np.ascontiguousarray(numbers, dtype=np.int64)),
        K.CELL: torch.zeros(3, 3, dtype=torch.float64),
        K.PBC: torch.zeros(3, dtype=torch.bool),
    }
    if energy is not None:
        data[K.ENERGY] = torch.tensor(float(energy), dtype=torch.float64)
    if forces is not None:
        data[K.FORCES] = torch.from_numpy(np.ascontiguousarray(forces, dtype=np.float64))
    return data
