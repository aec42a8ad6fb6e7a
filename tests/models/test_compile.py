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


def test_compile_energies_passes_the_cpu_workaround(monkeypatch):
    """Inductor gets ``cpp.threads=1`` (torch 2.13 miscompiles multi-threaded scatter-adds), also when a
    ``mode`` is given (turned into its options) or options of the caller's own; other backends get
    their arguments unchanged."""
    calls = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: calls.append(kwargs) or fn)
    model = create("mace", species=["H"], hidden_irreps="4x0e", max_ell=1, num_interactions=1, seed=0)
    model.compile_energies()
    model.compile_energies(mode="max-autotune", options={"trace.enabled": True})
    model.compile_energies(backend="eager")
    assert calls[0] == {"dynamic": True, "options": {"cpp.threads": 1}}
    assert calls[1]["options"]["cpp.threads"] == 1 and calls[1]["options"]["max_autotune"] is True
    assert calls[1]["options"]["trace.enabled"] is True and "mode" not in calls[1]
    assert calls[2] == {"dynamic": True, "backend": "eager"}
