"""Small LJ argon systems and a minimal ASE calculator wrapping a Potential, shared by the MD tests."""

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes

from mlip.data import from_atoms
from mlip.data.neighbors import add_neighbors
from mlip.models.classical import LennardJones


@pytest.fixture
def argon():
    """32-atom fcc argon (Å), slightly perturbed."""
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)
    atoms.positions += np.random.default_rng(0).normal(scale=0.05, size=atoms.positions.shape)
    return atoms


@pytest.fixture
def lj():
    return LennardJones(epsilon=0.0104, sigma=3.4, cutoff=6.0)


class PotentialCalculator(Calculator):
    """Test-local ASE calculator: energy and forces of a Potential (float64)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, potential, **kwargs):
        super().__init__(**kwargs)
        self.potential = potential

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        data = add_neighbors(from_atoms(self.atoms, use_calculator_labels=False), self.potential.cutoff)
        out = self.potential(data, compute_forces=True)
        self.results = {"energy": float(out["energy"][0].detach()), "forces": out["forces"].detach().numpy()}


@pytest.fixture
def calculator_factory():
    return PotentialCalculator


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
