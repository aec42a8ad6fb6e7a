"""Real spherical harmonics in e3nn's convention.

e3nn's real harmonics of degree ``l`` are the textbook real harmonics (no Condon-Shortley phase,
``m = -l..l``, ``sin(|m|φ)`` for ``m < 0``, ``cos(mφ)`` for ``m > 0``) with the polar axis along ``y`` and
the azimuth measured in the ``z``-``x`` plane: textbook axes ``(X, Y, Z) = (z, x, y)``. For ``l = 1`` this
gives components proportional to ``(x, y, z)``.

They are evaluated as homogeneous polynomials (no angles), so they are smooth everywhere including the
poles, and with ``normalize=True`` the zero vector maps to ``Y_0`` only (gradients stay finite).
"""

from __future__ import annotations

import math

import torch

_NORMALIZATIONS = ("integral", "component", "norm")


def _degree_factor(l: int, normalization: str) -> float:
    """Scale from orthonormal ("integral") harmonics to the requested normalization."""
    if normalization == "integral":
        return 1.0
    if normalization == "component":  # sum_m Y_lm^2 = 2l + 1 on the unit sphere
        return math.sqrt(4 * math.pi)
    return math.sqrt(4 * math.pi / (2 * l + 1))  # "norm": sum_m Y_lm^2 = 1


def _orthonormal_constant(l: int, m: int) -> float:
    """``sqrt((2l+1)/(4π) (l-m)!/(l+m)!)``, times ``sqrt(2)`` for ``m > 0`` (real harmonics)."""
    c = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - m) / math.factorial(l + m))
    return c * math.sqrt(2.0) if m > 0 else c


def spherical_harmonics(
    lmax: int,
    vectors: torch.Tensor,
    normalize: bool = True,
    normalization: str = "component",
) -> torch.Tensor:
    """All real spherical harmonics of degrees ``0..lmax``, packed.

    Args:
        lmax: highest degree.
        vectors: ``[..., 3]`` Cartesian vectors (any length unit).
        normalize: evaluate at ``vectors / |vectors|`` (the zero vector gives ``Y_0`` and zeros); with
            ``False`` the harmonics are homogeneous polynomials of degree ``l`` in the raw vector.
        normalization: ``"integral"`` (orthonormal on the sphere), ``"component"`` (``|Y_l|^2 = 2l+1``,
            e3nn's default) or ``"norm"`` (``|Y_l| = 1``).

    Returns:
        ``[..., (lmax+1)^2]``, degree ``l`` in columns ``l^2 .. l^2+2l`` ordered ``m = -l..l``.
    """
    if normalization not in _NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")
    if vectors.shape[-1] != 3:
        raise ValueError(f"vectors must have shape [..., 3], got {tuple(vectors.shape)}")
    if lmax < 0:
        raise ValueError(f"lmax must be >= 0, got {lmax}")
    if normalize:
        vectors = torch.nn.functional.normalize(vectors, dim=-1)
    # textbook axes: polar Z = y, X = z, Y = x
    X, Y, Z = vectors[..., 2], vectors[..., 0], vectors[..., 1]
    r2 = X * X + Y * Y + Z * Z
    one = torch.ones_like(Z)

    # cos_m, sin_m: Re and Im of (X + iY)^m (homogeneous, degree m)
    cos_m, sin_m = [one], [torch.zeros_like(Z)]
    for _ in range(lmax):
        c, s = cos_m[-1], sin_m[-1]
        cos_m.append(X * c - Y * s)
        sin_m.append(X * s + Y * c)

    # q[l][m]: d^m P_l / dz^m made homogeneous of degree l - m
    q: list[list[torch.Tensor]] = [[one]]
    for l in range(1, lmax + 1):
        row = []
        for m in range(l + 1):
            if m == l:
                row.append(q[l - 1][l - 1] * (2 * l - 1))
            elif m == l - 1:
                row.append((2 * l - 1) * Z * q[l - 1][m])
            else:
                row.append(((2 * l - 1) * Z * q[l - 1][m] - (l + m - 1) * r2 * q[l - 2][m]) / (l - m))
        q.append(row)

    columns = []
    for l in range(lmax + 1):
        scale = _degree_factor(l, normalization)
        for m in range(-l, l + 1):
            c = _orthonormal_constant(l, abs(m)) * scale
            angular = sin_m[-m] if m < 0 else cos_m[m]
            columns.append(c * q[l][abs(m)] * angular)
    return torch.stack(columns, dim=-1)
