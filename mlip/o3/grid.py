"""Spherical grids and the transforms between packed harmonic coefficients and grid values.

A :class:`SphericalGrid` is Gauss-Legendre in ``cos θ`` times uniform in ``φ``, with the angles taken in
e3nn's frame (the one of :func:`mlip.o3.spherical_harmonics`): polar axis ``y``, azimuth in the
``z``-``x`` plane, i.e. the point ``(x, y, z) = (sin θ sin φ, cos θ, sin θ cos φ)``. Points are ordered
``θ``-major: index ``i_θ * n_phi + i_φ``.

Exactness: with ``n_theta`` Legendre nodes and ``n_phi`` azimuths the quadrature integrates every
band-limited function of degree ``≤ min(2 n_theta - 1, n_phi - 1)`` exactly (:attr:`SphericalGrid.degree`).
:func:`grid_for` returns the smallest such grid for a degree ``D``:

- round trip ``from_grid(to_grid(x))`` of features of degree ``≤ L``: ``D = 2L``;
- projection of a product ``f g`` (degrees ``L1``, ``L2``) onto degrees ``≤ Lout``: ``D = L1 + L2 + Lout``;
- projection of a power ``f^ν`` (degree ``L``) onto ``≤ Lout``: ``D = ν L + Lout``.

Features are packed ``[batch, (L+1)^2, channels]`` (channels contiguous); grid values are
``[batch, grid.size, channels]``. Harmonics are orthonormal ("integral"): ``f(r) = Σ_lm x_lm Y_lm(r)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from mlip.o3.constants import cached_constant
from mlip.o3.spherical_harmonics import spherical_harmonics


@dataclass(frozen=True)
class SphericalGrid:
    """Gauss-Legendre (``n_theta`` nodes in ``cos θ``) × uniform (``n_phi`` azimuths) grid on the sphere."""

    n_theta: int
    n_phi: int

    def __post_init__(self) -> None:
        if self.n_theta < 1 or self.n_phi < 1:
            raise ValueError(f"grid sizes must be >= 1, got {self.n_theta} x {self.n_phi}")

    @property
    def size(self) -> int:
        """Number of points ``n_theta * n_phi``."""
        return self.n_theta * self.n_phi

    @property
    def degree(self) -> int:
        """Highest degree ``D`` such that every band-limited function of degree ``≤ D`` integrates exactly."""
        return min(2 * self.n_theta - 1, self.n_phi - 1)

    def _points_float64(self) -> torch.Tensor:
        cos_theta = torch.from_numpy(np.polynomial.legendre.leggauss(self.n_theta)[0])
        phi = 2 * math.pi * torch.arange(self.n_phi, dtype=torch.float64) / self.n_phi
        cos_theta, phi = torch.meshgrid(cos_theta, phi, indexing="ij")
        sin_theta = (1 - cos_theta**2).sqrt()
        points = torch.stack([sin_theta * phi.sin(), cos_theta, sin_theta * phi.cos()], dim=-1)
        return points.reshape(-1, 3)

    def _weights_float64(self) -> torch.Tensor:
        w_theta = torch.from_numpy(np.polynomial.legendre.leggauss(self.n_theta)[1])
        return (w_theta[:, None] * (2 * math.pi / self.n_phi)).expand(-1, self.n_phi).reshape(-1)

    def points(
        self, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Unit vectors ``[size, 3]`` (Cartesian, e3nn's axes)."""
        return cached_constant(("grid_points", self), self._points_float64, dtype, device)

    def weights(
        self, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Quadrature weights ``[size]`` (steradian), summing to ``4π``."""
        return cached_constant(("grid_weights", self), self._weights_float64, dtype, device)


def grid_for(degree: int) -> SphericalGrid:
    """The smallest :class:`SphericalGrid` integrating band-limited functions of degree ``≤ degree`` exactly.

    ``n_theta = ⌊degree/2⌋ + 1`` Legendre nodes (exact to polynomial degree ``2 n_theta - 1``) and
    ``n_phi = degree + 1`` azimuths (exact for ``e^{ikφ}``, ``|k| ≤ degree``). See the module docstring for
    the degree an operation needs.
    """
    if degree < 0:
        raise ValueError(f"degree must be >= 0, got {degree}")
    return SphericalGrid(degree // 2 + 1, degree + 1)


def to_grid_matrix(
    lmax: int, grid: SphericalGrid, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """``[(lmax+1)^2, grid.size]``: orthonormal harmonics at the grid points, ``f = Yᵀ x``."""

    def build() -> torch.Tensor:
        points = grid.points(torch.float64)
        return spherical_harmonics(lmax, points, normalization="integral").T

    return cached_constant(("to_grid", lmax, grid), build, dtype, device)


def from_grid_matrix(
    lmax: int, grid: SphericalGrid, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """``[grid.size, (lmax+1)^2]``: weighted harmonics ``w_g Y_lm(r_g)``, ``x = Wᵀ f`` (projection)."""

    def build() -> torch.Tensor:
        return grid.weights(torch.float64)[:, None] * to_grid_matrix(lmax, grid, torch.float64).T

    return cached_constant(("from_grid", lmax, grid), build, dtype, device)


def _check_features(x: torch.Tensor, rows: int, what: str) -> None:
    if x.dim() != 3 or x.shape[1] != rows:
        raise ValueError(f"{what} must have shape [batch, {rows}, channels], got {tuple(x.shape)}")


def to_grid(x: torch.Tensor, lmax: int, grid: SphericalGrid) -> torch.Tensor:
    """Values ``[batch, grid.size, C]`` of the functions with coefficients ``x: [batch, (lmax+1)^2, C]``."""
    _check_features(x, (lmax + 1) ** 2, "x")
    return torch.matmul(to_grid_matrix(lmax, grid, x.dtype, x.device).T, x)


def from_grid(f: torch.Tensor, lmax: int, grid: SphericalGrid) -> torch.Tensor:
    """Coefficients ``[batch, (lmax+1)^2, C]`` (degrees ``≤ lmax``) of grid values ``f: [batch, size, C]``.

    ``x_lm = Σ_g w_g Y_lm(r_g) f_g``: the exact projection ``∫ f Y_lm dΩ`` when ``f`` is band-limited of
    degree ``≤ grid.degree - lmax``.
    """
    _check_features(f, grid.size, "f")
    return torch.matmul(from_grid_matrix(lmax, grid, f.dtype, f.device).T, f)
