"""Species handling: atomic number -> species index, and the learned species embedding."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mlip.data.atomic_data import DataError


def check_species(species: Sequence[int | str]) -> list[int]:
    """Species as a list of distinct atomic numbers in 1..118 (chemical symbols accepted);
    ``ValueError`` otherwise (``KeyError`` for an unknown symbol)."""
    from ase.data import atomic_numbers

    out = [atomic_numbers[s] if isinstance(s, str) else int(s) for s in species]
    if len(set(out)) != len(out) or not out or min(out) < 1 or max(out) > 118:
        raise ValueError(f"species must be distinct atomic numbers in 1..118, got {list(species)}")
    return out


class SpeciesIndex(torch.nn.Module):
    """Maps atomic numbers ``[N]`` to indices ``[N]`` into the model's ``species`` list (atomic numbers).

    Raises :class:`~mlip.data.atomic_data.DataError` naming the element for an atomic number the model
    was not built for.
    """

    def __init__(self, species: Sequence[int]) -> None:
        super().__init__()
        self.species = species = check_species(species)
        table = torch.full((119,), -1, dtype=torch.int64)
        table[torch.tensor(species)] = torch.arange(len(species))
        self.register_buffer("table", table, persistent=False)

    def forward(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        index = self.table[atomic_numbers.clamp(0, 118)]
        if bool((index < 0).any()):
            from ase.data import chemical_symbols

            bad = sorted({int(z) for z in atomic_numbers[index < 0]})
            names = ", ".join(f"{chemical_symbols[z]} (Z={z})" for z in bad)
            known = ", ".join(chemical_symbols[z] for z in self.species)
            raise DataError(f"element {names} not in the model's species ({known})")
        return index


class SpeciesEmbedding(torch.nn.Module):
    """Learned scalars per species: ``weight[index] / sqrt(num_species)`` (e3nn ``Linear`` on a one-hot).

    Forward: species index ``[N]`` -> ``[N, dim]``.
    """

    def __init__(self, num_species: int, dim: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(num_species, dim))

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.weight[index] / math.sqrt(self.weight.shape[0])
