"""Real spherical harmonics in e3nn's convention.

e3nn's real harmonics of degree ``l`` are the textbook real harmonics (no Condon-Shortley phase,
``m = -l..l``, ``sin(|m|φ)`` for ``m < 0``, ``cos(mφ)`` for ``m > 0``) with the polar axis along ``y`` and
the azimuth measured in the ``z``-``x`` plane: textbook axes ``(X, Y, Z) = (z, x, y)``. For ``l = 1`` this
gives components proportional to ``(x, y, z)``.

They are evaluated as homogeneous polynomials (no angles), so they are smooth everywhere including the
poles, and with ``normalize=True`` the zero vector maps to ``Y_0`` only (gradients stay finite). The
coefficients of every monomial in every harmonic are worked out once (:func:`_coefficients`); an
evaluation is then a handful of tensor ops, the monomials of the vectors times that table (one matmul),
so forces through it cost a few kernel launches instead of the hundreds of a recurrence run on tensors
(op counts in ``benchmarks/notes/model.md``).
"""

from __future__ import annotations

import functools
import math

import torch

from mlip.o3.constants import cached_constant

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


_Monomial = tuple[int, int, int]  # exponents of (x, y, z)


class _Polynomial(dict[_Monomial, float]):
    """A polynomial in ``(x, y, z)``: monomial exponents -> coefficient (float64)."""

    def __add__(self, other: _Polynomial) -> _Polynomial:
        out = _Polynomial(self)
        for k, v in other.items():
            out[k] = out.get(k, 0.0) + v
        return out

    def __sub__(self, other: _Polynomial) -> _Polynomial:
        return self + other * -1.0

    def __mul__(self, other: _Polynomial | float) -> _Polynomial:
        if not isinstance(other, _Polynomial):
            return _Polynomial({k: v * other for k, v in self.items()})
        out = _Polynomial()
        for k1, v1 in self.items():
            for k2, v2 in other.items():
                k = (k1[0] + k2[0], k1[1] + k2[1], k1[2] + k2[2])
                out[k] = out.get(k, 0.0) + v1 * v2
        return out

    __rmul__ = __mul__


@functools.cache
def _coefficients(lmax: int, normalization: str) -> tuple[tuple[_Monomial, ...], torch.Tensor]:
    """The harmonics as polynomials: monomials ``[M]`` (by degree) and coefficients ``[M, (lmax+1)^2]``.

    Built once per ``(lmax, normalization)`` by the textbook recurrences run on polynomials: the
    associated Legendre part ``q[l][m]`` (``d^m P_l / dz^m`` made homogeneous of degree ``l - m``) and
    ``(X + iY)^m`` for the azimuthal part. Degree ``l`` uses monomials of degree ``l`` only.
    """
    x, y, z = (_Polynomial({e: 1.0}) for e in ((1, 0, 0), (0, 1, 0), (0, 0, 1)))
    X, Y, Z = z, x, y  # textbook axes: polar Z = y, X = z, Y = x
    r2 = X * X + Y * Y + Z * Z
    one = _Polynomial({(0, 0, 0): 1.0})
    cos_m, sin_m = [one], [_Polynomial()]  # Re and Im of (X + iY)^m
    for _ in range(lmax):
        c, s = cos_m[-1], sin_m[-1]
        cos_m.append(X * c - Y * s)
        sin_m.append(X * s + Y * c)
    q: list[list[_Polynomial]] = [[one]]
    for l in range(1, lmax + 1):
        row = []
        for m in range(l + 1):
            if m == l:
                row.append(q[l - 1][l - 1] * (2 * l - 1))
            elif m == l - 1:
                row.append(Z * q[l - 1][m] * (2 * l - 1))
            else:
                row.append((Z * q[l - 1][m] * (2 * l - 1) - r2 * q[l - 2][m] * (l + m - 1)) * (1 / (l - m)))
        q.append(row)
    columns = []
    for l in range(lmax + 1):
        scale = _degree_factor(l, normalization)
        for m in range(-l, l + 1):
            angular = sin_m[-m] if m < 0 else cos_m[m]
            columns.append(q[l][abs(m)] * angular * (_orthonormal_constant(l, abs(m)) * scale))
    monomials = tuple(
        sorted({k for c in columns for k, v in c.items() if v != 0.0}, key=lambda k: (sum(k), k))
    )
    table = torch.tensor([[c.get(k, 0.0) for c in columns] for k in monomials], dtype=torch.float64)
    return monomials, table


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
    monomials, _ = _coefficients(lmax, normalization)
    table = cached_constant(
        ("spherical_harmonics", lmax, normalization),
        lambda: _coefficients(lmax, normalization)[1],
        vectors.dtype,
        vectors.device,
    )
    powers = [torch.ones_like(vectors), vectors]  # [..., 3] each: x^k, y^k, z^k
    for _ in range(lmax - 1):
        powers.append(powers[-1] * vectors)
    flat = torch.stack(powers[: lmax + 1], dim=-2).flatten(-2)  # column 3k + axis holds axis^k
    index = cached_constant(  # [3, M]: the column of flat for each axis's power in each monomial
        ("spherical_harmonics_index", lmax),
        lambda: torch.tensor([[3 * e + axis for axis, e in enumerate(m)] for m in monomials]).T.double(),
        torch.int64,
        vectors.device,
    )
    values = flat[..., index[0]] * flat[..., index[1]] * flat[..., index[2]]  # [..., M]
    return values @ table
