"""Real Gaunt coefficients: integrals of three orthonormal real spherical harmonics.

``G[m1, m2, m3] = ∫ Y_{l1 m1} Y_{l2 m2} Y_{l3 m3} dΩ`` over the unit sphere, with the harmonics of
:func:`mlip.o3.spherical_harmonics` in ``normalization="integral"`` (orthonormal, ``m = -l..l``). Built
exactly from the complex Gaunt coefficients (Wigner 3j symbols by Racah's formula) through the
real-to-complex change of basis, independently of :func:`mlip.o3.wigner_3j`'s phase choice; the tests
check them against quadrature and against ``sympy.physics.wigner.gaunt``.
"""

from __future__ import annotations

import functools
import math

import torch

from mlip.o3.constants import cached_constant
from mlip.o3.wigner import _cg_coefficient


def _three_j(l1: int, l2: int, l3: int, m1: int, m2: int, m3: int) -> float:
    """Wigner 3j symbol ``(l1 l2 l3; m1 m2 m3)``."""
    if m1 + m2 + m3 != 0:
        return 0.0
    return (-1) ** (l1 - l2 - m3) / math.sqrt(2 * l3 + 1) * _cg_coefficient(l1, m1, l2, m2, l3, -m3)


@functools.cache
def _complex_from_real(l: int) -> torch.Tensor:
    """``T [2l+1 (real m), 2l+1 (complex μ)]`` with ``Y^real_m = Σ_μ T[m, μ] Y^complex_μ``.

    Complex harmonics with the Condon-Shortley phase (sympy's); real ones without it (e3nn's).
    """
    t = torch.zeros(2 * l + 1, 2 * l + 1, dtype=torch.complex128)
    t[l, l] = 1.0
    s = 1 / math.sqrt(2)
    for m in range(1, l + 1):
        # Y^c_m = (-1)^m (Y_m + i Y_-m)/√2 and Y^c_-m = (Y_m - i Y_-m)/√2, inverted:
        t[l + m, l + m] = (-1) ** m * s
        t[l + m, l - m] = s
        t[l - m, l + m] = -1j * (-1) ** m * s
        t[l - m, l - m] = 1j * s
    return t


@functools.cache
def _gaunt_float64(l1: int, l2: int, l3: int) -> torch.Tensor:
    g = torch.zeros(2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1, dtype=torch.complex128)
    if (l1 + l2 + l3) % 2 == 0 and abs(l1 - l2) <= l3 <= l1 + l2:
        prefactor = math.sqrt((2 * l1 + 1) * (2 * l2 + 1) * (2 * l3 + 1) / (4 * math.pi))
        prefactor *= _three_j(l1, l2, l3, 0, 0, 0)
        for m1 in range(-l1, l1 + 1):
            for m2 in range(-l2, l2 + 1):
                m3 = -m1 - m2
                if abs(m3) <= l3:
                    g[l1 + m1, l2 + m2, l3 + m3] = prefactor * _three_j(l1, l2, l3, m1, m2, m3)
    t1, t2, t3 = _complex_from_real(l1), _complex_from_real(l2), _complex_from_real(l3)
    real = torch.einsum("ai,bj,ck,ijk->abc", t1, t2, t3, g)
    if real.imag.abs().max() > 1e-12:  # cannot happen: integrals of real functions
        raise AssertionError(f"gaunt({l1},{l2},{l3}) is not real")
    return real.real.contiguous()


def gaunt(
    l1: int, l2: int, l3: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """Real Gaunt tensor ``[2l1+1, 2l2+1, 2l3+1]``: ``∫ Y_{l1 m1} Y_{l2 m2} Y_{l3 m3} dΩ`` (unit sphere).

    Zero unless ``l1 + l2 + l3`` is even and the triangle inequality holds. Proportional to
    ``wigner_3j(l1, l2, l3)`` on the allowed triples. Cached per ``(l1, l2, l3, dtype, device)``.
    """
    if min(l1, l2, l3) < 0:
        raise ValueError(f"gaunt({l1}, {l2}, {l3}): degrees must be >= 0")
    return cached_constant(("gaunt", l1, l2, l3), lambda: _gaunt_float64(l1, l2, l3), dtype, device)


@functools.cache
def _gaunt_packed_float64(lmax1: int, lmax2: int, lmax3: int) -> torch.Tensor:
    out = torch.zeros((lmax1 + 1) ** 2, (lmax2 + 1) ** 2, (lmax3 + 1) ** 2, dtype=torch.float64)
    for l1 in range(lmax1 + 1):
        for l2 in range(lmax2 + 1):
            for l3 in range(abs(l1 - l2), min(l1 + l2, lmax3) + 1):
                block = _gaunt_float64(l1, l2, l3)
                out[l1 * l1 : (l1 + 1) ** 2, l2 * l2 : (l2 + 1) ** 2, l3 * l3 : (l3 + 1) ** 2] = block
    return out


def gaunt_packed(
    lmax1: int,
    lmax2: int,
    lmax3: int,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """All Gaunt coefficients between packed harmonics: ``[(lmax1+1)^2, (lmax2+1)^2, (lmax3+1)^2]``.

    Index ``l^2 + l + m`` along each axis (the packing of :func:`mlip.o3.spherical_harmonics`).
    """
    key = ("gaunt_packed", lmax1, lmax2, lmax3)
    return cached_constant(key, lambda: _gaunt_packed_float64(lmax1, lmax2, lmax3), dtype, device)
