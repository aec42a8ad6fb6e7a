"""The run folder (``output.dir``) of ``mlip train``: never reuse one by accident.

A folder that holds checkpoints or model files belongs to an earlier run: starting again there is refused
unless the user asks to continue it (``--resume``) or to replace it (``--overwrite``, which deletes the
earlier run's outputs first). ``--resume`` with no checkpoint is an error, never a fresh start.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mlip.errors import UserInputError
from mlip.train.checkpoint import remove_stale_tmp

LAST_CHECKPOINT = "checkpoint_last.pt"
RUN_PATTERNS = ("checkpoint_*.pt", "*.model")  # files whose presence marks a folder as an earlier run
OUTPUT_PATTERNS = (*RUN_PATTERNS, "config.yaml", "log.csv", "metrics.json", "*.png", "tensorboard")


def earlier_run_files(out: Path) -> list[str]:
    """Names of the checkpoints and model files in ``out`` (sorted)."""
    return sorted(p.name for pattern in RUN_PATTERNS for p in out.glob(pattern))


def prepare(out: Path, resume: bool, overwrite: bool, is_main: bool) -> Path | None:
    """Check ``out`` against the flags; return the checkpoint to resume from (``None``: a fresh run).

    ``resume`` and ``overwrite`` together are an error. The main process deletes an earlier run's outputs
    under ``overwrite`` and temporary files a killed process left behind.
    """
    if resume and overwrite:
        raise UserInputError("--resume and --overwrite exclude each other")
    found = earlier_run_files(out) if out.is_dir() else []
    if resume:
        if not (out / LAST_CHECKPOINT).is_file():
            raise UserInputError(f"--resume: no {LAST_CHECKPOINT} in output.dir {out}, nothing to resume")
    elif found and not overwrite:
        raise UserInputError(
            f"output.dir {out} holds an earlier run ({', '.join(found)}): pass --resume to continue it or "
            "--overwrite to replace it"
        )
    if is_main and out.is_dir():
        remove_stale_tmp(out)
        if overwrite:
            for path in [p for pattern in OUTPUT_PATTERNS for p in out.glob(pattern)]:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    return out / LAST_CHECKPOINT if resume else None
