"""Torch implementation of the grid contraction shared by the Gaunt product and the grid activations.

The contraction of operands ``x_i: [B, K_i, C_i]`` (``C_i`` is ``C`` or 1, broadcast over channels) is

``z[b, o, c] = Σ_g W[g, o] · φ(F_0[b, g, c]) · Π_{i≥1} F_i[b, g, c]``,  ``F_i = A_iᵀ x_i``  (to grid),

with to-grid matrices ``A_i: [K_i, G]``, a from-grid matrix ``W: [G, O]`` (quadrature weights folded in)
and a pointwise function ``φ`` (:class:`Pointwise`). This module materialises the grid values
``[B, G, C]`` and is differentiable to any order by autograd: the definition of the fused Triton kernel,
and the fast torch path (batched GEMMs) used on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

KINDS = ("power", "silu")


@dataclass(frozen=True)
class Pointwise:
    """``φ(F) = scale · F^order`` (``kind="power"``) or ``scale`` times SiLU's ``order``-th derivative."""

    kind: str = "power"
    order: int = 1
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS or self.order < 0:
            raise ValueError(f"unsupported pointwise function {self}")
        if self.kind == "silu" and self.order > 3:
            raise NotImplementedError("silu derivatives are implemented up to order 3")

    @property
    def is_linear(self) -> bool:
        """``φ(F) = scale · F``: the first operand then enters linearly, like the others."""
        return self.kind == "power" and self.order == 1

    @property
    def is_constant(self) -> bool:
        return self.kind == "power" and self.order == 0

    def derivative(self) -> Pointwise:
        """``φ'`` (for the power ``F^0`` the zero function is not representable: callers special-case it)."""
        if self.kind == "power":
            return Pointwise("power", self.order - 1, self.scale * self.order)
        return Pointwise("silu", self.order + 1, self.scale)

    def __call__(self, f: torch.Tensor) -> torch.Tensor:
        if self.kind == "power":
            out = torch.ones_like(f) if self.order == 0 else f**self.order
        elif self.order == 0:
            out = torch.nn.functional.silu(f)
        else:
            s = torch.sigmoid(f)
            ds = s * (1 - s)
            if self.order == 1:
                out = s * (1 + f * (1 - s))
            elif self.order == 2:
                out = ds * (2 + f * (1 - 2 * s))
            else:
                out = ds * ((1 - 2 * s) * (3 + f * (1 - 2 * s)) - 2 * f * ds)
        return out if self.scale == 1.0 else self.scale * out


def contract(
    operands: Sequence[torch.Tensor],
    to_grid: Sequence[torch.Tensor],
    from_grid: torch.Tensor,
    pointwise: Pointwise,
) -> torch.Tensor:
    """The grid contraction ``[B, O, C]`` (see the module docstring), grid values materialised."""
    h = None
    for i, (x, a) in enumerate(zip(operands, to_grid, strict=True)):
        f = torch.matmul(a.T, x)  # [B, G, C_i]
        h = pointwise(f) if i == 0 else h * f
    return torch.matmul(from_grid.T, h)
