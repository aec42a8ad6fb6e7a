"""``load(path, format=None, **options)``: one entry point for every dataset format, with detection."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlip.data import DataError
from mlip.datasets.base import AtomicDataset

# format -> (module of mlip.datasets, its loader[, the callable whose parameters are the options when the
# loader passes **options on]), imported on first use: opening one format never imports the dependencies
# of another (lmdb, h5py, ...)
_LOADERS = {
    "rmd17": ("rmd17", "load_rmd17"),
    "qm9": ("qm9", "load_qm9"),
    "qm9-csv": ("qm9", "load_qm9_csv"),
    "oc20-lmdb": ("oc20", "load_oc20_lmdb", "OC20LmdbDataset"),
    "aselmdb": ("oc20", "load_aselmdb", "AseLmdbDataset"),
    "oc20-s2ef": ("oc20", "load_s2ef_extxyz"),
    "oc20-traj": ("oc20", "load_oc20_trajectories"),
    "ase": ("ase_formats", "load_ase"),
    "hdf5": ("cache", "CacheDataset"),
}


def _lazy(module: str, name: str, options_of: str | None = None) -> Callable[..., AtomicDataset]:
    """``loader(path, **options)`` calling ``mlip.datasets.<module>.<name>``; an option the loader does not
    take (a parameter of ``options_of``, default ``name``) is a :class:`DataError` listing the known ones."""

    def loader(path: Path, **options) -> AtomicDataset:
        found = importlib.import_module(f"mlip.datasets.{module}")
        known = list(inspect.signature(getattr(found, options_of or name)).parameters)[1:]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise DataError(f"{path}: unknown option {unknown[0]!r} for {name}; known: {known}")
        return getattr(found, name)(path, **options)

    loader.__name__ = loader.__qualname__ = name
    return loader


FORMATS: dict[str, Callable[..., AtomicDataset]] = {fmt: _lazy(*where) for fmt, where in _LOADERS.items()}


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
    raise DataError(
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
        raise DataError(f"{path}: unknown format {fmt!r}; known: {sorted(FORMATS)}")
    return FORMATS[fmt](path, **options)


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` (the CLI's ``--option``) -> loader options, values parsed as YAML scalars
    (``split=1`` -> 1, ``molecule=aspirin`` -> ``"aspirin"``); :class:`DataError` on a malformed pair."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DataError(f"--option {pair!r}: expected KEY=VALUE (e.g. molecule=aspirin)")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise DataError(f"--option {pair!r}: value is not a YAML scalar ({exc})") from exc
    return out
