"""Equivariant linear maps between irreps (e3nn ``o3.Linear`` semantics, no biases), optionally with
weights per species (MACE's element-dependent skip connection, an e3nn ``FullyConnectedTensorProduct``
with a one-hot species input).

Features use e3nn's layout ``[N, irreps.dim]`` (each ``mul x ir`` block is ``[mul, 2l+1]`` flattened).
Each output block is ``Σ_paths x_block @ W / sqrt(fan_in)`` over the input blocks of the same irrep,
``fan_in`` the total input multiplicity of that irrep times ``num_species``. Parameter counts equal e3nn's.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from mlip.kernels import matmul
from mlip.o3 import Irreps, IrrepsLike


class _Run(NamedTuple):
    """Adjacent input blocks ``x[:, start:stop]`` (irrep dimension ``dim``) feeding output block ``out``
    through weights ``paths`` (indices into ``Linear.weights``), scaled by ``norm``; ``piece`` is its index
    among the column pieces :meth:`Linear.forward` splits ``x`` into."""

    out: int
    start: int
    stop: int
    dim: int
    paths: tuple[int, ...]
    norm: float
    piece: int = -1


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
        # One matmul per run of adjacent input blocks feeding the same output block: their flattened
        # [mul, d] layouts concatenate to [sum(mul), d], so the run is one slice of ``x``.
        slices = self.irreps_in.slices()
        self._runs: list[_Run] = []
        for p, (i, j, norm) in enumerate(self._paths):
            last = self._runs[-1] if self._runs else None
            if last is not None and last.out == j and last.stop == slices[i].start:
                self._runs[-1] = last._replace(stop=slices[i].stop, paths=(*last.paths, p))
            else:
                dim = self.irreps_in[i].ir.dim
                self._runs.append(_Run(j, slices[i].start, slices[i].stop, dim, (p,), norm))
        # x is split once into pieces at every run boundary (runs are equal or disjoint): the backward of a
        # split is one concatenation, that of a slice per run a zero-filled gradient of the whole of x each
        bounds = sorted(
            {0, self.irreps_in.dim} | {r.start for r in self._runs} | {r.stop for r in self._runs}
        )
        self._pieces = [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        self._runs = [r._replace(piece=bounds.index(r.start)) for r in self._runs]
        assert all(self._pieces[r.piece] == r.stop - r.start for r in self._runs)
        self._out = [(mul, ir.dim) for mul, ir in self.irreps_out]

    def forward(self, x: torch.Tensor, species: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        rows = torch.arange(n, device=x.device) if self.num_species > 1 else None
        blocks: list[torch.Tensor | None] = [None] * len(self._out)
        pieces = x.split(self._pieces, dim=1)
        for j, _, _, d, paths, norm, piece in self._runs:
            xi = pieces[piece].reshape(n, -1, d)
            w = self.weights[paths[0]] if len(paths) == 1 else torch.cat([self.weights[p] for p in paths])
            w = w.reshape(xi.shape[1], -1) * norm
            if d == 1:
                y = matmul(xi.reshape(n, -1), w).unsqueeze(-1)
            else:  # rows (atom, component) against the channels: [N d, U] @ [U, W] -> [N, W, d]
                y = matmul(xi.transpose(1, 2).reshape(n * d, -1), w).view(n, d, -1).transpose(1, 2)
            if rows is not None:  # pick each row's species: [N, S * mul_out, d] -> [N, mul_out, d]
                y = y.reshape(n, self.num_species, -1, d)[rows, species]
            y = y.reshape(n, -1)
            blocks[j] = y if blocks[j] is None else blocks[j] + y
        out = [
            b if b is not None else x.new_zeros(n, mul * d)
            for b, (mul, d) in zip(blocks, self._out, strict=True)
        ]
        return torch.cat(out, dim=1) if len(out) > 1 else out[0]
