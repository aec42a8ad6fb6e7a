"""Per-species reference energies (E0) and the global scale/shift of the learned energy."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class AtomicEnergies(torch.nn.Module):
    """Fixed per-species energies ``E0`` (eV): species index ``[N]`` -> ``[N]``.

    Stored as a buffer (saved with the model, not trained); usually a least-squares fit of the training
    energies on composition.
    """

    def __init__(self, e0: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("e0", torch.as_tensor(list(e0), dtype=torch.float64))

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.e0[index]


class ScaleShift(torch.nn.Module):
    """``scale · x + shift`` with fixed scalars (eV), e.g. the force RMS and the mean per-atom energy."""

    def __init__(self, scale: float = 1.0, shift: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(float(scale), dtype=torch.float64))
        self.register_buffer("shift", torch.tensor(float(shift), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)
