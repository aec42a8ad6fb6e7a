"""Fourier method for the Gaunt tensor product (Luo et al., ICLR 2024), in torch: the comparison point.

Each input's harmonics become 2D Fourier coefficients on the torus ``(θ, φ)``
(:func:`mlip.o3.sh_to_fourier`), their product is a 2D convolution done with FFTs of size
``2(L1+L2)+1`` (no wrap-around), and the result is projected back exactly
(:func:`mlip.o3.fourier_to_sh`). Differentiable to any order by autograd.
"""

from __future__ import annotations

import torch

from mlip.o3 import fourier_to_sh, sh_to_fourier


def gaunt_tp_fourier(x: torch.Tensor, y: torch.Tensor, L1: int, L2: int, lmax_out: int) -> torch.Tensor:
    """``[B, (lmax_out+1)^2, C]``; ``x: [B, (L1+1)^2, C]``, ``y: [B, (L2+1)^2, C or 1]`` (real, fp32/fp64)."""
    if x.shape[0] == 0 or x.shape[2] == 0:  # the FFT libraries reject empty transforms
        return x.new_zeros(x.shape[0], (lmax_out + 1) ** 2, x.shape[2])
    cdtype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
    n = L1 + L2
    size = (2 * n + 1, 2 * n + 1)
    spectra = []
    for features, L in ((x, L1), (y, L2)):
        to_fourier = sh_to_fourier(L, cdtype, x.device).flatten(1)  # [K, (2L+1)^2]
        coefficients = torch.matmul(features.transpose(1, 2).to(cdtype), to_fourier)  # [B, C, (2L+1)^2]
        coefficients = coefficients.unflatten(-1, (2 * L + 1, 2 * L + 1))
        spectra.append(torch.fft.fft2(coefficients, s=size))
    product = torch.fft.ifft2(spectra[0] * spectra[1])  # [B, C, 2n+1, 2n+1]: the convolution
    projection = fourier_to_sh(n, lmax_out, cdtype, x.device).flatten(0, 1)  # [(2n+1)^2, K_out]
    return torch.matmul(product.flatten(2), projection).real.transpose(1, 2)
