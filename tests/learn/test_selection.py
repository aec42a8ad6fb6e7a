"""The frame selection of active learning: most uncertain first, no near-duplicates, invariances."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mlip.learn.selection import fingerprint_distance, select_uncertain, structure_fingerprint

NUMBERS = np.array([6, 6, 8, 1, 1, 1, 1, 1, 1])


def _ethanol_like(rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    return rng.normal(size=(len(NUMBERS), 3)) * scale


def test_fingerprint_is_invariant_to_rotation_translation_and_permutation():
    rng = np.random.default_rng(0)
    positions = _ethanol_like(rng)
    moved = positions @ Rotation.random(random_state=1).as_matrix().T + np.array([3.0, -1.0, 2.0])
    perm = np.array([1, 0, 2, 5, 3, 4, 8, 6, 7])  # swaps among equal elements only
    reference = structure_fingerprint(NUMBERS, positions)
    assert fingerprint_distance(reference, structure_fingerprint(NUMBERS, moved)) < 1e-12
    assert fingerprint_distance(reference, structure_fingerprint(NUMBERS[perm], positions[perm])) < 1e-12
    assert fingerprint_distance(reference, structure_fingerprint(NUMBERS, _ethanol_like(rng))) > 0.05


def test_selection_takes_the_most_uncertain_and_skips_near_duplicates():
    rng = np.random.default_rng(2)
    base = [_ethanol_like(rng) for _ in range(4)]
    # frames 0-3 distinct; 4 and 5 near-copies of frame 1 (the most uncertain)
    frames = base + [base[1] + 1e-4 * rng.normal(size=base[1].shape) for _ in range(2)]
    fingerprints = [structure_fingerprint(NUMBERS, f) for f in frames]
    uncertainty = [0.1, 0.9, 0.3, 0.2, 0.8, 0.85]
    assert select_uncertain(uncertainty, fingerprints, k=3, min_distance=0.01) == [1, 2, 3]
    assert select_uncertain(uncertainty, fingerprints, k=3, min_distance=0.0) == [1, 5, 4]
    # the training set's frames count as taken
    assert select_uncertain(uncertainty, fingerprints, k=2, min_distance=0.01, exclude=[fingerprints[2]]) == [
        1,
        3,
    ]
    assert select_uncertain(uncertainty, fingerprints, k=10, min_distance=0.01) == [1, 2, 3, 0]


def test_selection_refuses_bad_input():
    fingerprint = structure_fingerprint(NUMBERS, _ethanol_like(np.random.default_rng(3)))
    with pytest.raises(ValueError, match="non-finite uncertainty at candidates \\[1\\]"):
        select_uncertain([0.1, float("nan")], [fingerprint, fingerprint], k=1, min_distance=0.0)
    with pytest.raises(ValueError, match="2 uncertainties for 1"):
        select_uncertain([0.1, 0.2], [fingerprint], k=1, min_distance=0.0)
