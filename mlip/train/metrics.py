"""Errors of a potential on labelled structures: MAE/RMSE of energy, forces and stress.

Units of the reported metrics: energy per atom in meV/atom, total energy in meV, forces in meV/Å,
stress in meV/Å^3. Sums are accumulated so that shards evaluated by several processes combine exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from mlip.data import keys as K
from mlip.data.atomic_data import AtomicData

_FIELDS = (
    "num_structures",
    "energy_count",
    "energy_abs",
    "energy_sq",
    "energy_total_abs",
    "energy_total_sq",
    "forces_count",
    "forces_abs",
    "forces_sq",
    "stress_count",
    "stress_abs",
    "stress_sq",
)


class ErrorSums:
    """Running sums of absolute and squared errors (eV units), mergeable across processes."""

    def __init__(self) -> None:
        self.sums = torch.zeros(len(_FIELDS), dtype=torch.float64)

    def _add(self, name: str, value: torch.Tensor | float) -> None:
        self.sums[_FIELDS.index(name)] += float(value)

    def update(self, pred: dict[str, torch.Tensor], batch: AtomicData) -> None:
        """Add the errors of one batch of predictions (``energy`` [B], ``forces`` [N, 3], ``stress``)."""
        num_atoms = batch[K.NUM_ATOMS].to(torch.float64)
        self._add("num_structures", num_atoms.numel())
        if K.ENERGY in batch:
            diff = pred["energy"].detach().to(torch.float64) - batch[K.ENERGY].to(torch.float64)
            self._add("energy_count", diff.numel())
            self._add("energy_abs", (diff / num_atoms).abs().sum())
            self._add("energy_sq", ((diff / num_atoms) ** 2).sum())
            self._add("energy_total_abs", diff.abs().sum())
            self._add("energy_total_sq", (diff**2).sum())
        for key in ("forces", "stress"):
            if key in pred and key in batch:
                diff = pred[key].detach().to(torch.float64) - batch[key].to(torch.float64)
                self._add(f"{key}_count", diff.numel())
                self._add(f"{key}_abs", diff.abs().sum())
                self._add(f"{key}_sq", (diff**2).sum())

    def reduce(self, all_reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Combine the sums of all processes in place (``all_reduce`` sums a CPU tensor)."""
        self.sums = all_reduce(self.sums)

    def result(self) -> dict[str, float]:
        """MAE/RMSE in meV units (keys ``energy_mae`` meV/atom, ``energy_total_mae`` meV, ``forces_mae``
        meV/Å, ``stress_mae`` meV/Å^3, and the ``_rmse`` twins); absent when there are no labels."""
        s = dict(zip(_FIELDS, self.sums.tolist(), strict=True))
        out: dict[str, float] = {"num_structures": s["num_structures"]}
        groups = (
            ("energy", "energy", "energy_count"),
            ("energy_total", "energy_total", "energy_count"),
            ("forces", "forces", "forces_count"),
            ("stress", "stress", "stress_count"),
        )
        for name, prefix, count in groups:
            if s[count]:
                out[f"{name}_mae"] = 1000.0 * s[f"{prefix}_abs"] / s[count]
                out[f"{name}_rmse"] = 1000.0 * (s[f"{prefix}_sq"] / s[count]) ** 0.5
        return out


def predict(
    model: torch.nn.Module, batches: Iterable[AtomicData], compute_stress: bool = False
) -> Iterable[tuple[AtomicData, dict[str, torch.Tensor]]]:
    """``(batch, prediction)`` pairs with forces (and stress), without keeping graphs."""
    for batch in batches:
        with torch.enable_grad():
            pred = model(batch, compute_forces=True, compute_stress=compute_stress, create_graph=False)
        yield batch, {k: v.detach() for k, v in pred.items()}


class Predictions:
    """Reference and predicted labels collected for parity plots (eV, eV/atom, eV/Å)."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

    def update(self, pred: dict[str, torch.Tensor], batch: AtomicData) -> None:
        """Add one batch: per-atom energies ``[B]`` and force components ``[3N]``."""
        num_atoms = batch[K.NUM_ATOMS].to(torch.float64)
        pairs = []
        if K.ENERGY in batch:
            pairs.append(("energy_per_atom", batch[K.ENERGY] / num_atoms, pred["energy"] / num_atoms))
        if K.FORCES in batch:
            pairs.append(("forces", batch[K.FORCES].reshape(-1), pred["forces"].reshape(-1)))
        for name, ref, out in pairs:
            refs, outs = self.values.setdefault(name, ([], []))
            refs.append(ref.detach().to("cpu", torch.float64))
            outs.append(out.detach().to("cpu", torch.float64))

    def arrays(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``name -> (reference, predicted)`` concatenated tensors."""
        return {k: (torch.cat(r), torch.cat(p)) for k, (r, p) in self.values.items()}
