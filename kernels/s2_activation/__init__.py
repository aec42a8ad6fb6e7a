"""Pointwise nonlinearities of spherical functions on a grid, fused like the Gaunt product.

:func:`s2_activation` applies SiLU (or SwiGLU over two channel halves) to the function on the sphere and
projects back; :func:`symmetric_product` returns the projections of its powers ``f^ν`` (the MACE-style
symmetric product basis of correlation order ``ν``, computed on the grid). Both go through
:mod:`mlip.kernels.grid_contract`: torch GEMMs by default, one fused Triton kernel per projection with
``backend="triton"``.
"""

from __future__ import annotations

import torch

from mlip.kernels.gaunt.reference import degree_of
from mlip.kernels.grid_contract import Pointwise, grid_contract
from mlip.kernels.s2_activation.reference import s2_activation_reference, symmetric_product_reference
from mlip.o3 import SphericalGrid, from_grid_matrix, grid_for, to_grid_matrix

__all__ = [
    "default_activation_grid",
    "s2_activation",
    "s2_activation_reference",
    "symmetric_product",
    "symmetric_product_reference",
]

ACTIVATIONS = ("silu", "swiglu")


def default_activation_grid(L: int, lmax_out: int) -> SphericalGrid:
    """``grid_for(4L + lmax_out)``: exact through the quartic term of SiLU's Taylor series.

    SiLU of a band-limited function is not band-limited, so the activation depends (weakly) on the grid
    and is equivariant only up to the quadrature error of the higher-order terms; pass a finer grid to
    reduce it.
    """
    return grid_for(4 * L + lmax_out)


def s2_activation(
    x: torch.Tensor,
    fn: str = "silu",
    lmax_out: int | None = None,
    grid: SphericalGrid | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Activation on the sphere: ``[B, (lmax_out+1)^2, C']`` from ``x: [B, (L+1)^2, C]``.

    ``fn="silu"``: ``∫ silu(f) Y_lm dΩ`` (``C' = C``). ``fn="swiglu"``: ``∫ silu(f_a) f_b Y_lm dΩ`` with
    ``f_a``, ``f_b`` the functions of the first and second channel halves (``C' = C/2``). The integral is
    the quadrature of ``grid`` (default :func:`default_activation_grid`). ``lmax_out`` defaults to ``L``.
    Differentiable to any order (fused forward, backward and double backward on the Triton backend).
    """
    L = degree_of(x, "x")
    lmax_out = L if lmax_out is None else lmax_out
    grid = default_activation_grid(L, lmax_out) if grid is None else grid
    if fn not in ACTIVATIONS:
        raise ValueError(f"fn must be one of {ACTIVATIONS}, got {fn!r}")
    a = to_grid_matrix(L, grid, x.dtype, x.device)
    w = from_grid_matrix(lmax_out, grid, x.dtype, x.device)
    if fn == "silu":
        return grid_contract([x], [a], w, Pointwise("silu", 0), backend)
    if x.shape[2] % 2:
        raise ValueError(f"swiglu needs an even number of channels, got {x.shape[2]}")
    gate, value = x.chunk(2, dim=2)
    return grid_contract([gate, value], [a, a], w, Pointwise("silu", 0), backend)


def symmetric_product(
    x: torch.Tensor, correlation: int, lmax_out: int | None = None, backend: str = "auto"
) -> torch.Tensor:
    """Projections of the powers of ``f``: ``[B, correlation, (lmax_out+1)^2, C]`` from ``[B, (L+1)^2, C]``.

    Entry ``ν - 1`` is ``∫ f^ν Y_lm dΩ`` (``ν = 1..correlation``), exact on ``grid_for(νL + lmax_out)``,
    so exactly equivariant. ``lmax_out`` defaults to ``L``. The caller weights and mixes the orders (as
    MACE's product basis does per element and channel).
    """
    L = degree_of(x, "x")
    lmax_out = L if lmax_out is None else lmax_out
    if correlation < 1:
        raise ValueError(f"correlation must be >= 1, got {correlation}")
    powers = []
    for nu in range(1, correlation + 1):
        grid = grid_for(nu * L + lmax_out)
        a = to_grid_matrix(L, grid, x.dtype, x.device)
        w = from_grid_matrix(lmax_out, grid, x.dtype, x.device)
        powers.append(grid_contract([x], [a], w, Pointwise("power", nu), backend))
    return torch.stack(powers, dim=1)
