"""Small float64 models and structures shared by the model tests (kept tiny: the suite runs on 2 cores)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from mlip.data.atomic_data import from_atoms
from mlip.data.neighbors import add_neighbors
from mlip.models import create

R_MAX = 3.0
SPECIES = [1, 6, 8]

# name -> (registered model, tiny hyperparameters)
CONFIGS = {
    "mace-cg": ("mace", dict(hidden_irreps="4x0e+4x1o", max_ell=2, correlation=3, radial_mlp=[8])),
    "mace-gaunt": (
        "mace",
        dict(hidden_irreps="4x0e+4x1o", max_ell=2, correlation=3, radial_mlp=[8], product="gaunt"),
    ),
    "nequip": ("nequip", dict(num_features=4, num_layers=2, lmax=2, radial_mlp=[8])),
    "gridnet": ("gridnet", dict(channels=4, num_layers=2, lmax=2, num_splines=8)),
}


def build(name: str, dtype: torch.dtype = torch.float64, **overrides) -> torch.nn.Module:
    kind, hp = CONFIGS[name]
    hp = {**hp, "r_max": R_MAX, "avg_num_neighbors": 4.0, "e0s": [-1.0, -2.0, -3.0], **overrides}
    return create(kind, species=SPECIES, dtype=dtype, seed=0, **hp)


def ethanol() -> Atoms:
    return molecule("CH3CH2OH")


def triclinic() -> Atoms:
    """Six atoms (H, C, O) in a skewed periodic cell shorter than two cutoffs (several images)."""
    rng = np.random.default_rng(3)
    cell = np.array([[3.6, 0.0, 0.0], [0.7, 3.4, 0.0], [-0.5, 0.4, 3.8]])
    frac = np.array(
        [
            [0.1, 0.1, 0.1],
            [0.5, 0.2, 0.3],
            [0.2, 0.6, 0.5],
            [0.7, 0.7, 0.2],
            [0.4, 0.4, 0.8],
            [0.85, 0.3, 0.7],
        ]
    )
    frac = frac + rng.normal(scale=0.02, size=frac.shape)
    return Atoms(numbers=[1, 6, 8, 1, 6, 1], scaled_positions=frac, cell=cell, pbc=True)


def record(atoms: Atoms, cutoff: float = R_MAX) -> dict[str, torch.Tensor]:
    return add_neighbors(from_atoms(atoms), cutoff)


@pytest.fixture(params=sorted(CONFIGS))
def model_name(request) -> str:
    return request.param


@pytest.fixture
def kit() -> SimpleNamespace:
    """The helpers above, for test modules (``--import-mode=importlib`` cannot import conftest)."""
    return SimpleNamespace(
        CONFIGS=CONFIGS,
        R_MAX=R_MAX,
        SPECIES=SPECIES,
        build=build,
        ethanol=ethanol,
        triclinic=triclinic,
        record=record,
    )
