"""Training data: load and split datasets, attach neighbour lists, deterministic batch order.

The order of epoch ``e`` is ``randperm(n)`` from a generator seeded with ``(seed, e)``, so it depends
only on the step number: a resumed run sees exactly the batches an uninterrupted one would. A global
batch is split into contiguous shards, one per process (DDP).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from mlip.data import DataError
from mlip.data import keys as K
from mlip.data.atomic_data import AtomicData, collate
from mlip.data.neighbors import add_neighbors
from mlip.train.config import DataConfig


@dataclass
class Splits:
    """Datasets (``mlip.datasets.AtomicDataset``) of one run; ``valid``/``test`` may be ``None``."""

    train: object
    valid: object | None
    test: object | None
    isolated: dict[int, float]  # Z -> energy (eV) of the training file's isolated-atom frames


def load_splits(cfg: DataConfig) -> Splits:
    """Load ``cfg.train`` (and ``valid``/``test`` files) and carve held-out parts by seeded fractions."""
    from mlip.datasets import Subset, load, nested_subsets, random_split

    full = load(cfg.train, format=cfg.format, **cfg.options)
    isolated_indices = full.metadata.get("isolated_atom_indices", [])
    isolated = isolated_atom_energies(full, isolated_indices)
    if isolated_indices:  # reference frames, not training data
        full = Subset(full, sorted(set(range(len(full))) - set(isolated_indices)))
    valid = load(cfg.valid, format=cfg.format, **cfg.valid_options) if cfg.valid else None
    test = load(cfg.test, format=cfg.format, **cfg.test_options) if cfg.test else None
    n = len(full)
    n_valid = 0 if valid is not None else int(round(cfg.valid_fraction * n))
    n_test = 0 if test is not None else int(round(cfg.test_fraction * n))
    train_idx, valid_idx, test_idx = random_split(
        n, [n - n_valid - n_test, n_valid, n_test], seed=cfg.split_seed
    )
    if cfg.max_train is not None and cfg.max_train < len(train_idx):
        train_idx = nested_subsets(train_idx, [cfg.max_train], seed=cfg.split_seed)[0]
    if valid is None and n_valid:
        valid = Subset(full, valid_idx)
    if test is None and n_test:
        test = Subset(full, test_idx)
    return Splits(train=Subset(full, train_idx), valid=valid, test=test, isolated=isolated)


def bootstrap(dataset: object, seed: int) -> object:
    """A resample of ``dataset``: ``len(dataset)`` records drawn with replacement (seeded by ``seed``)."""
    from mlip.datasets import Subset

    generator = torch.Generator().manual_seed(int(seed))
    return Subset(dataset, torch.randint(len(dataset), (len(dataset),), generator=generator).numpy())


def isolated_atom_energies(dataset: object, indices: Sequence[int]) -> dict[int, float]:
    """``{Z: energy (eV)}`` of the single-atom frames at ``indices``; :class:`DataError` naming the record
    when one holds several atoms, has no energy, or disagrees with another frame of the same element."""
    energies: dict[int, float] = {}
    for i in indices:
        record = dataset[i]
        where = f"{dataset.source}, record {i} (config_type=IsolatedAtom)"
        if record[K.POSITIONS].shape[0] != 1 or K.ENERGY not in record:
            n = record[K.POSITIONS].shape[0]
            raise DataError(
                f"{where}: needs one atom with an energy, has {n} atoms, energy: {K.ENERGY in record}"
            )
        z, energy = int(record[K.ATOMIC_NUMBERS][0]), float(record[K.ENERGY])
        if z in energies and abs(energies[z] - energy) > 1e-6:
            raise DataError(f"{where}: energy {energy} eV, another isolated Z={z} frame has {energies[z]} eV")
        energies[z] = energy
    return energies


def require_labels(dataset: object, records: Sequence[AtomicData], source: str) -> None:
    """:class:`DataError` when no record of the training set has an energy or force label (weight > 0),
    naming the label keys the loader looked for and those the file holds (when the loader records them)."""

    def labelled(r: AtomicData, key: str, weight: str) -> bool:
        return key in r and float(r.get(weight, 1.0)) > 0

    if any(labelled(r, K.ENERGY, K.ENERGY_WEIGHT) or labelled(r, K.FORCES, K.FORCES_WEIGHT) for r in records):
        return
    metadata = getattr(dataset, "metadata", {})
    message = f"{source}: the training set has no energy or force labels"
    if "label_keys" in metadata:
        keys = metadata["label_keys"]
        looked = [keys[k] for k in ("energy", "forces", "stress", "virial")]
        message += f"; looked for {looked}, the file holds {metadata.get('stored_keys', [])}"
    raise DataError(
        f"{message}; name them with data.options.keys, e.g. {{energy: REF_energy, forces: REF_forces}}"
    )


def with_neighbors(dataset: object, cutoff: float) -> list[AtomicData]:
    """All records of ``dataset`` with an ``edge_index``/``cell_shifts`` neighbour list at ``cutoff`` (Å)."""
    return [add_neighbors(dataset[i], cutoff) for i in range(len(dataset))]


def _generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """Permutation ``[n]`` of the training records for ``epoch`` (deterministic in ``seed``, ``epoch``)."""
    return torch.randperm(n, generator=_generator(seed, epoch))


def global_batch(n: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """Record indices ``[batch_size]`` of optimizer step ``step`` (epochs of ``n // batch_size`` steps)."""
    steps_per_epoch = n // batch_size
    epoch, position = divmod(step, steps_per_epoch)
    return epoch_order(n, seed, epoch)[position * batch_size : (position + 1) * batch_size]


def shard(indices: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """The contiguous part of ``indices`` that process ``rank`` of ``world_size`` handles."""
    return torch.tensor_split(indices, world_size)[rank]


def batch_of(records: Sequence[AtomicData], indices: Sequence[int], device: torch.device) -> AtomicData:
    """Collate ``records[indices]`` and move the batch to ``device``."""
    batch = collate([records[int(i)] for i in indices])
    return {k: v.to(device) for k, v in batch.items()}


def batches(
    records: Sequence[AtomicData], batch_size: int, device: torch.device, indices: Sequence[int] | None = None
) -> Iterator[AtomicData]:
    """Consecutive batches of ``records`` (or of ``records[indices]``), in order."""
    order = list(range(len(records))) if indices is None else [int(i) for i in indices]
    for start in range(0, len(order), batch_size):
        yield batch_of(records, order[start : start + batch_size], device)


def atom_counts(records: Sequence[AtomicData]) -> torch.Tensor:
    """Number of atoms ``[len(records)]`` of each record."""
    return torch.tensor([r[K.POSITIONS].shape[0] for r in records], dtype=torch.int64)
