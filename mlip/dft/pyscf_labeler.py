"""Kohn-Sham DFT energies and forces of molecules with PySCF (closed or open shell, no periodicity).

Units at the boundary: PySCF works in Hartree and Bohr; :func:`label` returns eV and eV/Å (ASE's
CODATA constants), and the raw energy in Hartree for bit-level comparison.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class DFTSettings:
    """Level of theory and numerics of one PySCF calculation."""

    xc: str = "PBE"  # exchange-correlation functional (PySCF/libxc name); rMD17 used PBE
    basis: str = "def2-SVP"  # Gaussian basis set; rMD17 used def2-SVP
    grid_level: int = 3  # PySCF DFT integration grid level (0-9)
    conv_tol: float = 1e-9  # SCF energy convergence threshold, Hartree
    max_cycle: int = 100  # SCF iterations before giving up
    density_fit: bool = False  # RI-J density fitting (faster for larger molecules, ~1e-5 Ha error)
    charge: int = 0  # total charge, e
    spin: int = 0  # 2S (number of unpaired electrons); > 0 uses unrestricted Kohn-Sham

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class SCFNotConverged(RuntimeError):
    """The SCF did not reach ``conv_tol`` within ``max_cycle`` iterations."""


def label(numbers: np.ndarray, positions: np.ndarray, settings: DFTSettings) -> dict[str, object]:
    """Energy and forces of one molecule.

    Args:
        numbers: ``[N]`` atomic numbers.
        positions: ``[N, 3]`` Å.
        settings: level of theory.

    Returns:
        ``energy`` (eV), ``forces`` ``[N, 3]`` (eV/Å), ``energy_hartree`` and ``scf_cycles``.
    """
    from ase.units import Bohr, Hartree
    from pyscf import dft, gto

    mol = gto.M(
        atom=[(int(z), tuple(map(float, r))) for z, r in zip(numbers, positions, strict=True)],
        unit="Angstrom",
        basis=settings.basis,
        charge=settings.charge,
        spin=settings.spin,
        verbose=0,
    )
    mf = dft.UKS(mol) if settings.spin else dft.RKS(mol)
    if settings.density_fit:
        mf = mf.density_fit()
    mf.xc = settings.xc
    mf.grids.level = settings.grid_level
    mf.conv_tol = settings.conv_tol
    mf.max_cycle = settings.max_cycle
    cycles = {"n": 0}
    mf.callback = lambda env: cycles.__setitem__("n", cycles["n"] + 1)
    energy = mf.kernel()
    if not mf.converged:
        raise SCFNotConverged(f"SCF not converged in {settings.max_cycle} cycles (last E = {energy} Ha)")
    gradient = mf.nuc_grad_method().kernel()
    return {
        "energy": float(energy) * Hartree,
        "forces": -np.asarray(gradient) * Hartree / Bohr,
        "energy_hartree": float(energy),
        "scf_cycles": cycles["n"],
    }


def set_worker_threads(threads: int) -> None:
    """Limit this process to ``threads`` OpenMP/BLAS threads (call before PySCF runs anything)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    from pyscf import lib

    lib.num_threads(threads)
