"""Equivariant linear maps between irreps (e3nn ``o3.Linear`` semantics, no biases), optionally with
weights per species (MACE's element-dependent skip connection, an e3nn ``FullyConnectedTensorProduct``
with a one-hot species input).

Features use e3nn's layout ``[N, irreps.dim]`` (each ``mul x ir`` block is ``[mul, 2l+1]`` flattened).
Each output block is ``Σ_paths x_block @ W / sqrt(fan_in)`` over the input blocks of the same irrep,
``fan_in`` the total input multiplicity of that irrep times ``num_species``. Parameter counts equal e3nn's.
"""

from __future__ import annotations

import math

import torch

from mlip.o3 import Irreps, IrrepsLike


class Linear(torch.nn.Module):
    """``[N, irreps_in.dim] -> [N, irreps_out.dim]``; output irreps with no matching input are zero.

    With ``num_species > 1`` each path has weights ``[mul_in, num_species, mul_out]`` and
    :meth:`forward` takes the species index ``[N]`` of every row.
    """

    def __init__(self, irreps_in: IrrepsLike, irreps_out: IrrepsLike, num_species: int = 1) -> None:
        super().__init__()
        self.irreps_in, self.irreps_out = Irreps(irreps_in), Irreps(irreps_out)
        self.num_species = num_species
        self._paths: list[tuple[int, int, float]] = []  # (input block, output block, normalization)
        weights = []
        for j, (mul_out, ir_out) in enumerate(self.irreps_out):
            sources = [i for i, (_, ir) in enumerate(self.irreps_in) if ir == ir_out]
            fan_in = sum(self.irreps_in[i].mul for i in sources) * num_species
            for i in sources:
                self._paths.append((i, j, 1.0 / math.sqrt(fan_in)))
                shape = (
                    (self.irreps_in[i].mul, num_species, mul_out)
                    if num_species > 1
                    else (
                        self.irreps_in[i].mul,
                        mul_out,
                    )
                )
                weights.append(torch.nn.Parameter(torch.randn(shape)))
        self.weights = torch.nn.ParameterList(weights)
        slices = self.irreps_in.slices()
        self._in = [
            (s.start, s.stop, mul, ir.dim) for s, (mul, ir) in zip(slices, self.irreps_in, strict=True)
        ]
        self._out = [(mul, ir.dim) for mul, ir in self.irreps_out]

    def forward(self, x: torch.Tensor, species: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        rows = torch.arange(n, device=x.device) if self.num_species > 1 else None
        blocks: list[torch.Tensor | None] = [None] * len(self._out)
        for (i, j, norm), w in zip(self._paths, self.weights, strict=True):
            start, stop, mul, d = self._in[i]
            xi = x[:, start:stop].reshape(n, mul, d)
            y = torch.einsum("nud,uw->nwd", xi, (w * norm).reshape(mul, -1))
            if rows is not None:  # pick each row's species: [N, S * mul_out, d] -> [N, mul_out, d]
                y = y.reshape(n, self.num_species, -1, d)[rows, species]
            y = y.reshape(n, -1)
            blocks[j] = y if blocks[j] is None else blocks[j] + y
        out = [
            b if b is not None else x.new_zeros(n, mul * d)
            for b, (mul, d) in zip(blocks, self._out, strict=True)
        ]
        return torch.cat(out, dim=1) if len(out) > 1 else out[0]
