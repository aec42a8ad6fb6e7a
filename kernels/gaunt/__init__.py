"""Gaunt tensor product of packed spherical features: ``z_lm = ∫ f g Y_lm dΩ``.

Methods: ``"grid"`` (to grid, pointwise product, projection, through :mod:`mlip.kernels.grid_contract`:
batched GEMMs in torch, or one fused Triton kernel with ``backend="triton"``) and ``"fourier"`` (2D FFT
convolution of torus Fourier coefficients, torch only: the comparison point). The definition through the
Gaunt coefficients is :func:`.reference.gaunt_tp_reference`.
"""

from __future__ import annotations

import torch

from mlip.kernels.gaunt.fourier import gaunt_tp_fourier
from mlip.kernels.gaunt.reference import degree_of, gaunt_tp_reference
from mlip.kernels.grid_contract import Pointwise, grid_contract, resolve_backend
from mlip.o3 import from_grid_matrix, grid_for, to_grid_matrix

__all__ = ["gaunt_tp", "gaunt_tp_fourier", "gaunt_tp_reference"]


def gaunt_tp(
    x: torch.Tensor,
    y: torch.Tensor,
    lmax_out: int,
    method: str = "grid",
    backend: str = "auto",
) -> torch.Tensor:
    """Gaunt product ``[B, (lmax_out+1)^2, C]`` of ``x: [B, (L1+1)^2, C]``, ``y: [B, (L2+1)^2, C or 1]``.

    ``f = Σ x_lm Y_lm`` and ``g = Σ y_lm Y_lm`` (orthonormal harmonics, e3nn's real basis; ``y`` with one
    channel is shared by all channels); the output holds ``∫ f g Y_lm dΩ`` for ``l ≤ lmax_out``, i.e.
    ``Σ G[l1m1, l2m2, lm] x y`` with the Gaunt coefficients of :func:`mlip.o3.gaunt`. Exact (degrees above
    ``L1 + L2`` are zero). Per-degree weights are the caller's. Differentiable to any order.

    Args:
        method: ``"grid"`` (exact Gauss-Legendre grid, ``grid_for(L1 + L2 + lmax_out)``) or ``"fourier"``.
        backend: ``"auto"`` (the torch path: measured fastest, see
            :func:`mlip.kernels.grid_contract.resolve_backend`), ``"torch"`` or ``"triton"`` (grid only).
            float16/bfloat16 inputs are computed in float32 and returned in their dtype.
    """
    L1, L2 = degree_of(x, "x"), degree_of(y, "y")
    if y.shape[0] != x.shape[0] or y.shape[2] not in (1, x.shape[2]):
        raise ValueError(f"y {tuple(y.shape)} does not match x {tuple(x.shape)} (batch, channels or 1)")
    if lmax_out < 0:
        raise ValueError(f"lmax_out must be >= 0, got {lmax_out}")
    lmax = min(lmax_out, L1 + L2)  # higher output degrees vanish
    if method == "grid":
        grid = grid_for(L1 + L2 + lmax)
        to_grid = [to_grid_matrix(L, grid, x.dtype, x.device) for L in (L1, L2)]
        out = grid_contract(
            [x, y], to_grid, from_grid_matrix(lmax, grid, x.dtype, x.device), Pointwise(), backend
        )
    elif method == "fourier":
        if resolve_backend(backend, x.device) != "torch" and backend != "auto":
            raise ValueError("method='fourier' has a torch implementation only")
        compute = torch.float64 if x.dtype == torch.float64 else torch.float32
        out = gaunt_tp_fourier(x.to(compute), y.to(compute), L1, L2, lmax).to(x.dtype)
    else:
        raise ValueError(f"method must be 'grid' or 'fourier', got {method!r}")
    if lmax < lmax_out:
        out = torch.nn.functional.pad(out, (0, 0, 0, (lmax_out + 1) ** 2 - (lmax + 1) ** 2))
    return out
