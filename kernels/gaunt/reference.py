"""Definition of the Gaunt tensor product through the Gaunt coefficients (float64-exact, autograd).

``z[b, l3m3, c] = Σ G[l1m1, l2m2, l3m3] x[b, l1m1, c] y[b, l2m2, c]`` with
``G = ∫ Y_l1m1 Y_l2m2 Y_l3m3 dΩ`` (:func:`mlip.o3.gaunt_packed`): the coefficients of degrees
``≤ lmax_out`` of the product of the spherical functions of ``x`` and ``y``.
"""

from __future__ import annotations

import torch

from mlip.o3 import gaunt_packed


def degree_of(features: torch.Tensor, name: str) -> int:
    """``L`` for packed features ``[B, (L+1)^2, C]`` (raises for other shapes)."""
    if features.dim() != 3:
        raise ValueError(f"{name} must have shape [batch, (L+1)^2, channels], got {tuple(features.shape)}")
    L = round(features.shape[1] ** 0.5) - 1
    if L < 0 or (L + 1) ** 2 != features.shape[1]:
        raise ValueError(f"{name}: {features.shape[1]} coefficients is not (L+1)^2 for any degree L")
    return L


def gaunt_tp_reference(x: torch.Tensor, y: torch.Tensor, lmax_out: int) -> torch.Tensor:
    """``[B, (lmax_out+1)^2, C]`` from ``x: [B, (L1+1)^2, C]``, ``y: [B, (L2+1)^2, C or 1]``."""
    L1, L2 = degree_of(x, "x"), degree_of(y, "y")
    G = gaunt_packed(L1, L2, lmax_out, dtype=x.dtype, device=x.device)
    return torch.einsum("bic,bjc,ijk->bkc", x, y.expand(-1, -1, x.shape[2]), G)
