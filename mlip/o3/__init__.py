"""O(3) math in pure torch, float64-exact: irreps, real spherical harmonics, Wigner 3j and D matrices.

Conventions (values, signs, orderings) are e3nn's, so e3nn serves as an independent reference.
"""

from mlip.o3.constants import cached_constant
from mlip.o3.fourier import fourier_to_sh, sh_to_fourier
from mlip.o3.gaunt import gaunt, gaunt_packed
from mlip.o3.grid import SphericalGrid, from_grid, from_grid_matrix, grid_for, to_grid, to_grid_matrix
from mlip.o3.irreps import Irrep, Irreps, IrrepsLike, MulIrrep
from mlip.o3.spherical_harmonics import spherical_harmonics
from mlip.o3.wigner import (
    D_from_matrix,
    angles_to_matrix,
    matrix_to_angles,
    so3_generators,
    wigner_3j,
    wigner_D,
)

__all__ = [
    "D_from_matrix",
    "Irrep",
    "Irreps",
    "IrrepsLike",
    "MulIrrep",
    "SphericalGrid",
    "angles_to_matrix",
    "cached_constant",
    "fourier_to_sh",
    "from_grid",
    "from_grid_matrix",
    "gaunt",
    "gaunt_packed",
    "grid_for",
    "matrix_to_angles",
    "sh_to_fourier",
    "so3_generators",
    "spherical_harmonics",
    "to_grid",
    "to_grid_matrix",
    "wigner_3j",
    "wigner_D",
]
