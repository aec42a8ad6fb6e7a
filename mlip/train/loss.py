"""Loss on per-atom energy, forces and stress: weighted means of Huber or squared errors.

Terms are returned as sums over the local batch so that, divided by counts of the *global* batch, the
gradient summed over processes equals the single-process gradient (see :func:`total_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mlip.data import keys as K
from mlip.data.atomic_data import AtomicData
from mlip.train.config import LossConfig


@dataclass(frozen=True)
class Weights:
    """Loss weights in force at one step."""

    energy: float
    forces: float
    stress: float


def weights_at(cfg: LossConfig, step: int) -> Weights:
    """The weights of the last stage whose ``start_step <= step`` (the top-level weights before any)."""
    current = Weights(cfg.energy_weight, cfg.forces_weight, cfg.stress_weight)
    for stage in cfg.stages:
        if stage.start_step <= step:
            current = Weights(stage.energy_weight, stage.forces_weight, stage.stress_weight)
    return current


def uses_stress(cfg: LossConfig) -> bool:
    """Whether any stage puts weight on stress."""
    return cfg.stress_weight > 0 or any(s.stress_weight > 0 for s in cfg.stages)


def _error(pred: torch.Tensor, target: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    if cfg.kind == "huber":
        return torch.nn.functional.huber_loss(pred, target, reduction="none", delta=cfg.huber_delta)
    return (pred - target) ** 2


def loss_sums(pred: dict[str, torch.Tensor], batch: AtomicData, cfg: LossConfig) -> dict[str, torch.Tensor]:
    """Summed per-component errors of one (local) batch.

    ``energy``: Σ_s w_s ρ((E_s - Ê_s)/N_s) over structures; ``forces``: Σ w ρ(F - F̂) over atoms and
    components; ``stress``: Σ w ρ(σ - σ̂) over structures and 9 components (only when predicted).
    """
    dtype = pred["energy"].dtype
    num_atoms = batch[K.NUM_ATOMS].to(dtype)
    ones = torch.ones_like(num_atoms)
    out = {}
    if K.ENERGY in batch:
        weight = batch.get(K.ENERGY_WEIGHT, ones).to(dtype)
        err = _error(pred["energy"] / num_atoms, batch[K.ENERGY].to(dtype) / num_atoms, cfg)
        out["energy"] = (weight * err).sum()
    if K.FORCES in batch and "forces" in pred:
        weight = batch.get(K.FORCES_WEIGHT, ones).to(dtype)[batch[K.BATCH]]
        out["forces"] = (weight[:, None] * _error(pred["forces"], batch[K.FORCES].to(dtype), cfg)).sum()
    if K.STRESS in batch and "stress" in pred:
        weight = batch.get(K.STRESS_WEIGHT, ones).to(dtype)
        out["stress"] = (weight[:, None, None] * _error(pred["stress"], batch[K.STRESS].to(dtype), cfg)).sum()
    return out


def loss_terms(
    sums: dict[str, torch.Tensor], num_structures: int, num_atoms: int, weights: Weights
) -> dict[str, torch.Tensor]:
    """Weighted terms ``{"energy": w_E·sum_E/B, "forces": w_F·sum_F/(3N), "stress": w_S·sum_S/(9B)}`` of
    the terms present in ``sums``, with ``B``, ``N`` counts of the global batch."""
    divisors = {"energy": (weights.energy, num_structures), "forces": (weights.forces, 3 * num_atoms)}
    divisors["stress"] = (weights.stress, 9 * num_structures)
    return {name: w * sums[name] / n for name, (w, n) in divisors.items() if name in sums}


def total_loss(
    sums: dict[str, torch.Tensor], num_structures: int, num_atoms: int, weights: Weights
) -> torch.Tensor:
    """Sum of :func:`loss_terms`."""
    return torch.stack(list(loss_terms(sums, num_structures, num_atoms, weights).values())).sum()
