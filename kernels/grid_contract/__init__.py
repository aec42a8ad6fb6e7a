"""The grid contraction behind :func:`mlip.kernels.gaunt_tp` and the spherical-grid activations.

``z[b, o, c] = Σ_g W[g, o] · φ(A_0ᵀ x_0)[b, g, c] · Π_{i≥1} (A_iᵀ x_i)[b, g, c]``: to grid, pointwise,
from grid. :mod:`.reference` is the torch definition (grid materialised), :mod:`.triton` the fused kernel.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from mlip.kernels.grid_contract.reference import Pointwise, contract

__all__ = ["Pointwise", "grid_contract", "resolve_backend"]

_log = logging.getLogger(__name__)
_BACKENDS = ("auto", "torch", "triton")
_warned_fallback = False


def resolve_backend(backend: str, device: torch.device) -> str:
    """``"torch"`` or ``"triton"``: ``auto`` takes the torch path on every device (logged once).

    Unlike the tensor products (auto = Triton on CUDA), by measurement: on an H100 the batched cuBLAS
    GEMMs of the torch path beat the fused kernel at every L in fp32 (``benchmarks/notes/gaunt.md``).
    ``backend="triton"`` still selects the fused kernel explicitly.
    """
    global _warned_fallback
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    if not _warned_fallback:
        _log.info("grid kernels: backend='auto' uses the torch path (measured faster than the fused kernel)")
        _warned_fallback = True
    return "torch"


def grid_contract(
    operands: Sequence[torch.Tensor],
    to_grid: Sequence[torch.Tensor],
    from_grid: torch.Tensor,
    pointwise: Pointwise,
    backend: str = "auto",
) -> torch.Tensor:
    """The contraction ``[B, O, C]`` of operands ``[B, K_i, C_i]`` (``C_i ∈ {1, C}``).

    ``to_grid[i]: [K_i, G]`` and ``from_grid: [G, O]`` are float64 tables or already in the operands'
    dtype/device (converted here otherwise). float16/bfloat16 operands are computed in float32 (grid and
    accumulation) and the result is cast back to the input dtype.
    """
    x0 = operands[0]
    dtype = x0.dtype
    compute = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    operands = [x.to(compute) for x in operands]
    to_grid = [a.to(dtype=compute, device=x0.device) for a in to_grid]
    from_grid = from_grid.to(dtype=compute, device=x0.device)
    if resolve_backend(backend, x0.device) == "triton":
        from mlip.kernels.grid_contract.triton import grid_contract as fused

        out = fused(operands, to_grid, from_grid, pointwise)
    else:
        out = contract(operands, to_grid, from_grid, pointwise)
    return out.to(dtype)
