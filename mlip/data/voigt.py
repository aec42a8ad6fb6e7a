"""Stress in ASE's Voigt order ``(xx, yy, zz, yz, xz, xy)`` <-> the symmetric ``[3, 3]`` matrix."""

from __future__ import annotations

import numpy as np


def voigt_to_matrix(voigt: np.ndarray) -> np.ndarray:
    """Six values in ASE's Voigt order -> the symmetric ``[3, 3]`` matrix (same units)."""
    xx, yy, zz, yz, xz, xy = np.asarray(voigt)
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def matrix_to_voigt(matrix: np.ndarray) -> np.ndarray:
    """A ``[3, 3]`` matrix -> its six upper-triangle values in ASE's Voigt order (same units)."""
    s = np.asarray(matrix)
    return np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
