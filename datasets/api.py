"""``load(path, format=None, **options)``: one entry point for every dataset format, with detection."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mlip.datasets.base import AtomicDataset


def _rmd17(path: Path, **options) -> AtomicDataset:
    from mlip.datasets.rmd17 import load_rmd17

    return load_rmd17(path, **options)


def _qm9(path: Path, **options) -> AtomicDataset:
    from mlip.datasets.qm9 import load_qm9

    return load_qm9(path, **options)


def _qm9_csv(path: Path, **options) -> AtomicDataset:
    from mlip.datasets.qm9 import load_qm9_csv

    return load_qm9_csv(path, **options)


def _oc20_lmdb(path: Path, **options) -> AtomicDataset:
    from mlip.datasets.oc20 import load_oc20_lmdb

    return load_oc20_lmdb(path, **options)


def _aselmdb(path: Path, **options) -> AtomicDataset:
    from mlip.datasets.oc20 import load_aselmdb

    return load_aselmdb(path, **options)


def _oc20_s2ef(path: Path, **options) -> AtomicDataset:
    from mlip.datasets.oc20 import load_s2ef_extxyz

    return load_s2ef_extxyz(path, **options)


def _oc20_traj(path: Path, **options) -> AtomicDataset:
    from mlip.datasets.oc20 import load_oc20_trajectories

    return load_oc20_trajectories(path, **options)


def _ase(path: Path, **options) -> AtomicDataset:
    from mlip.datasets.ase_formats import load_ase

    return load_ase(path, **options)


def _cache(path: Path, **options) -> AtomicDataset:
    from mlip.datasets.cache import CacheDataset

    return CacheDataset(path, **options)


FORMATS: dict[str, Callable[..., AtomicDataset]] = {
    "rmd17": _rmd17,
    "qm9": _qm9,
    "qm9-csv": _qm9_csv,
    "oc20-lmdb": _oc20_lmdb,
    "aselmdb": _aselmdb,
    "oc20-s2ef": _oc20_s2ef,
    "oc20-traj": _oc20_traj,
    "ase": _ase,
    "hdf5": _cache,
}


def _folder_format(path: Path) -> str:
    """Format of a folder from the files it holds."""
    names = [p.name for p in path.iterdir()]
    checks = (
        ("rmd17", lambda n: n.startswith("rmd17_") and n.endswith(".npz")),
        ("rmd17", lambda n: n == "npz_data"),
        ("qm9", lambda n: n.startswith("dsgdb9nsd_") and n.endswith(".xyz")),
        ("oc20-s2ef", lambda n: n.endswith(".extxyz.xz") or n.endswith(".extxyz")),
        ("aselmdb", lambda n: n.endswith(".aselmdb")),
        ("oc20-lmdb", lambda n: n.endswith(".lmdb")),
        ("oc20-traj", lambda n: n.endswith(".traj")),
    )
    for name, match in checks:
        if any(match(n) for n in names):
            return name
    raise ValueError(
        f"{path}: cannot tell the dataset format of this folder; pass format= one of {sorted(FORMATS)}"
    )


def detect_format(path: str | Path) -> str:
    """Name of the loader for ``path`` (a key of :data:`FORMATS`), from its suffix or folder contents."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        return _folder_format(path)
    name = path.name.lower()
    by_suffix = (
        ((".h5", ".hdf5"), "hdf5"),
        ((".npz",), "rmd17"),
        ((".tar.bz2", ".tar.gz", ".tar"), "qm9"),
        ((".csv",), "qm9-csv"),
        ((".aselmdb",), "aselmdb"),
        ((".lmdb",), "oc20-lmdb"),
        ((".extxyz.xz",), "oc20-s2ef"),
    )
    for suffixes, fmt in by_suffix:
        if name.endswith(suffixes):
            return fmt
    if name.startswith("dsgdb9nsd_") and name.endswith(".xyz"):
        return "qm9"
    return "ase"


def load(path: str | Path, format: str | None = None, **options) -> AtomicDataset:
    """Open a dataset: ``len()``, indexing to ``AtomicData`` (eV, Å) and ``.to_atoms(i)``.

    ``format`` is one of :data:`FORMATS` (detected from the path when ``None``); ``options`` go to that
    format's loader (e.g. ``molecule``, ``split``, ``part`` for rMD17; ``keys`` for extxyz; ``cutoff`` for
    an HDF5 cache).
    """
    path = Path(path)
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {sorted(FORMATS)}")
    return FORMATS[fmt](path, **options)
