"""Small LJ argon systems and a tiny float64 MACE model shared by the MD tests."""

import numpy as np
import pytest
import torch
from ase.build import bulk

from mlip import testing
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


@pytest.fixture
def tiny_mace():
    """An untrained float64 MACE for H, C, O (4 channels, cutoff 3 Å), its energy scaled down (``scale``
    0.05 eV) so that random weights give gentle forces (< 0.3 eV/Å on ethanol) and MD stays stable."""
    return testing.tiny_mace(max_ell=2, correlation=3, avg_num_neighbors=4.0, scale=0.05)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
