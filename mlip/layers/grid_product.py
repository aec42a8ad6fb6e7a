"""MACE's product basis evaluated on the sphere (the Gaunt variant, Luo et al. 2024).

Each channel of the node features is a function on the sphere, ``A_c(r̂) = Σ_lm x[c, lm] Y_lm(r̂)``; the
product basis is the per-species polynomial ``B_c = Σ_ν w_ν[s, c] P_ν(A_c^ν)``, ``P_ν`` the projection of
the ν-th power onto degrees ``≤ lmax_out`` computed on a grid that integrates it exactly
(``mlip.kernels.symmetric_product``). Exactly equivariant; outputs have natural parity ``(-1)^l``.
"""

from __future__ import annotations

import torch

from mlip.kernels import symmetric_product
from mlip.o3.layouts import channels_to_grid, grid_to_channels


class GridProductBasis(torch.nn.Module):
    """``x`` ``[N, C, (lmax_in+1)^2]`` and species ``[N]`` -> ``[N, C, (lmax_out+1)^2]``.

    Args: ``lmax_in``, ``lmax_out``, ``correlation`` (highest power ν), ``num_channels``, ``num_species``.
    """

    def __init__(
        self, lmax_in: int, lmax_out: int, correlation: int, num_channels: int, num_species: int
    ) -> None:
        super().__init__()
        self.lmax_in, self.lmax_out, self.correlation = lmax_in, lmax_out, correlation
        self.weights = torch.nn.Parameter(torch.randn(num_species, correlation, num_channels) / correlation)
        self.backend = "auto"  # kernel choice, set by mlip.kernels.set_backend

    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        grid = channels_to_grid(x).contiguous()
        powers = symmetric_product(grid, self.correlation, self.lmax_out, backend=self.backend)
        out = (powers * self.weights[species].unsqueeze(2)).sum(1)  # [N, (lmax_out+1)^2, C]
        return grid_to_channels(out)
