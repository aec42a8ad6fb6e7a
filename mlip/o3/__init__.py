"""O(3) math in pure torch, float64-exact: irreps, real spherical harmonics, Wigner 3j and D matrices.

Conventions (values, signs, orderings) are e3nn's, so e3nn serves as an independent reference.
"""

from mlip.o3.constants import cached_constant
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
    "angles_to_matrix",
    "cached_constant",
    "matrix_to_angles",
    "so3_generators",
    "spherical_harmonics",
    "wigner_3j",
    "wigner_D",
]
