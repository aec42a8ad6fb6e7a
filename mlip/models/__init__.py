"""Equivariant interatomic potentials: the Potential interface and the model registry.

``create(name, species=[...], **hyperparameters)`` builds a registered model (``mace``, ``nequip``,
``gridnet``); ``load(path)`` reads one written by ``model.save(path)``; ``from_mace(module)`` converts a
mace-torch model (see :mod:`mlip.interop.mace`); ``Committee(members)`` averages several
(:mod:`mlip.models.committee`; ``save(committee, path)`` writes one file). The built-in models are
registered here.
"""

from mlip.interop.mace import from_mace
from mlip.models.base import Potential, as_batch
from mlip.models.committee import Committee
from mlip.models.gridnet import GridNet
from mlip.models.io import ModelFileError, load, save
from mlip.models.mace import MACE
from mlip.models.model import EquivariantModel, ModelConfig
from mlip.models.nequip import NequIP
from mlip.models.registry import available, create, register

register(MACE)
register(NequIP)
register(GridNet)

__all__ = [
    "Committee",
    "EquivariantModel",
    "GridNet",
    "MACE",
    "ModelConfig",
    "ModelFileError",
    "NequIP",
    "Potential",
    "as_batch",
    "available",
    "create",
    "from_mace",
    "load",
    "register",
    "save",
]
