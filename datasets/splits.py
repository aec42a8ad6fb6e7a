"""Reproducible splits: seeded random splits, official index files, nested subsets for learning curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlip.data import DataError


def read_index_file(path: str | Path) -> np.ndarray:
    """Integer indices ``[M]`` int64 from a text/CSV file with one index per line (rMD17 ``splits/*.csv``)."""
    values = []
    for line_no, line in enumerate(Path(path).read_text().splitlines(), start=1):
        token = line.strip().split(",")[0].strip()
        if not token:
            continue
        try:
            values.append(int(float(token)))
        except ValueError as exc:
            raise DataError(
                f"{path}, line {line_no}: expected an integer index, got {line.strip()!r}"
            ) from exc
    return np.asarray(values, dtype=np.int64)


def random_split(n: int, sizes: Sequence[int | float], seed: int = 0) -> list[np.ndarray]:
    """Split ``range(n)`` into disjoint index arrays of the given sizes after a seeded permutation.

    ``sizes`` are counts or fractions of ``n`` (floats in (0, 1]); their sum must not exceed ``n``. The same
    ``(n, sizes, seed)`` always gives the same split (numpy ``default_rng(seed)``).
    """
    counts = [int(round(s * n)) if isinstance(s, float) else int(s) for s in sizes]
    if any(c < 0 for c in counts) or sum(counts) > n:
        raise ValueError(f"split sizes {counts} do not fit in {n} records")
    order = np.random.default_rng(seed).permutation(n)
    bounds = np.cumsum([0] + counts)
    return [np.sort(order[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def nested_subsets(
    indices: Sequence[int] | np.ndarray, sizes: Sequence[int], seed: int = 0
) -> list[np.ndarray]:
    """Subsets of ``indices`` of increasing ``sizes`` for learning curves; each contains every smaller one.

    All are prefixes of one seeded permutation of ``indices``, so a larger training set only adds data.
    """
    pool = np.asarray(indices, dtype=np.int64)
    if max(sizes, default=0) > pool.size:
        raise ValueError(f"subset size {max(sizes)} exceeds the {pool.size} available indices")
    order = pool[np.random.default_rng(seed).permutation(pool.size)]
    return [np.sort(order[: int(s)]) for s in sizes]
