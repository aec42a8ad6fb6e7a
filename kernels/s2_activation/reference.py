"""Definitions of the spherical-grid activations with :func:`mlip.o3.to_grid` / :func:`mlip.o3.from_grid`.

Activation: ``z = from_grid(σ(to_grid(x)))`` (SiLU), or ``from_grid(silu(f_a) · f_b)`` for SwiGLU-S² with
``x = [x_a | x_b]`` split along channels. Symmetric product of correlation order ``ν``: the projections of
the powers ``f^1 .. f^ν`` of the spherical function (MACE-style product basis, computed on the grid).
"""

from __future__ import annotations

import torch

from mlip.o3 import SphericalGrid, from_grid, grid_for, to_grid


def s2_activation_reference(
    x: torch.Tensor, fn: str, L: int, lmax_out: int, grid: SphericalGrid
) -> torch.Tensor:
    """``[B, (lmax_out+1)^2, C]`` (``C`` halves for ``"swiglu"``) from ``x: [B, (L+1)^2, C]``."""
    if fn == "silu":
        values = torch.nn.functional.silu(to_grid(x, L, grid))
    else:
        a, b = x.chunk(2, dim=2)
        values = torch.nn.functional.silu(to_grid(a, L, grid)) * to_grid(b, L, grid)
    return from_grid(values, lmax_out, grid)


def symmetric_product_reference(x: torch.Tensor, correlation: int, L: int, lmax_out: int) -> torch.Tensor:
    """``[B, correlation, (lmax_out+1)^2, C]``: projections of ``f^ν``, ``ν = 1..correlation`` (exact)."""
    powers = []
    for nu in range(1, correlation + 1):
        grid = grid_for(nu * L + lmax_out)
        powers.append(from_grid(to_grid(x, L, grid) ** nu, lmax_out, grid))
    return torch.stack(powers, dim=1)
