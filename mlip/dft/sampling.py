"""Configurations of one molecule for DFT labelling.

Normal modes (:func:`sample_molecule`): the reference comes from a SMILES string (rdkit embedding +
MMFF94 optimisation) or a structure file; the modes come from a finite-difference MMFF94 Hessian; each
sample draws every mode's coordinate from the classical Boltzmann distribution of a harmonic oscillator
at temperature ``T``: ``q_k ~ N(0, kT / ω_k²)`` in mass-weighted coordinates, ``Δx = M^{-1/2} Σ_k q_k v_k``.
Soft modes are stiffened to ``min_wavenumber`` so torsions do not tear the molecule apart in the linear
approximation. MD (:func:`md_samples`): snapshots of a Langevin trajectory (``mlip.md``) run with an
existing trained potential.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mlip.errors import UserInputError

_KB_KCAL = 0.0019872043  # Boltzmann constant, kcal/mol/K
# sqrt(kcal/mol / (Å² amu)) in rad/s, and the speed of light in cm/s: λ -> wavenumber (cm⁻¹)
_OMEGA_UNIT = math.sqrt(4184.0 / 6.02214076e23 / 1e-20 / 1.66053906660e-27)
_C_CM = 2.99792458e10


def molecule_from_smiles(smiles: str, seed: int = 0) -> Any:
    """An rdkit ``Mol`` with explicit hydrogens and one MMFF94-optimised 3D conformer."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise UserInputError(f"rdkit cannot parse the SMILES {smiles!r}")
    mol = Chem.AddHs(mol)
    if AllChem.EmbedMolecule(mol, randomSeed=seed) != 0:
        raise UserInputError(f"rdkit could not embed a 3D conformer for {smiles!r}")
    AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    return mol


def atoms_from_smiles(smiles: str, seed: int = 0) -> Any:
    """An ``ase.Atoms`` (positions in Å) of :func:`molecule_from_smiles`'s conformer."""
    from ase import Atoms

    mol = molecule_from_smiles(smiles, seed)
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    return Atoms(numbers=numbers, positions=mol.GetConformer().GetPositions())


def molecule_from_atoms(atoms: Any) -> Any:
    """An rdkit ``Mol`` (bonds perceived from the geometry) for an ``ase.Atoms`` molecule."""
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds

    symbols = atoms.get_chemical_symbols()
    lines = [
        f"{s} {x:.10f} {y:.10f} {z:.10f}\n" for s, (x, y, z) in zip(symbols, atoms.positions, strict=True)
    ]
    block = f"{len(atoms)}\n\n" + "".join(lines)
    mol = Chem.MolFromXYZBlock(block)
    rdDetermineBonds.DetermineBonds(mol, charge=0)
    return mol


def mmff_hessian(mol: Any, step: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """MMFF94 Hessian by central second differences of the energy.

    (Energies, not gradients: rdkit's ``CalcGrad(pos)`` is not the exact derivative away from the
    force field's own positions.) Returns the conformer positions ``[N, 3]`` (Å) and the Hessian
    ``[3N, 3N]`` (kcal/mol/Å²).
    """
    from rdkit.Chem import AllChem

    ff = AllChem.MMFFGetMoleculeForceField(mol, AllChem.MMFFGetMoleculeProperties(mol))
    ff.Initialize()
    x0 = np.array(mol.GetConformer().GetPositions(), dtype=np.float64).ravel()
    steps = step * np.eye(x0.size)

    def energy(x: np.ndarray) -> float:
        return ff.CalcEnergy(x.tolist())

    hessian = np.empty((x0.size, x0.size))
    for i in range(x0.size):
        for j in range(i, x0.size):
            a, b = steps[i], steps[j]
            value = energy(x0 + a + b) - energy(x0 + a - b) - energy(x0 - a + b) + energy(x0 - a - b)
            hessian[i, j] = hessian[j, i] = value / (4 * step * step)
    return x0.reshape(-1, 3), hessian


def normal_modes(
    hessian: np.ndarray, masses: np.ndarray, num_rigid: int = 6
) -> tuple[np.ndarray, np.ndarray]:
    """Vibrational modes of a Hessian ``[3N, 3N]`` (kcal/mol/Å²) with ``masses`` ``[N]`` (amu).

    Drops the ``num_rigid`` modes of smallest |eigenvalue| (translations, rotations). Returns eigenvalues
    ``[3N - num_rigid]`` (kcal/mol/Å²/amu, ascending) and mass-weighted eigenvectors ``[3N, 3N - num_rigid]``.
    """
    inv_sqrt_m = np.repeat(masses, 3) ** -0.5
    eigenvalues, vectors = np.linalg.eigh(hessian * inv_sqrt_m[:, None] * inv_sqrt_m[None, :])
    keep = np.sort(np.argsort(np.abs(eigenvalues))[num_rigid:])
    return eigenvalues[keep], vectors[:, keep]


def wavenumbers(eigenvalues: np.ndarray) -> np.ndarray:
    """Wavenumbers (cm⁻¹) of mass-weighted Hessian eigenvalues (kcal/mol/Å²/amu); < 0: imaginary."""
    return np.sign(eigenvalues) * np.sqrt(np.abs(eigenvalues)) * _OMEGA_UNIT / (2 * math.pi * _C_CM)


def thermal_displacements(
    positions: np.ndarray,
    masses: np.ndarray,
    hessian: np.ndarray,
    count: int,
    temperature: float,
    seed: int,
    min_wavenumber: float = 200.0,
) -> np.ndarray:
    """``count`` configurations ``[count, N, 3]`` (Å) displaced along the normal modes at ``temperature`` (K).

    Each mode coordinate is Gaussian with variance ``kT/ω²``; modes softer than ``min_wavenumber`` (cm⁻¹),
    and imaginary ones, use ``min_wavenumber``. Deterministic for a given ``seed``.
    """
    eigenvalues, vectors = normal_modes(hessian, masses)
    floor = (min_wavenumber * 2 * math.pi * _C_CM / _OMEGA_UNIT) ** 2
    stiffness = np.maximum(eigenvalues, floor)
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((count, stiffness.size)) * np.sqrt(_KB_KCAL * temperature / stiffness)
    displacement = (q @ vectors.T) * np.repeat(masses, 3) ** -0.5
    return positions[None] + displacement.reshape(count, -1, 3)


def sample_molecule(
    mol: Any, count: int, temperature: float, seed: int, min_wavenumber: float = 200.0
) -> list[Any]:
    """``count`` ``ase.Atoms`` of ``mol`` (rdkit, with a 3D conformer) at ``temperature`` (K).

    Each carries ``info["config_id"]`` (0..count-1) and ``info["temperature"]``, and no labels.
    """
    from ase import Atoms

    numbers = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    reference = Atoms(numbers=numbers)
    positions, hessian = mmff_hessian(mol)
    samples = thermal_displacements(
        positions, reference.get_masses(), hessian, count, temperature, seed, min_wavenumber
    )
    out = []
    for i, x in enumerate(samples):
        atoms = Atoms(numbers=numbers, positions=x)
        atoms.info["config_id"] = i
        atoms.info["temperature"] = float(temperature)
        out.append(atoms)
    return out


def md_samples(
    atoms: Any,
    model_path: str,
    count: int,
    temperature: float,
    seed: int,
    interval: int = 20,
    dt: float = 0.5,
    friction: float = 0.01,
) -> list[Any]:
    """``count`` snapshots, ``interval`` steps apart, of Langevin MD (``dt`` fs, ``friction`` 1/fs) at
    ``temperature`` (K) from ``atoms`` with the trained potential at ``model_path`` (float64).

    Each carries ``info["config_id"]`` and ``info["temperature"]``, and no labels.
    """
    import torch
    from ase import Atoms

    from mlip import md, models

    potential = models.load(model_path, dtype=torch.float64).eval()
    state = md.from_atoms(atoms, seed=seed)
    md.maxwell_boltzmann(state, temperature)
    forcefield = md.ForceField(potential)
    md.langevin.init(state, forcefield, temperature=temperature, friction=friction)
    out = []
    for i in range(count):
        for _ in range(interval):
            md.langevin.step(state, forcefield, dt)
        snapshot = Atoms(numbers=atoms.numbers, positions=state.positions.detach().cpu().numpy().copy())
        snapshot.info["config_id"] = i
        snapshot.info["temperature"] = float(temperature)
        out.append(snapshot)
    return out
