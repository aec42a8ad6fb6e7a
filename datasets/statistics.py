"""Dataset statistics for model set-up: per-element reference energies (E0), force scale, neighbour count."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mlip.data import DataError
from mlip.data import keys as K
from mlip.datasets.base import AtomicDataset
from mlip.datasets.cache import NeighborFn, default_neighbor_fn


@dataclass
class DatasetStatistics:
    """Summary of a dataset (eV, Å).

    ``e0``: energy per atom of each element (eV); ``e0_method`` says how: ``"least_squares"``, ``"average"``
    (every element the mean energy per atom), ``"average_fallback"`` (least squares was asked for but the
    compositions do not determine the E0s, e.g. one molecule: the average instead), ``"given"``;
    ``energy_*``: mean and
    RMS of the per-atom residual ``(E - sum_i E0[Z_i]) / N`` (eV/atom); ``forces_*``: mean and RMS over all
    force components (eV/Å); ``avg_num_neighbors``: mean number of neighbours per atom within ``cutoff``.
    """

    num_structures: int
    num_atoms: int
    elements: list[int]
    e0: dict[int, float]
    e0_method: str
    energy_per_atom_mean: float | None
    energy_per_atom_rms: float | None
    forces_mean: float | None
    forces_rms: float | None
    avg_num_neighbors: float | None
    cutoff: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (element keys as strings)."""
        out = asdict(self)
        out["e0"] = {str(z): v for z, v in self.e0.items()}
        return out


def fit_e0(counts: np.ndarray, energies: np.ndarray, elements: Sequence[int]) -> dict[int, float]:
    """Least-squares E0 (eV per atom) from element counts ``[B, n_elements]`` and energies ``[B]`` (eV).

    When compositions do not determine every E0 (e.g. one molecule only) the minimum-norm solution is
    returned; the per-structure sum of E0 is still the best fit.
    """
    solution, *_ = np.linalg.lstsq(counts.astype(np.float64), energies, rcond=None)
    return {int(z): float(e) for z, e in zip(elements, solution, strict=True)}


def average_e0(counts: np.ndarray, energies: np.ndarray, elements: Sequence[int]) -> dict[int, float]:
    """Every element's E0 = the mean energy per atom ``mean(E / N)`` (eV) of the structures."""
    mean = float((energies / counts.sum(axis=1)).mean())
    return {int(z): mean for z in elements}


E0_METHODS = ("least_squares", "average")


def compute_statistics(
    dataset: AtomicDataset,
    e0: str | Mapping[int, float] = "least_squares",
    cutoff: float | None = None,
    neighbor_fn: NeighborFn | None = None,
    indices: Sequence[int] | np.ndarray | None = None,
) -> DatasetStatistics:
    """Statistics of ``dataset`` (or of the records at ``indices``, e.g. the training split).

    ``e0``: ``"least_squares"``, ``"average"`` or a mapping ``{Z: eV}``. ``cutoff`` (Å) enables the
    neighbour count, using
    stored ``edge_index`` when records carry it, else ``neighbor_fn`` (default ``mlip.data.neighbors``).
    Records with an energy or forces weight of 0 are left out of the energy or force statistics.
    """
    order = range(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64).tolist()
    numbers, energies, force_sum, force_sq, force_count, edges, atoms = [], [], 0.0, 0.0, 0, 0, 0
    if cutoff is not None and neighbor_fn is None:
        neighbor_fn = default_neighbor_fn()
    for i in order:
        r = dataset[i]
        z = r[K.ATOMIC_NUMBERS].numpy()
        atoms += z.size
        if K.ENERGY in r and float(r.get(K.ENERGY_WEIGHT, 1.0)) > 0:
            numbers.append(z)
            energies.append(float(r[K.ENERGY]))
        if K.FORCES in r and float(r.get(K.FORCES_WEIGHT, 1.0)) > 0:
            f = r[K.FORCES].numpy()
            force_sum += float(f.sum())
            force_sq += float((f * f).sum())
            force_count += f.size
        if cutoff is not None:
            if K.EDGE_INDEX in r:
                edges += r[K.EDGE_INDEX].shape[1]
            else:
                edges += neighbor_fn(r[K.POSITIONS], r[K.CELL], r[K.PBC], float(cutoff))[0].shape[1]
    elements = sorted({int(z) for zs in numbers for z in zs}) if numbers else []
    counts = np.zeros((len(numbers), len(elements)), dtype=np.int64)
    column = {z: k for k, z in enumerate(elements)}
    for row, zs in enumerate(numbers):
        np.add.at(counts[row], [column[int(z)] for z in zs], 1)
    energy = np.asarray(energies, dtype=np.float64)
    if isinstance(e0, str):
        if e0 not in E0_METHODS:
            raise ValueError(f"e0 must be one of {E0_METHODS} or a mapping {{Z: eV}}, got {e0!r}")
        method = e0
        if e0 == "least_squares" and energies and np.linalg.matrix_rank(counts) < len(elements):
            method = "average_fallback"  # e.g. one composition: least squares would split E arbitrarily
        fit = fit_e0 if method == "least_squares" else average_e0
        e0_values = fit(counts, energy, elements) if energies else {}
    else:
        missing = sorted(set(elements) - {int(z) for z in e0})
        if missing:
            raise DataError(f"e0: the given E0s lack elements {missing} present in {dataset.source}")
        e0_values, method = {int(z): float(v) for z, v in e0.items()}, "given"
    residual = None
    if energies:
        reference = counts @ np.array([e0_values[z] for z in elements])
        residual = (energy - reference) / counts.sum(axis=1)
    return DatasetStatistics(
        num_structures=len(order),
        num_atoms=int(atoms),
        elements=elements,
        e0=e0_values,
        e0_method=method,
        energy_per_atom_mean=None if residual is None else float(residual.mean()),
        energy_per_atom_rms=None if residual is None else float(np.sqrt((residual**2).mean())),
        forces_mean=force_sum / force_count if force_count else None,
        forces_rms=float(np.sqrt(force_sq / force_count)) if force_count else None,
        avg_num_neighbors=edges / atoms if (cutoff is not None and atoms) else None,
        cutoff=cutoff,
    )
