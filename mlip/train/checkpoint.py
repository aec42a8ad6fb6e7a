"""Crash-safe files: write to a temporary file, fsync, rename over the target, fsync the folder.

Checkpoints hold only tensors and plain containers, so they load with ``torch.load(weights_only=True)``,
and carry ``sha256``, a digest of everything else in them, verified on load (``torch.load`` itself reads a
flipped byte in the tensor data as a different number). Any failure is a :class:`ModelFileError` naming
the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mlip.models.io import ModelFileError, tensor_digest

TMP_MARK = ".tmp"  # in the name of every temporary file atomic_write creates


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then atomically replace ``path`` (readers see old or new, never half)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def write_text(path: str | Path, text: str) -> None:
    """Atomically write a text file."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def remove_stale_tmp(folder: str | Path) -> None:
    """Delete temporary files a killed process left in ``folder`` (``atomic_write`` removes its own)."""
    for path in Path(folder).glob(f".*{TMP_MARK}*"):
        path.unlink(missing_ok=True)


def _flatten(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Nested containers -> ``{dotted path: tensor}``; non-tensor leaves become the bytes of their repr."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            _flatten(value, f"{prefix}{key!r}.", out)
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            _flatten(value, f"{prefix}{i}.", out)
    elif isinstance(obj, torch.Tensor):
        out[prefix] = obj
    else:
        out[prefix] = torch.tensor(list(repr(obj).encode()), dtype=torch.uint8)
    return out


def state_digest(state: dict[str, Any]) -> str:
    """SHA-256 of a checkpoint dict (every tensor's bytes and every other value), ``"sha256"`` excluded."""
    return tensor_digest(_flatten({k: v for k, v in state.items() if k != "sha256"}, "", {}))


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically ``torch.save`` a checkpoint dict with its ``sha256`` digest."""
    state = {**state, "sha256": state_digest(state)}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary unpickling) and verify its digest
    (checkpoints written before the digest existed load unverified); :class:`ModelFileError` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch.load raises many types on damaged zips and pickles
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise ModelFileError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}: {first_line})"
        ) from exc
    if not isinstance(state, dict):
        raise ModelFileError(f"{path}: not an mlip training checkpoint (holds a {type(state).__name__})")
    if "sha256" in state and state["sha256"] != state_digest(state):
        raise ModelFileError(f"{path}: corrupt checkpoint, its contents do not match its sha256 digest")
    return {k: v for k, v in state.items() if k != "sha256"}
