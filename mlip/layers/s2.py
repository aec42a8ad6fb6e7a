"""Gated nonlinearities of features seen as functions on the sphere, through :mod:`mlip.kernels`.

Features are packed ``[N, (L+1)^2, C]`` (degrees ``0..L``, natural parity). Two mixings:

- ``"gaunt"``: ``silu(g) · (f_a f_b)`` projected onto degrees ``≤ L`` — the product of two linear
  projections of the input is a Gaunt tensor product (exact on its grid), gated per channel by SiLU of an
  invariant projection ``g`` of the scalars. Exactly equivariant.
- ``"swiglu"``: SwiGLU on the sphere, ``silu(f_a) f_b`` evaluated pointwise on the activation grid
  (``mlip.kernels.s2_activation``). SiLU of a band-limited function is not band-limited: equivariant
  only up to the quadrature error of that grid.
"""

from __future__ import annotations

import math

import torch

from mlip.kernels import gaunt_tp, s2_activation

MIXINGS = ("gaunt", "swiglu")


class PerDegreeLinear(torch.nn.Module):
    """Channel mixing per degree: ``[N, (L+1)^2, C_in] -> [N, (L+1)^2, C_out]``, weights per ``l``."""

    def __init__(self, lmax: int, c_in: int, c_out: int) -> None:
        super().__init__()
        self.lmax = lmax
        self.weight = torch.nn.Parameter(torch.randn(lmax + 1, c_in, c_out) / math.sqrt(c_in))
        degrees = torch.repeat_interleave(torch.arange(lmax + 1), 2 * torch.arange(lmax + 1) + 1)
        self.register_buffer("degrees", degrees, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nkc,kcd->nkd", x, self.weight[self.degrees])


class SphericalGLU(torch.nn.Module):
    """Gated spherical mixing ``[N, (L+1)^2, C] -> [N, (L+1)^2, C]`` (see the module docstring)."""

    def __init__(self, lmax: int, channels: int, mixing: str = "gaunt") -> None:
        super().__init__()
        if mixing not in MIXINGS:
            raise ValueError(f"mixing must be one of {MIXINGS}, got {mixing!r}")
        self.lmax, self.mixing = lmax, mixing
        self.backend = "auto"  # kernel choice, set by mlip.kernels.set_backend
        self.project = PerDegreeLinear(lmax, channels, 2 * channels)
        if mixing == "gaunt":
            self.gate = torch.nn.Linear(channels, channels, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ab = self.project(x)
        if self.mixing == "swiglu":
            return s2_activation(ab, fn="swiglu", lmax_out=self.lmax, backend=self.backend)
        a, b = ab.chunk(2, dim=2)
        gate = torch.nn.functional.silu(self.gate(x[:, 0, :])).unsqueeze(1)
        return gaunt_tp(a.contiguous(), b.contiguous(), self.lmax, backend=self.backend) * gate
