"""Shared machinery of the registered models: the config base class, species/E0 handling, the edge
and species embedding every model starts from, one-file save/load and optional ``torch.compile``.

A model is ``Model(config)``; ``config`` is a dataclass whose fields are plain JSON values, so a
checkpoint is the config (JSON) plus a state dict of tensors (see :mod:`mlip.models.io`). The kernel
backend is not part of either: it is chosen for the machine with :func:`mlip.kernels.set_backend`.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, ClassVar

import torch

from mlip.data import keys as K
from mlip.data.atomic_data import AtomicData
from mlip.kernels import inductor_options
from mlip.layers.conv import EdgeEmbedding, Edges
from mlip.layers.embedding import SpeciesEmbedding, SpeciesIndex
from mlip.layers.scale_shift import AtomicEnergies, ScaleShift
from mlip.models.base import Potential

# config fields of older files that are no longer part of a model's config (ignored when read)
RETIRED_FIELDS = ("backend",)


@dataclasses.dataclass
class ModelConfig:
    """Fields every model has.

    species: atomic numbers the model knows (order defines the species index).
    r_max: cutoff radius, Å.
    e0s: reference energy per species, eV (default 0).
    scale, shift: learned energy ``E = E0 + scale · E_model + shift`` per atom, eV.
    avg_num_neighbors: message normalization (set from the training data).
    """

    species: list[int]
    r_max: float = 5.0
    e0s: list[float] | None = None
    scale: float = 1.0
    shift: float = 0.0
    avg_num_neighbors: float = 10.0

    def __post_init__(self) -> None:
        self.species = [int(z) for z in self.species]
        if self.e0s is not None and len(self.e0s) != len(self.species):
            raise ValueError(f"e0s has {len(self.e0s)} values for {len(self.species)} species")
        if not self.r_max > 0:
            raise ValueError(f"r_max must be positive, got {self.r_max}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> ModelConfig:
        """The config of a saved model (``to_dict`` of this or an older version: retired fields dropped)."""
        return cls(**{k: v for k, v in fields.items() if k not in RETIRED_FIELDS})


class EquivariantModel(Potential):
    """Base of the registered models: species lookup, E0s and scale/shift around :meth:`node_energies`.

    Subclasses set ``name`` and ``config_class``, call :meth:`init_embeddings` and implement
    :meth:`node_energies` (the learned part per atom, before scale/shift, in the model dtype), starting
    from :meth:`embed`. ``legacy_keys`` (``(pattern, replacement)`` regexes) rename the state-dict keys
    of files written before a submodule moved, so they still load.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[ModelConfig]]
    legacy_keys: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.cutoff = float(config.r_max)
        self.species_index = SpeciesIndex(config.species)
        e0s = config.e0s if config.e0s is not None else [0.0] * len(config.species)
        self.atomic_energies_e0 = AtomicEnergies(e0s)
        self.scale_shift = ScaleShift(config.scale, config.shift)
        if self.legacy_keys:
            self.register_load_state_dict_pre_hook(_rename_legacy_keys)

    def init_embeddings(self, channels: int, lmax: int, radial_basis: torch.nn.Module | None) -> None:
        """The learned species scalars ``[N, channels]`` and the edge embedding (harmonics up to
        ``lmax``, ``radial_basis`` of the lengths or the lengths themselves) used by :meth:`embed`."""
        self.embedding = SpeciesEmbedding(len(self.config.species), channels)
        self.edge_embedding = EdgeEmbedding(lmax, radial_basis)

    def embed(
        self, data: AtomicData, species: torch.Tensor, edge_vectors: torch.Tensor
    ) -> tuple[torch.Tensor, Edges]:
        """Initial node features ``[N, channels]`` (scalars) and the :class:`~mlip.layers.conv.Edges`."""
        return self.embedding(species), self.edge_embedding(
            data[K.EDGE_INDEX], edge_vectors, species.shape[0]
        )

    @property
    def species(self) -> list[int]:
        return list(self.config.species)

    def node_energies(
        self, data: AtomicData, species: torch.Tensor, edge_vectors: torch.Tensor
    ) -> torch.Tensor:
        """Learned per-atom energies ``[N]`` from species indices ``[N]`` and edge vectors ``[E, 3]``."""
        raise NotImplementedError

    def atomic_energies(self, data: AtomicData, edge_vectors: torch.Tensor) -> torch.Tensor:
        return self.indexed_energies(data, self.species_index(data[K.ATOMIC_NUMBERS]), edge_vectors)

    def indexed_energies(
        self, data: AtomicData, species: torch.Tensor, edge_vectors: torch.Tensor
    ) -> torch.Tensor:
        """Per-atom energies ``[N]`` (eV) from species indices ``[N]`` (``0..S-1``, not validated: the
        caller checks them) and edge vectors ``[E, 3]``: :meth:`atomic_energies` without the host sync of
        the species check, as the compiled step (:mod:`mlip.compile`) needs it."""
        learned = self.scale_shift(self.node_energies(data, species, edge_vectors))
        return learned + self.atomic_energies_e0(species).to(learned.dtype)

    def num_parameters(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def save(self, path: str | Path) -> None:
        """Write config, weights, species, E0s and the package version to one safetensors file."""
        from mlip.models.io import save

        save(self, path)

    def compile_energies(self, **kwargs: Any) -> EquivariantModel:
        """Compile :meth:`node_energies` with ``torch.compile`` (dynamic shapes; forces still by autograd
        through the compiled graph); ``kwargs`` go to ``torch.compile``. With Inductor (the default
        backend) the CPU workaround of :func:`mlip.kernels.inductor_options` is added to the options
        (``mode`` becomes its options). Returns ``self``."""
        if kwargs.get("backend", "inductor") == "inductor":
            kwargs["options"] = inductor_options(kwargs.pop("mode", None), kwargs.get("options"))
        self.node_energies = torch.compile(self.node_energies, dynamic=True, **kwargs)  # type: ignore[method-assign]
        return self


def _rename_legacy_keys(model: EquivariantModel, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    for key in [k for k in state_dict if k.startswith(prefix)]:
        new = key[len(prefix) :]
        for pattern, replacement in model.legacy_keys:
            new = re.sub(pattern, replacement, new)
        if prefix + new != key:
            state_dict[prefix + new] = state_dict.pop(key)
