"""The model registry: ``register`` (a class decorator), ``available``, ``model_class`` and
``create(name, species=[...], **hyperparameters)``.

The built-in models are registered by :mod:`mlip.models` (its ``__init__``), so this module imports no
model; ``load`` lives in :mod:`mlip.models.io`, which looks classes up here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from mlip.layers.embedding import check_species

if TYPE_CHECKING:
    from mlip.models.model import EquivariantModel

_MODELS: dict[str, type[EquivariantModel]] = {}


def register(cls: type[EquivariantModel]) -> type[EquivariantModel]:
    """Make ``cls`` available as ``create(cls.name, ...)`` (usable as a class decorator)."""
    _MODELS[cls.name] = cls
    return cls


def available() -> list[str]:
    """Names of the registered models."""
    return sorted(_MODELS)


def model_class(name: str) -> type[EquivariantModel]:
    """The model class registered as ``name``; ``KeyError`` listing the known names otherwise."""
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def create(
    name: str,
    species: Sequence[int | str],
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    seed: int | None = None,
    backend: str = "auto",
    **hyperparameters: Any,
) -> EquivariantModel:
    """Build model ``name`` for ``species`` (atomic numbers or symbols) with the config's fields as
    keyword arguments, e.g. ``create("mace", species=["H", "O"], hidden_irreps="32x0e+32x1o")``.

    ``seed`` fixes the weight initialization; ``dtype``/``device`` place the model (default float32);
    ``backend`` is the kernel choice (:func:`mlip.kernels.set_backend`; not part of the config).
    """
    from mlip.kernels import set_backend

    cls = model_class(name)
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    unknown = sorted(set(hyperparameters) - fields)
    if unknown:
        raise TypeError(
            f"model {name!r} has no hyperparameter(s) {unknown}; known: {sorted(fields - {'species'})}"
        )
    config = cls.config_class(species=check_species(species), **hyperparameters)
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(config)
    else:
        model = cls(config)
    set_backend(model, backend)
    return model.to(device=device, dtype=dtype or torch.float32)
