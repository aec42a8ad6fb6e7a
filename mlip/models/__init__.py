"""Equivariant interatomic potentials: the Potential interface and the model registry."""

from mlip.models.base import Potential, as_batch

__all__ = ["Potential", "as_batch"]
