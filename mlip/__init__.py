"""mlip: SE(3)-equivariant machine-learning interatomic potentials."""

__version__ = "0.1.0"
