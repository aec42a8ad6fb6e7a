"""The record of a learning run: ``history.json``, ``history.csv`` and the plot ``learn.png``.

One row per round: training-set size (frames), test force MAE (eV/Å; ``None`` without a test set),
the MD run's largest and mean committee force std (eV/Å), candidates, selected, labelled and failed
frames and the DFT calculations so far.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

COLUMNS = (
    "round",
    "train_size",
    "test_forces_mae",
    "md_steps",
    "max_uncertainty",
    "mean_uncertainty",
    "candidates",
    "selected",
    "labelled",
    "failed",
    "dft_calls",
)


def write_history(out: Path, history: list[dict[str, Any]], threshold: float) -> None:
    """Replace ``out/history.json``, ``out/history.csv`` and ``out/learn.png`` (atomically)."""
    from mlip.dft.store import write_atomic

    write_atomic(out / "history.json", json.dumps(history, indent=1) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    write_atomic(out / "history.csv", buffer.getvalue())
    if history:
        from mlip.train.checkpoint import atomic_write

        figure = history_figure(history, threshold)
        atomic_write(out / "learn.png", lambda path: figure.savefig(path, format="png", dpi=100))
        import matplotlib.pyplot as plt

        plt.close(figure)


def _series(history: list[dict[str, Any]], key: str, scale: float = 1.0) -> tuple[list[int], list[float]]:
    rows = [r for r in history if r.get(key) is not None and math.isfinite(r[key])]
    return [r["round"] for r in rows], [scale * r[key] for r in rows]


def history_figure(history: list[dict[str, Any]], threshold: float) -> Any:
    """Three panels against the round: test force MAE (meV/Å, when there is a test set), the MD run's
    max and mean committee force std (eV/Å, with the candidate ``threshold``), training-set size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(6, 8), sharex=True)
    rounds, mae = _series(history, "test_forces_mae", 1e3)
    if mae:
        axes[0].plot(rounds, mae, "o-", color="C0")
    else:
        axes[0].text(0.5, 0.5, "no test set", ha="center", va="center", transform=axes[0].transAxes)
    axes[0].set_ylabel("test force MAE\n(meV/Å)")
    for key, style, name in (("max_uncertainty", "o-", "max"), ("mean_uncertainty", "s--", "mean")):
        axes[1].plot(*_series(history, key), style, label=f"{name} over the MD run")
    axes[1].axhline(threshold, color="k", lw=0.8, ls=":", label=f"threshold {threshold:g}")
    axes[1].set_ylabel("committee force std\n(eV/Å)")
    axes[1].legend(fontsize=8)
    axes[2].plot(*_series(history, "train_size"), "o-", color="C2")
    axes[2].set_ylabel("training set\n(frames)")
    axes[2].set_xlabel("round")
    axes[2].xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return fig
