"""Building blocks of the models: radial bases, species embedding, equivariant linear maps, gates,
normalized activations, E0/scale, MACE's symmetric contraction and grid product basis."""

from mlip.layers.activations import NormalizedActivation, normalized_activation
from mlip.layers.embedding import SpeciesEmbedding, SpeciesIndex
from mlip.layers.gate import Gate
from mlip.layers.grid_product import GridProductBasis
from mlip.layers.linear import Linear
from mlip.layers.radial import BesselBasis, BesselEnvelope, CubicBSplineBasis, PolynomialEnvelope, RadialMLP
from mlip.layers.scale_shift import AtomicEnergies, ScaleShift
from mlip.layers.symmetric_contraction import SymmetricContraction, symmetric_basis

__all__ = [
    "AtomicEnergies",
    "BesselBasis",
    "BesselEnvelope",
    "CubicBSplineBasis",
    "Gate",
    "GridProductBasis",
    "Linear",
    "NormalizedActivation",
    "PolynomialEnvelope",
    "RadialMLP",
    "ScaleShift",
    "SpeciesEmbedding",
    "SpeciesIndex",
    "SymmetricContraction",
    "normalized_activation",
    "symmetric_basis",
]
