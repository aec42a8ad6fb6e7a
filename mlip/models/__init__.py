"""Equivariant interatomic potentials: the Potential interface and the model registry.

``create(name, species=[...], **hyperparameters)`` builds a registered model (``mace``, ``nequip``,
``gridnet``); ``load(path)`` reads one written by ``model.save(path)``; ``from_mace(module)`` converts a
mace-torch model (see :mod:`mlip.interop.mace`).
"""

from mlip.interop.mace import from_mace
from mlip.models.base import Potential, as_batch
from mlip.models.io import ModelFileError
from mlip.models.model import EquivariantModel, ModelConfig
from mlip.models.registry import available, create, load, register

__all__ = [
    "EquivariantModel",
    "ModelConfig",
    "ModelFileError",
    "Potential",
    "as_batch",
    "available",
    "create",
    "from_mace",
    "load",
    "register",
]
