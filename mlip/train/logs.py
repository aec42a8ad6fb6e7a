"""Run logs: one CSV row per validation (always) and TensorBoard scalars (when it imports)."""

from __future__ import annotations

import csv
from pathlib import Path

COLUMNS = (
    "step",
    "epoch",
    "time_s",
    "lr",
    "train_loss",
    "train_energy_mae",
    "train_forces_mae",
    "valid_loss",
    "valid_energy_mae",
    "valid_energy_rmse",
    "valid_forces_mae",
    "valid_forces_rmse",
    "valid_stress_mae",
)


class RunLog:
    """``log.csv`` in the run folder (appended to; on resume rows after the checkpoint are dropped)."""

    def __init__(self, folder: Path, resume_step: int | None, tensorboard: bool) -> None:
        self.path = folder / "log.csv"
        if resume_step is None or not self.path.exists():
            self.path.write_text(",".join(COLUMNS) + "\n")
        else:
            self._truncate(resume_step)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional: CSV is always written
                pass
            else:
                self.writer = SummaryWriter(str(folder / "tensorboard"), purge_step=resume_step)

    def _truncate(self, step: int) -> None:
        """Keep the complete rows up to ``step`` (a row torn by a crash mid-write is dropped), atomically."""
        import io

        from mlip.train.checkpoint import write_text

        text = self.path.read_text()
        complete = text[: text.rfind("\n") + 1]  # a last line without its newline was torn
        rows = [
            r
            for r in csv.DictReader(io.StringIO(complete))
            if None not in r.values() and None not in r and int(r["step"]) <= step
        ]
        out = io.StringIO()
        writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.path, out.getvalue())

    def write(self, row: dict[str, float]) -> None:
        """Append one row (missing columns stay empty) and mirror it to TensorBoard."""
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, COLUMNS, lineterminator="\n").writerow({k: row.get(k, "") for k in COLUMNS})
        if self.writer is not None:
            for key, value in row.items():
                if key not in ("step", "epoch"):
                    self.writer.add_scalar(key.replace("_", "/", 1), value, int(row["step"]))
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_log(path: str | Path) -> dict[str, list[float]]:
    """Columns of a ``log.csv`` as float lists (empty cells become NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {c: [float(r[c]) if r.get(c) else float("nan") for r in rows] for c in COLUMNS}
