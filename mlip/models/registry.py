"""The model registry: ``create(name, species=[...], **hyperparameters)`` and ``load(path)``."""

from __future__ import annotations

import dataclasses
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mlip.models.model import EquivariantModel, check_species

if TYPE_CHECKING:
    from mlip.compile.model import CompiledModel

_MODELS: dict[str, type[EquivariantModel]] = {}


def register(cls: type[EquivariantModel]) -> type[EquivariantModel]:
    """Class decorator: make ``cls`` available as ``create(cls.name, ...)``."""
    _MODELS[cls.name] = cls
    return cls


def available() -> list[str]:
    """Names of the registered models."""
    _import_builtin()
    return sorted(_MODELS)


def model_class(name: str) -> type[EquivariantModel]:
    """The model class registered as ``name``; ``KeyError`` listing the known names otherwise."""
    _import_builtin()
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def create(
    name: str,
    species: Sequence[int | str],
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    seed: int | None = None,
    **hyperparameters: Any,
) -> EquivariantModel:
    """Build model ``name`` for ``species`` (atomic numbers or symbols) with the config's fields as
    keyword arguments, e.g. ``create("mace", species=["H", "O"], hidden_irreps="32x0e+32x1o")``.

    ``seed`` fixes the weight initialization; ``dtype``/``device`` place the model (default float32).
    """
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
    return model.to(device=device, dtype=dtype or torch.float32)


def load(
    path: str | Path, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> EquivariantModel | CompiledModel:
    """Read a model written by ``model.save(path)`` (any registered model), or a ``.pt2`` package written
    by ``mlip compile`` (a :class:`~mlip.compile.CompiledModel`; ``dtype``, when given, must be its)."""
    if zipfile.is_zipfile(path):
        from mlip.compile.model import CompiledModel

        return CompiledModel(path, device=device, dtype=dtype)
    from mlip.models.io import load as _load

    return _load(path, device=device, dtype=dtype)


def _import_builtin() -> None:
    import mlip.models.gridnet  # noqa: F401
    import mlip.models.mace  # noqa: F401
    import mlip.models.nequip  # noqa: F401
