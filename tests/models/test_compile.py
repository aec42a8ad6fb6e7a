"""``EquivariantModel.compile_energies``: the torch.compile'd model gives the eager energies and forces."""

import torch
from ase.build import molecule

from mlip.data.atomic_data import from_atoms
from mlip.data.neighbors import add_neighbors
from mlip.models import create


def test_compiled_model_equals_eager():
    model = create(
        "mace",
        species=["H", "C", "O"],
        hidden_irreps="4x0e+4x1o",
        max_ell=1,
        correlation=2,
        num_interactions=1,
        r_max=4.0,
        seed=0,
        dtype=torch.float64,
    ).eval()
    data = add_neighbors(from_atoms(molecule("CH3CH2OH")), 4.0)
    eager = model(data)
    compiled = model.compile_energies()(data)
    torch.testing.assert_close(compiled["energy"], eager["energy"], rtol=0, atol=1e-10)
    torch.testing.assert_close(compiled["forces"], eager["forces"], rtol=0, atol=1e-10)
