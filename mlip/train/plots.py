"""PNG figures: learning curves from ``log.csv`` and parity plots of predictions vs references."""

from __future__ import annotations

from pathlib import Path

import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curve(log: dict[str, list[float]], path: str | Path) -> None:
    """Validation energy/force MAE and training loss against the step (log-scaled)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = (
        ("train_loss", "valid_loss", "loss"),
        ("train_energy_mae", "valid_energy_mae", "energy MAE (meV/atom)"),
        ("train_forces_mae", "valid_forces_mae", "force MAE (meV/Å)"),
    )
    for ax, (train_key, valid_key, label) in zip(axes, panels, strict=True):
        ax.plot(log["step"], log[train_key], label="train (running)")
        ax.plot(log["step"], log[valid_key], label="valid", marker="o", markersize=3)
        ax.set(xlabel="step", ylabel=label, yscale="log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parity(arrays: dict[str, tuple[torch.Tensor, torch.Tensor]], path: str | Path, title: str = "") -> None:
    """Predicted vs reference per-atom energy (eV/atom, mean removed) and force components (eV/Å)."""
    plt = _pyplot()
    names = [n for n in ("energy_per_atom", "forces") if n in arrays]
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        ref, pred = (a.numpy() for a in arrays[name])
        if name == "energy_per_atom":
            offset = ref.mean()
            ref, pred = ref - offset, pred - offset
        mae = abs(pred - ref).mean() * 1000
        lo, hi = min(ref.min(), pred.min()), max(ref.max(), pred.max())
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8)
        ax.scatter(ref, pred, s=3, alpha=0.5)
        unit = "eV/atom" if name == "energy_per_atom" else "eV/Å"
        shifted = " - mean reference" if name == "energy_per_atom" else ""  # both axes, same offset
        ax.set(xlabel=f"reference {name}{shifted} ({unit})", ylabel=f"predicted{shifted} ({unit})")
        ax.set_title(f"{title} MAE {mae:.2f} m{unit}".strip())
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
