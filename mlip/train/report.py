"""What a training run tells its user in plain text: a summary at the start and one line per validation,
printed to stdout (also with ``output.progress: false``) and appended to ``train.log`` in the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlip.data import keys as K

LOG_NAME = "train.log"


def say(folder: Path, text: str, bar: Any = None) -> None:
    """Print ``text`` (through the tqdm ``bar`` when there is one, so the bar stays intact) and append it
    to ``folder/train.log``."""
    if bar is not None:
        bar.write(text)
    else:
        print(text, flush=True)
    with open(folder / LOG_NAME, "a") as f:
        f.write(text + "\n")


def label_counts(records: list) -> str:
    """``"120 structures (energy 120, forces 120, stress 0)"`` for a list of records."""
    counts = {key: sum(key in r for r in records) for key in (K.ENERGY, K.FORCES, K.STRESS)}
    labels = ", ".join(f"{key} {n}" for key, n in counts.items())
    return f"{len(records)} structures ({labels})"


def summary(trainer: Any) -> str:
    """The start-of-run summary of a :class:`~mlip.train.trainer.Trainer`: splits with their label
    counts, elements, E0s (eV), parameter count, device, dtype, and the stopping criteria."""
    from ase.data import chemical_symbols

    cfg, model = trainer.cfg, trainer.model
    symbols = [chemical_symbols[z] for z in model.config.species]
    e0s = model.config.e0s or [0.0] * len(symbols)
    params = sum(p.numel() for p in model.parameters())
    limit = f", time limit {cfg.train.time_limit:g} s" if cfg.train.time_limit is not None else ""
    lines = [f"mlip train: run folder {trainer.out}"]
    for name, records in (
        ("train", trainer.train_records),
        ("valid", trainer.valid_records),
        ("test", trainer.test_records),
    ):
        lines.append(f"  {name:<6}{label_counts(records)}")
    lines += [
        f"  elements {' '.join(symbols)}",
        f"  E0s [eV] {', '.join(f'{s} {e:.6g}' for s, e in zip(symbols, e0s, strict=True))}",
        f"  model {model.name}: {params:,} parameters, {cfg.train.dtype} on {trainer.ctx.device}",
        f"  {cfg.train.max_steps} steps of batch {cfg.train.batch_size}, validation every "
        f"{cfg.train.valid_every}{limit}, schedule {cfg.schedule.kind}",
    ]
    if trainer.step:
        lines.append(f"  resumed at step {trainer.step}")
    return "\n".join(lines)


def validation_line(row: dict[str, float], max_steps: int) -> str:
    """One line per validation: step, time, lr, train loss and the validation errors (meV units)."""
    parts = [f"step {int(row['step'])}/{max_steps}", f"{row['time_s']:.1f} s", f"lr {row['lr']:.3g}"]
    parts.append(f"train loss {row['train_loss']:.4g}")
    for key, label, unit in (
        ("valid_loss", "valid loss", ""),
        ("valid_energy_mae", "E MAE", " meV/atom"),
        ("valid_forces_mae", "F MAE", " meV/Å"),
        ("valid_stress_mae", "S MAE", " meV/Å³"),
    ):
        if key in row:
            parts.append(f"{label} {row[key]:.4g}{unit}")
    return "  ".join(parts)
