"""Which frames to label next: the most uncertain ones, spread out so that no two are near-duplicates.

:func:`select_uncertain` walks the candidates from the most to the least uncertain and keeps a frame
when its :func:`structure_fingerprint` lies at least ``min_distance`` from every frame already kept (and
from the ``exclude`` fingerprints, e.g. the training set), until ``k`` are kept. Consecutive MD frames
are nearly identical, so without the distance test one uncertain event would fill the whole batch.

The fingerprint is invariant to rotations, translations and the permutation of equal atoms: per pair of
elements, the sorted inverse interatomic distances (1/Å). Its distance is their root-mean-square
difference (1/Å), so ``min_distance`` reads as a typical change of an inverse distance (0.01 1/Å: a
1.5 Å bond changed by about 0.02 Å).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def structure_fingerprint(numbers: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Sorted inverse pair distances of one structure, grouped by element pair, ``[N * (N - 1) / 2]``
    (1/Å); ``numbers`` ``[N]`` atomic numbers, ``positions`` ``[N, 3]`` in Å (no periodic images)."""
    numbers = np.asarray(numbers)
    positions = np.asarray(positions, dtype=np.float64)
    i, j = np.triu_indices(len(numbers), k=1)
    inverse = 1.0 / np.linalg.norm(positions[i] - positions[j], axis=1)
    low, high = np.minimum(numbers[i], numbers[j]), np.maximum(numbers[i], numbers[j])
    order = np.lexsort((inverse, high, low))  # by element pair, then by inverse distance
    return inverse[order]


def fingerprint_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Root-mean-square difference of two fingerprints of the same composition (1/Å)."""
    if a.shape != b.shape:
        raise ValueError(f"fingerprints of different compositions: {a.shape} vs {b.shape}")
    return float(np.sqrt(np.mean(np.square(a - b)))) if a.size else 0.0


def select_uncertain(
    uncertainty: Sequence[float],
    fingerprints: Sequence[np.ndarray],
    k: int,
    min_distance: float,
    exclude: Sequence[np.ndarray] = (),
) -> list[int]:
    """Indices of at most ``k`` candidates, most uncertain first, no two (and none and an ``exclude``
    fingerprint) closer than ``min_distance`` (1/Å, :func:`fingerprint_distance`). ``uncertainty``
    ``[F]`` (any unit, larger = less certain; ties keep the earlier frame), ``fingerprints`` ``[F]``
    arrays from :func:`structure_fingerprint`. Candidates of a composition not seen before are compared
    only with their own composition."""
    if len(uncertainty) != len(fingerprints):
        raise ValueError(f"{len(uncertainty)} uncertainties for {len(fingerprints)} fingerprints")
    if k < 0 or min_distance < 0:
        raise ValueError(f"k = {k} and min_distance = {min_distance} must be >= 0")
    values = np.asarray(uncertainty, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(
            f"non-finite uncertainty at candidates {np.flatnonzero(~np.isfinite(values)).tolist()}"
        )
    taken: list[np.ndarray] = list(exclude)
    chosen: list[int] = []
    for index in np.argsort(-values, kind="stable"):
        if len(chosen) == k:
            break
        candidate = fingerprints[index]
        if all(
            other.shape != candidate.shape or fingerprint_distance(candidate, other) >= min_distance
            for other in taken
        ):
            chosen.append(int(index))
            taken.append(candidate)
    return chosen
