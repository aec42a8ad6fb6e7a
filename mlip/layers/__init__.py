"""Building blocks of the models: radial bases, species embedding, equivariant linear maps, gates,
normalized activations, E0/scale, MACE's symmetric contraction and grid product basis, spherical-grid
mixing, the edge embedding and the edge convolution every model shares."""

from mlip.layers.activations import NormalizedActivation, normalized_activation
from mlip.layers.conv import EdgeConvolution, EdgeEmbedding, Edges
from mlip.layers.embedding import SpeciesEmbedding, SpeciesIndex, check_species
from mlip.layers.gate import Gate
from mlip.layers.grid_product import GridProductBasis
from mlip.layers.linear import Linear
from mlip.layers.radial import (
    BesselBasis,
    BesselEnvelope,
    CubicBSplineBasis,
    PolynomialEnvelope,
    RadialMLP,
    SplineRadial,
)
from mlip.layers.s2 import PerDegreeLinear, SphericalGLU
from mlip.layers.scale_shift import AtomicEnergies, ScaleShift
from mlip.layers.symmetric_contraction import SymmetricContraction, symmetric_basis

__all__ = [
    "AtomicEnergies",
    "BesselBasis",
    "BesselEnvelope",
    "CubicBSplineBasis",
    "EdgeConvolution",
    "EdgeEmbedding",
    "Edges",
    "Gate",
    "GridProductBasis",
    "Linear",
    "PerDegreeLinear",
    "NormalizedActivation",
    "PolynomialEnvelope",
    "RadialMLP",
    "ScaleShift",
    "SpeciesEmbedding",
    "SpeciesIndex",
    "SphericalGLU",
    "SplineRadial",
    "SymmetricContraction",
    "check_species",
    "normalized_activation",
    "symmetric_basis",
]
