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
        self._scalar_parities = [(mul, ir.p) for mul, ir in self.irreps_scalars]
        repeats = [ir.dim for mul, ir in self.irreps_gated for _ in range(mul)]
        self.register_buffer("gate_repeats", torch.tensor(repeats, dtype=torch.int64), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ns, ng = self.irreps_scalars.dim, self.irreps_gates.dim
        pieces, start = [], 0
        for mul, p in self._scalar_parities:
            pieces.append((self.act_even if p == 1 else self.act_odd)(x[:, start : start + mul]))
            start += mul
        if ng:
            gates = self.act_gates(x[:, ns : ns + ng])
            gated = x[:, ns + ng :]
            pieces.append(gated * torch.repeat_interleave(gates, self.gate_repeats, dim=1))
        return torch.cat(pieces, dim=1)
