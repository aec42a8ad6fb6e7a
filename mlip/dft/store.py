"""Resumable extxyz files: append one frame at a time durably, and recover after a crash.

Each frame carries an integer ``info["config_id"]``. :func:`read_frames` drops a truncated trailing frame
(a process killed mid-write) by rewriting the file atomically with the complete frames only.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any


def _parse(text: str) -> list[Any]:
    from ase.io import read

    return read(io.StringIO(text), index=":", format="extxyz") if text.strip() else []


def _split_frames(text: str) -> list[str]:
    """Split extxyz text into per-frame blocks (atom count line, comment line, N atom lines)."""
    lines = text.splitlines(keepends=True)
    frames, i = [], 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        try:
            n = int(lines[i].split()[0])
        except ValueError:
            break
        block = lines[i : i + n + 2]
        if len(block) < n + 2 or not block[-1].endswith("\n"):
            break
        frames.append("".join(block))
        i += n + 2
    return frames


def read_frames(path: str | Path) -> list[Any]:
    """All complete frames of ``path`` as ``ase.Atoms`` (an empty list if it does not exist).

    A trailing incomplete or unparsable frame is removed from the file (atomic rewrite) and reported.
    """
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    blocks = _split_frames(text)
    good: list[str] = []
    frames: list[Any] = []
    for block in blocks:
        try:
            parsed = _parse(block)
        except Exception:  # a frame cut mid-line parses as garbage: stop at the last good one
            break
        good.append(block)
        frames.extend(parsed)
    clean = "".join(good)
    if clean != text:
        print(f"{path}: dropped an incomplete trailing frame ({len(text) - len(clean)} bytes)")
        write_atomic(path, clean)
    return frames


def write_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` by ``text`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def frame_text(atoms: Any) -> str:
    """One ``ase.Atoms`` (with labels in a calculator, if any) as extxyz text."""
    from ase.io import write

    buffer = io.StringIO()
    write(buffer, atoms, format="extxyz")
    return buffer.getvalue()


def append_frame(path: str | Path, atoms: Any) -> None:
    """Append one frame durably: a single write, flushed and fsynced."""
    with open(path, "a") as f:
        f.write(frame_text(atoms))
        f.flush()
        os.fsync(f.fileno())
