"""Dataset loaders (rMD17, QM9, OC20, extxyz / ASE db / traj), the HDF5 cache, statistics and splits.

Entry point: :func:`load` (format detected from the path). Every dataset indexes to ``AtomicData`` in
eV / Å units and converts back with ``.to_atoms(i)``.
"""

from mlip.datasets.api import FORMATS, detect_format, load
from mlip.datasets.base import AtomicDataset, ConcatDataset, ListDataset, Subset
from mlip.datasets.cache import CacheDataset, write_cache
from mlip.datasets.splits import nested_subsets, random_split, read_index_file

__all__ = [
    "FORMATS",
    "AtomicDataset",
    "CacheDataset",
    "ConcatDataset",
    "ListDataset",
    "Subset",
    "detect_format",
    "load",
    "nested_subsets",
    "random_split",
    "read_index_file",
    "write_cache",
]
