"""Gate nonlinearity (e3nn ``nn.Gate`` semantics): scalars pass through an activation, each gated
irrep is multiplied by an activated gate scalar.

Input ``[N, scalars.dim + gates.dim + gated.dim]`` (e3nn layout, in that order), output
``[N, scalars.dim + gated.dim]``.
"""

from __future__ import annotations

import torch

from mlip.layers.activations import normalized_activation
from mlip.o3 import Irreps, IrrepsLike


class Gate(torch.nn.Module):
    """``irreps_scalars`` (activated with ``act_scalars``, ``act_odd`` for odd-parity scalars),
    ``irreps_gates`` (``act_gates``; one 0e per gated irrep), ``irreps_gated``."""

    def __init__(
        self,
        irreps_scalars: IrrepsLike,
        irreps_gated: IrrepsLike,
        act_scalars: str = "silu",
        act_odd: str = "tanh",
        act_gates: str = "sigmoid",
    ) -> None:
        super().__init__()
        self.irreps_scalars, self.irreps_gated = Irreps(irreps_scalars), Irreps(irreps_gated)
        if any(ir.l != 0 for _, ir in self.irreps_scalars):
            raise ValueError(f"gate scalars must be l=0, got {self.irreps_scalars}")
        self.irreps_gates = (
            Irreps(f"{self.irreps_gated.num_irreps}x0e") if self.irreps_gated.dim else Irreps("")
        )
        self.irreps_in = self.irreps_scalars + self.irreps_gates + self.irreps_gated
        self.irreps_out = self.irreps_scalars + self.irreps_gated
        self.act_even, self.act_odd = normalized_activation(act_scalars), normalized_activation(act_odd)
        self.act_gates = normalized_activation(act_gates)
        self._scalar_parities = [ir.p for _, ir in self.irreps_scalars]
        # one split of the input (a slice per part would zero-fill a whole-input gradient each)
        self._split = [mul for mul, _ in self.irreps_scalars]
        self._split += [self.irreps_gates.dim, self.irreps_gated.dim] if self.irreps_gates.dim else []
        # column of the gate of each gated component (an index built once: repeat_interleave with tensor
        # repeats would synchronise a GPU on every call to learn its output size)
        repeats = torch.tensor(
            [ir.dim for mul, ir in self.irreps_gated for _ in range(mul)], dtype=torch.int64
        )
        gate_index = torch.repeat_interleave(torch.arange(len(repeats)), repeats)
        self.register_buffer("gate_index", gate_index, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.split(self._split, dim=1)
        pieces = [
            (self.act_even if p == 1 else self.act_odd)(part)
            for p, part in zip(self._scalar_parities, parts[: len(self._scalar_parities)], strict=True)
        ]
        if self.irreps_gates.dim:
            gates, gated = self.act_gates(parts[-2]), parts[-1]
            pieces.append(gated * gates.index_select(1, self.gate_index))
        return torch.cat(pieces, dim=1)
