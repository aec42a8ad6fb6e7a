"""Wigner 3j symbols and Wigner D matrices in the real basis of :mod:`mlip.o3.spherical_harmonics`.

Conventions follow e3nn (values and signs): rotations are parametrised as
``R(α, β, γ) = R_y(α) R_x(β) R_y(γ)``; ``D^l(R)`` satisfies ``Y^l(R x) = D^l(R) Y^l(x)``; ``wigner_3j``
is the invariant tensor ``C[m1, m2, m3]`` of unit Frobenius norm obtained from the complex
Clebsch-Gordan coefficients by the real-basis change below.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import torch

from mlip.o3.constants import cached_constant


@functools.cache
def _real_to_complex(l: int) -> torch.Tensor:
    """``[2l+1, 2l+1]`` complex128 change of basis between real (columns) and complex harmonics.

    Includes the global phase ``(-i)^l`` that makes the real Clebsch-Gordan coefficients real.
    """
    q = torch.zeros(2 * l + 1, 2 * l + 1, dtype=torch.complex128)
    s = 1 / math.sqrt(2)
    for m in range(-l, 0):
        q[l + m, l - m] = s
        q[l + m, l + m] = -1j * s
    q[l, l] = 1
    for m in range(1, l + 1):
        q[l + m, l + m] = (-1) ** m * s
        q[l + m, l - m] = 1j * (-1) ** m * s
    return (-1j) ** l * q


def _cg_coefficient(j1: int, m1: int, j2: int, m2: int, j3: int, m3: int) -> float:
    """Complex Clebsch-Gordan coefficient ``<j1 m1 j2 m2 | j3 m3>`` (Racah's formula, exact rationals)."""
    if m3 != m1 + m2 or not (abs(j1 - j2) <= j3 <= j1 + j2):
        return 0.0
    f = math.factorial
    prefactor = Fraction(
        (2 * j3 + 1) * f(j3 + j1 - j2) * f(j3 - j1 + j2) * f(j1 + j2 - j3),
        f(j1 + j2 + j3 + 1),
    ) * Fraction(f(j3 + m3) * f(j3 - m3) * f(j1 - m1) * f(j1 + m1) * f(j2 - m2) * f(j2 + m2))
    total = Fraction(0)
    for k in range(0, j1 + j2 - j3 + 1):
        terms = (j1 + j2 - j3 - k, j1 - m1 - k, j2 + m2 - k, j3 - j2 + m1 + k, j3 - j1 - m2 + k)
        if min(terms) < 0:
            continue
        denominator = f(k)
        for t in terms:
            denominator *= f(t)
        total += Fraction((-1) ** k, denominator)
    return float(total) * math.sqrt(prefactor)


@functools.cache
def _wigner_3j_float64(l1: int, l2: int, l3: int) -> torch.Tensor:
    cg = torch.zeros(2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1, dtype=torch.complex128)
    for m1 in range(-l1, l1 + 1):
        for m2 in range(-l2, l2 + 1):
            if abs(m1 + m2) <= l3:
                cg[l1 + m1, l2 + m2, l3 + m1 + m2] = _cg_coefficient(l1, m1, l2, m2, l3, m1 + m2)
    q1, q2, q3 = _real_to_complex(l1), _real_to_complex(l2), _real_to_complex(l3)
    c = torch.einsum("ia,kb,nc,ikn->abc", q1, q2, q3.conj(), cg)
    if c.imag.abs().max() > 1e-10:
        raise AssertionError(f"wigner_3j({l1},{l2},{l3}) is not real")  # cannot happen with the phase above
    c = c.real
    return c / c.norm()


def wigner_3j(
    l1: int, l2: int, l3: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """Real Wigner 3j tensor ``[2l1+1, 2l2+1, 2l3+1]``, unit Frobenius norm, equal to e3nn's ``wigner_3j``.

    Invariant: ``C_{abc} = C_{ijk} D1_{ia} D2_{jb} D3_{kc}`` for every rotation. Raises for degrees that
    violate the triangle inequality. Cached per ``(l1, l2, l3, dtype, device)``.
    """
    if not (abs(l1 - l2) <= l3 <= l1 + l2):
        raise ValueError(f"wigner_3j({l1}, {l2}, {l3}): degrees violate the triangle inequality")
    return cached_constant(("wigner_3j", l1, l2, l3), lambda: _wigner_3j_float64(l1, l2, l3), dtype, device)


@functools.cache
def so3_generators(l: int) -> torch.Tensor:
    """Real generators ``[3, 2l+1, 2l+1]`` (float64) of rotations about the x, y, z axes in degree ``l``.

    ``matrix_exp(t * so3_generators(l)[k])`` is ``D^l`` of the rotation by ``t`` radians about axis ``k``.
    """
    m = torch.arange(-l, l, dtype=torch.float64)
    raising = torch.diag(-torch.sqrt(l * (l + 1) - m * (m + 1)), diagonal=-1)
    m = torch.arange(-l + 1, l + 1, dtype=torch.float64)
    lowering = torch.diag(torch.sqrt(l * (l + 1) - m * (m - 1)), diagonal=1)
    m = torch.arange(-l, l + 1, dtype=torch.float64)
    su2 = torch.stack([0.5 * (raising + lowering), torch.diag(1j * m), -0.5j * (raising - lowering)]).to(
        torch.complex128
    )
    q = _real_to_complex(l)
    # In the real basis, the complex generators (J_x, J_z, -J_y) of the textbook frame become the
    # generators of rotations about the physical x, y, z axes: the harmonics use (X, Y, Z) = (z, x, y).
    return (q.conj().T @ su2 @ q).real


def angles_to_matrix(alpha: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``R_y(α) R_x(β) R_y(γ)``, ``[..., 3, 3]`` (angles in radians, broadcast)."""
    alpha, beta, gamma = torch.broadcast_tensors(alpha, beta, gamma)
    return _matrix_y(alpha) @ _matrix_x(beta) @ _matrix_y(gamma)


def _matrix_x(angle: torch.Tensor) -> torch.Tensor:
    c, s, o, z = angle.cos(), angle.sin(), torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([o, z, z, z, c, -s, z, s, c], dim=-1).reshape(*angle.shape, 3, 3)


def _matrix_y(angle: torch.Tensor) -> torch.Tensor:
    c, s, o, z = angle.cos(), angle.sin(), torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([c, z, s, z, o, z, -s, z, c], dim=-1).reshape(*angle.shape, 3, 3)


def matrix_to_angles(R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of :func:`angles_to_matrix` for proper rotations ``[..., 3, 3]``."""
    y = R[..., :, 1]  # R e_y = (sin β sin α, cos β, sin β cos α)
    beta = torch.acos(y[..., 1].clamp(-1, 1))
    alpha = torch.atan2(y[..., 0], y[..., 2])
    rest = angles_to_matrix(alpha, beta, torch.zeros_like(alpha)).transpose(-1, -2) @ R
    gamma = torch.atan2(rest[..., 0, 2], rest[..., 0, 0])
    return alpha, beta, gamma


def wigner_D(l: int, alpha: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Wigner D matrix ``[..., 2l+1, 2l+1]`` of ``R_y(α) R_x(β) R_y(γ)`` in the real basis (e3nn's)."""
    alpha, beta, gamma = torch.broadcast_tensors(alpha, beta, gamma)
    g = so3_generators(l).to(dtype=alpha.dtype, device=alpha.device)
    a, b, c = (t[..., None, None] for t in (alpha, beta, gamma))
    return torch.matrix_exp(a * g[1]) @ torch.matrix_exp(b * g[0]) @ torch.matrix_exp(c * g[1])


def D_from_matrix(l: int, R: torch.Tensor, p: int | None = None) -> torch.Tensor:
    """Representation matrix ``[..., 2l+1, 2l+1]`` of an orthogonal ``R`` (rotation or improper).

    ``p`` is the parity of the irrep; the default ``(-1)^l`` is that of the spherical harmonics, so
    ``Y^l(R x) = D_from_matrix(l, R) Y^l(x)`` for every orthogonal ``R``.
    """
    p = (-1) ** l if p is None else p
    det = torch.linalg.det(R)
    proper = R * det[..., None, None]
    D = wigner_D(l, *matrix_to_angles(proper))
    sign = torch.where(det < 0, torch.as_tensor(float(p), dtype=R.dtype), torch.ones_like(det))
    return D * sign[..., None, None]
