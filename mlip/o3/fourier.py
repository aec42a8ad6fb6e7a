"""Change of basis between spherical harmonics and 2D Fourier series on the torus ``(θ, φ)``.

Used by the Fourier Gaunt product (Luo et al., "Enabling efficient equivariant operations in the Fourier
basis via Gaunt tensor products", ICLR 2024): a product of spherical functions becomes a 2D convolution
of their Fourier coefficients. Angles are those of :mod:`mlip.o3.grid` (polar axis ``y``): the point
``(sin θ sin φ, cos θ, sin θ cos φ)``. Every orthonormal harmonic of degree ``l``, a polynomial of degree
``l`` in these coordinates, is exactly a trigonometric polynomial of degree ``≤ l`` in ``θ`` and ``φ``:

``Y_lm(θ, φ) = Σ_{|u|,|v| ≤ l} c[lm, u, v] e^{i(uθ + vφ)}``  (only ``v = ±m`` occur).

Coefficient arrays are complex ``[..., 2n+1, 2n+1]`` indexed ``(u + n, v + n)``.
"""

from __future__ import annotations

import math

import torch

from mlip.o3.constants import cached_constant
from mlip.o3.spherical_harmonics import spherical_harmonics


def _torus_fourier(lmax: int, n: int, times_sin_theta: bool) -> torch.Tensor:
    """Exact Fourier coefficients ``[(lmax+1)^2, 2n+1, 2n+1]`` of ``Y_lm (sin θ if asked)`` by sampling."""
    size = 2 * n + 1
    angle = 2 * math.pi * torch.arange(size, dtype=torch.float64) / size
    theta, phi = torch.meshgrid(angle, angle, indexing="ij")
    points = torch.stack([theta.sin() * phi.sin(), theta.cos(), theta.sin() * phi.cos()], dim=-1)
    values = spherical_harmonics(lmax, points, normalize=False, normalization="integral")  # [size, size, K]
    if times_sin_theta:
        values = values * theta.sin()[..., None]
    coefficients = torch.fft.fft2(values.permute(2, 0, 1).to(torch.complex128)) / size**2
    return torch.fft.fftshift(coefficients, dim=(-2, -1))


def sh_to_fourier(
    lmax: int, dtype: torch.dtype = torch.complex128, device: torch.device | str | None = None
) -> torch.Tensor:
    """``c [(lmax+1)^2, 2lmax+1, 2lmax+1]`` (complex): ``Y_lm(θ, φ) = Σ_uv c[lm, u+L, v+L] e^{i(uθ+vφ)}``.

    Coefficients ``x: [..., (lmax+1)^2]`` of a spherical function map to its Fourier coefficients
    ``Σ_lm x_lm c[lm]``.
    """
    return cached_constant(("sh_to_fourier", lmax), lambda: _torus_fourier(lmax, lmax, False), dtype, device)


def _theta_integrals(n: int) -> torch.Tensor:
    """``∫_0^π e^{ikθ} dθ`` for ``k = -n..n``: ``π`` at 0, ``2i/k`` for odd ``k``, 0 for even ``k ≠ 0``."""
    k = torch.arange(-n, n + 1, dtype=torch.float64)
    odd = (k.remainder(2) == 1).to(torch.float64)
    out = torch.complex(torch.zeros_like(k), torch.where(odd > 0, 2 / k, torch.zeros_like(k)))
    out[n] = math.pi
    return out


def _fourier_to_sh_float64(n: int, lmax: int) -> torch.Tensor:
    # M[u, v, lm] = ∫_0^π ∫_0^2π e^{i(uθ+vφ)} Y_lm sinθ dφ dθ = 2π Σ_u' d[lm, u', -v] I(u + u'),
    # with d the Fourier coefficients of Y_lm sinθ (degree ≤ lmax + 1 in θ).
    nd = lmax + 1
    d = _torus_fourier(lmax, nd, True)  # [K, 2nd+1, 2nd+1]
    integrals = _theta_integrals(n + nd)
    u = torch.arange(-n, n + 1)
    up = torch.arange(-nd, nd + 1)
    theta_part = integrals[(u[:, None] + up[None, :]) + n + nd]  # [2n+1 (u), 2nd+1 (u')]
    out = torch.zeros(2 * n + 1, 2 * n + 1, d.shape[0], dtype=torch.complex128)
    for v in range(-min(n, nd), min(n, nd) + 1):
        # Σ_u' theta_part[u, u'] d[lm, u', -v]
        out[:, v + n, :] = 2 * math.pi * theta_part @ d[:, :, -v + nd].T
    return out


def fourier_to_sh(
    n: int, lmax: int, dtype: torch.dtype = torch.complex128, device: torch.device | str | None = None
) -> torch.Tensor:
    """``M [2n+1, 2n+1, (lmax+1)^2]`` (complex): projection of a Fourier series onto the harmonics.

    For ``h(θ, φ) = Σ_uv H[u+n, v+n] e^{i(uθ+vφ)}`` (a real function on the sphere), the coefficients
    ``∫ h Y_lm dΩ`` are ``Re Σ_uv H[u, v] M[u, v, lm]``: exact, since ``dΩ = sin θ dθ dφ`` over
    ``θ ∈ [0, π]`` integrates trigonometric monomials in closed form.
    """
    return cached_constant(("fourier_to_sh", n, lmax), lambda: _fourier_to_sh_float64(n, lmax), dtype, device)
