"""MACE's product basis evaluated on the sphere (the Gaunt variant, Luo et al. 2024).

Each channel of the node features is a function on the sphere, ``A_c(r̂) = Σ_lm x[c, lm] Y_lm(r̂)``; the
product basis is the per-species polynomial ``B_c = Σ_ν w_ν[s, c] A_c^ν`` taken pointwise on a grid that
integrates it exactly, then projected back onto degrees ``≤ lmax_out``. Exactly equivariant (the grid is
exact for the band limit ``ν·lmax_in + lmax_out``); outputs have natural parity ``(-1)^l``.
"""

from __future__ import annotations

import torch

from mlip.o3.grid import from_grid, grid_for, to_grid


class GridProductBasis(torch.nn.Module):
    """``x`` ``[N, C, (lmax_in+1)^2]`` and species ``[N]`` -> ``[N, C, (lmax_out+1)^2]``.

    Args: ``lmax_in``, ``lmax_out``, ``correlation`` (highest power ν), ``num_channels``, ``num_species``.
    """

    def __init__(
        self, lmax_in: int, lmax_out: int, correlation: int, num_channels: int, num_species: int
    ) -> None:
        super().__init__()
        self.lmax_in, self.lmax_out, self.correlation = lmax_in, lmax_out, correlation
        self.grid = grid_for(correlation * lmax_in + lmax_out)
        self.weights = torch.nn.Parameter(torch.randn(correlation, num_species, num_channels) / correlation)

    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        a = to_grid(x.transpose(1, 2), self.lmax_in, self.grid)  # [N, G, C]
        w = self.weights[:, species].unsqueeze(2)  # [ν, N, 1, C]
        b = w[-1] * a
        for nu in range(self.correlation - 2, -1, -1):  # Horner: ((w3 a + w2) a + w1) a
            b = (b + w[nu]) * a
        return from_grid(b, self.lmax_out, self.grid).transpose(1, 2)
