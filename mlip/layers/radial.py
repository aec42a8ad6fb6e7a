"""Radial functions of the edge length: Bessel basis, C²-smooth polynomial envelope, cubic B-splines,
and the radial MLP that turns a basis into per-edge tensor-product weights.

Every basis here vanishes with two continuous derivatives at ``r_max`` (after the envelope for Bessel,
by construction for splines), so edges at or beyond the cutoff contribute exactly zero.
"""

from __future__ import annotations

import math

import torch

from mlip.kernels import matmul
from mlip.layers.activations import normalized_activation


class PolynomialEnvelope(torch.nn.Module):
    """``u(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2)`` for ``x = r / r_max < 1``,
    0 beyond. ``u``, ``u'`` and ``u''`` vanish at ``x = 1`` (NequIP/MACE's cutoff, ``p = 5`` default).

    Forward: ``r`` ``[E]`` (Å) -> ``[E]``.
    """

    def __init__(self, r_max: float, p: int = 5) -> None:
        super().__init__()
        self.r_max, self.p = float(r_max), int(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        p, x = self.p, r / self.r_max
        # 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2), in Horner form (fewer ops)
        inner = (x * (-p * (p + 1) / 2) + p * (p + 2)) * x - (p + 1) * (p + 2) / 2
        return (x**p * inner + 1.0) * (x < 1.0)


class BesselBasis(torch.nn.Module):
    """``sqrt(2 / r_max) sin(n π r / r_max) / r`` for ``n = 1..num_basis`` (fixed frequencies, as in MACE).

    Forward: ``r`` ``[E]`` (Å, > 0) -> ``[E, num_basis]``.
    """

    def __init__(self, r_max: float, num_basis: int = 8) -> None:
        super().__init__()
        self.r_max, self.num_basis = float(r_max), int(num_basis)
        self.register_buffer(
            "frequencies",
            torch.arange(1, num_basis + 1, dtype=torch.float64) * math.pi / r_max,  # float64 models need it
            persistent=False,
        )

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.unsqueeze(-1)
        return math.sqrt(2.0 / self.r_max) * torch.sin(self.frequencies.to(r.dtype) * r) / r


class BesselEnvelope(torch.nn.Module):
    """Bessel basis times the polynomial envelope: ``[E] -> [E, num_basis]``, C² at the cutoff."""

    def __init__(self, r_max: float, num_basis: int = 8, p: int = 5) -> None:
        super().__init__()
        self.bessel = BesselBasis(r_max, num_basis)
        self.envelope = PolynomialEnvelope(r_max, p)
        self.num_basis = num_basis

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.bessel(r) * self.envelope(r).unsqueeze(-1)


class CubicBSplineBasis(torch.nn.Module):
    """Uniform cubic B-splines on ``[0, r_max]`` whose supports end at or before ``r_max`` (Facet-style).

    ``num_basis`` functions with knot spacing ``h = r_max / (num_basis + 1)``: function ``k`` is the
    cardinal cubic B-spline centred at ``(k - 1) h`` (support ``(k - 3) h .. (k + 1) h``), so the last one
    ends at ``r_max`` and every function is C² and vanishes with two derivatives there. A learnable
    radial function is then a matmul ``basis @ coefficients``.

    Forward: ``r`` ``[E]`` (Å) -> ``[E, num_basis]``.
    """

    def __init__(self, r_max: float, num_basis: int = 16) -> None:
        super().__init__()
        self.r_max, self.num_basis = float(r_max), int(num_basis)
        self.h = self.r_max / (num_basis + 1)
        self.register_buffer("centres", (torch.arange(num_basis) - 1.0) * self.h, persistent=False)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        t = ((r.unsqueeze(-1) - self.centres.to(r.dtype)) / self.h).abs()
        inner = 2.0 / 3.0 - t**2 + 0.5 * t**3
        outer = (2.0 - t).clamp(min=0.0) ** 3 / 6.0
        return torch.where(t < 1.0, inner, outer)


class RadialMLP(torch.nn.Module):
    """e3nn ``FullyConnectedNet`` equivalent: bias-free layers ``x @ W / sqrt(fan_in)`` with a
    second-moment-normalized activation between them (none after the last).

    Args: ``dims`` ``[in, hidden..., out]``; ``activation`` name (see :mod:`mlip.layers.activations`).
    Forward: ``[E, in]`` -> ``[E, out]``.
    """

    def __init__(self, dims: list[int], activation: str = "silu") -> None:
        super().__init__()
        self.dims = list(dims)
        self.weights = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.randn(a, b)) for a, b in zip(dims[:-1], dims[1:], strict=True)]
        )
        self.act = normalized_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.weights) - 1
        for i, w in enumerate(self.weights):
            # the activation's normalization constant is folded into the next layer's weight scale
            scale = (self.act.scale if i > 0 else 1.0) / math.sqrt(w.shape[0])
            x = matmul(x, w * scale)
            if i < last:
                x = self.act.fn(x)
        return x


class SplineRadial(torch.nn.Module):
    """Learned radial functions as cubic B-spline expansions (Facet): ``basis(r) @ coefficients``.

    One matmul per edge instead of an MLP; C² and zero with two derivatives at ``r_max``.
    Forward: ``r`` ``[E]`` (Å) -> ``[E, out_dim]``.
    """

    def __init__(self, r_max: float, num_basis: int, out_dim: int) -> None:
        super().__init__()
        self.basis = CubicBSplineBasis(r_max, num_basis)
        self.coefficients = torch.nn.Parameter(torch.randn(num_basis, out_dim))

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.basis(r) @ self.coefficients
