"""Classical pair potentials with exact answers, for tests and benchmarks of the MD driver.

Both are :class:`~mlip.models.base.Potential` subclasses (forces and stress by the same autograd path as
the learned models). A pair energy ``phi(r)`` is multiplied by a quintic switch ``S(r)`` that goes from 1
at ``switch_start`` to 0 at ``cutoff`` with zero first and second derivatives at both ends, so energy,
force and force derivative are continuous everywhere and vanish at the cutoff (C2). Edges longer than
the cutoff (a neighbour-list skin) get exactly zero energy.
"""

from __future__ import annotations

import torch

from mlip.data.atomic_data import AtomicData
from mlip.models.base import Potential


def switch(r: torch.Tensor, start: float, cutoff: float) -> torch.Tensor:
    """C2 switch ``[E]``: 1 for ``r <= start``, ``1 - 10x^3 + 15x^4 - 6x^5`` with
    ``x = (r - start) / (cutoff - start)`` between, 0 for ``r >= cutoff``."""
    x = ((r - start) / (cutoff - start)).clamp(0.0, 1.0)
    return 1.0 - x * x * x * (10.0 - 15.0 * x + 6.0 * x * x)


class PairPotential(Potential):
    """Sum over pairs of ``phi(r) S(r)``; each pair's energy is split equally between its two atoms.

    Subclasses implement :meth:`pair_energy`. Parameters are float64 buffers; ``.to(dtype)`` changes the
    compute dtype.
    """

    def __init__(self, cutoff: float, switch_start: float) -> None:
        super().__init__()
        if not 0 < switch_start < cutoff:
            raise ValueError(f"need 0 < switch_start < cutoff, got {switch_start} and {cutoff}")
        self.cutoff = float(cutoff)
        self.switch_start = float(switch_start)

    def pair_energy(self, r: torch.Tensor) -> torch.Tensor:
        """Unswitched pair energy ``phi(r)`` ``[E]`` (eV) for distances ``r`` ``[E]`` (Å)."""
        raise NotImplementedError

    def atomic_energies(self, data: AtomicData, edge_vectors: torch.Tensor) -> torch.Tensor:
        """Per-atom energies ``[N]`` (eV): half of the switched pair energies of the edges leaving each atom
        (the full list holds each pair in both directions)."""
        n = data["positions"].shape[0]
        r = edge_vectors.norm(dim=1)
        inside = r < self.cutoff
        r_safe = torch.where(inside, r, torch.full_like(r, self.cutoff))
        e = torch.where(
            inside, self.pair_energy(r_safe) * switch(r_safe, self.switch_start, self.cutoff), 0.0
        )
        return edge_vectors.new_zeros(n).index_add(0, data["edge_index"][0], 0.5 * e)


class LennardJones(PairPotential):
    """``4 epsilon ((sigma/r)^12 - (sigma/r)^6)``, switched off smoothly (C2) between ``switch_start``
    (default ``0.9 cutoff``) and ``cutoff``. Energies eV, lengths Å; one species-independent pair."""

    def __init__(
        self,
        epsilon: float = 0.0104,
        sigma: float = 3.4,
        cutoff: float = 8.5,
        switch_start: float | None = None,
    ) -> None:
        super().__init__(cutoff, 0.9 * cutoff if switch_start is None else switch_start)
        self.register_buffer("epsilon", torch.tensor(float(epsilon), dtype=torch.float64))
        self.register_buffer("sigma", torch.tensor(float(sigma), dtype=torch.float64))

    def pair_energy(self, r: torch.Tensor) -> torch.Tensor:
        s2 = (self.sigma / r) * (self.sigma / r)
        s6 = s2 * s2 * s2
        return 4.0 * self.epsilon * (s6 * s6 - s6)


class HarmonicPair(PairPotential):
    """Springs ``k/2 (r - r0)^2`` between all pairs closer than ``switch_start`` (eV/Å^2, Å), switched off
    smoothly up to ``cutoff``. With one bonded pair it is an exact harmonic oscillator."""

    def __init__(
        self, k: float = 10.0, r0: float = 1.0, cutoff: float = 3.0, switch_start: float = 2.5
    ) -> None:
        super().__init__(cutoff, switch_start)
        self.register_buffer("k", torch.tensor(float(k), dtype=torch.float64))
        self.register_buffer("r0", torch.tensor(float(r0), dtype=torch.float64))

    def pair_energy(self, r: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.k * (r - self.r0) * (r - self.r0)
