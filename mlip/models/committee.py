"""A committee of potentials: the mean prediction of N members and their spread, an uncertainty estimate.

``Committee([m1, m2, ...])`` is a :class:`~mlip.models.base.Potential`: :meth:`Committee.forward`
returns the members' mean ``energy`` / ``energies`` / ``forces`` / ``stress`` (the mean forces are
``-dE/dr`` of the mean energy, since the mean is linear) and

- ``energy_std`` ``[B]`` (eV): the population standard deviation (1/M) of the members' total energies;
- ``forces_std`` ``[N]`` (eV/Å): per atom, ``sqrt(mean_m |F_m - F_mean|^2)``, the root-mean-square
  deviation of the members' force vectors from their mean;
- ``stress_std`` ``[B]`` (eV/Å^3, with stress): ``sqrt(mean_m ||σ_m - σ_mean||_F^2)``.

Each member runs once per call (one forward and one backward pass each) on one shared neighbour list at
the largest member cutoff (members give edges beyond their own cutoff zero weight). Members must know the
same species, in the same order. ``mlip.models.save(committee, path)`` writes one model file that
:func:`mlip.models.load` reads back as a ``Committee`` (:mod:`mlip.models.io`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mlip.data import keys as K
from mlip.data.atomic_data import AtomicData
from mlip.data.neighbors import add_neighbors
from mlip.models.base import Potential, as_batch


class Committee(Potential):
    """The mean and spread of ``members`` (at least two :class:`Potential` models with equal species)."""

    name = "committee"

    def __init__(self, members: Sequence[Potential]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"a committee needs at least 2 members, got {len(members)}")
        species = [getattr(m, "species", None) for m in members]  # pair potentials know no species
        if any(s != species[0] for s in species):
            raise ValueError(f"committee members know different species: {species}")
        self.members = torch.nn.ModuleList(members)
        self.cutoff = max(float(m.cutoff) for m in members)

    @property
    def species(self) -> list[int]:
        """The members' atomic numbers (of the first member; all are equal)."""
        return list(self.members[0].species)

    def __len__(self) -> int:
        return len(self.members)

    def atomic_energies(self, data: AtomicData, edge_vectors: torch.Tensor) -> torch.Tensor:
        """The members' mean per-atom energies ``[N]`` (eV)."""
        return torch.stack([m.atomic_energies(data, edge_vectors) for m in self.members]).mean(0)

    def forward(
        self,
        data: AtomicData,
        compute_forces: bool = True,
        compute_stress: bool = False,
        create_graph: bool | None = None,
    ) -> dict[str, torch.Tensor]:
        """Mean results and ``*_std`` spreads (see the module docstring) of a batch or a single record."""
        data = as_batch(data)
        if K.EDGE_INDEX not in data:
            data = add_neighbors(data, self.cutoff)
        outs = [m(data, compute_forces, compute_stress, create_graph) for m in self.members]
        stacked = {key: torch.stack([o[key] for o in outs]) for key in outs[0]}
        result = {key: values.mean(0) for key, values in stacked.items()}
        result["energy_std"] = stacked["energy"].std(0, correction=0)
        if "forces" in stacked:
            deviation = stacked["forces"] - result["forces"]
            result["forces_std"] = deviation.square().sum(-1).mean(0).sqrt()
        if "stress" in stacked:
            deviation = stacked["stress"] - result["stress"]
            result["stress_std"] = deviation.square().sum((-2, -1)).mean(0).sqrt()
        return result
