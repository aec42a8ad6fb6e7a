"""Crash-safe files: write to a temporary file, fsync, rename over the target, fsync the folder.

Checkpoints hold only tensors and plain containers, so they load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then atomically replace ``path`` (readers see old or new, never half)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
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


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically ``torch.save`` a checkpoint dict."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary unpickling)."""
    return torch.load(path, map_location=device, weights_only=True)
