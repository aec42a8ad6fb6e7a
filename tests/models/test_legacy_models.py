"""Model files saved by the code before issue 16's refactor (``tests/models/legacy``, written by its
``make_legacy_models.py`` at commit 2b51eb3) still load and give the energies, forces and stress stored
beside them (float64, eval mode).

Those outputs were computed with the Bessel frequencies rounded to float32 (the code then built them in
float32 before casting a float64 model); the test rounds them the same way, so the comparison stays exact,
and checks the unrounded model within the size of that rounding."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from ase import Atoms
from safetensors.torch import load_file

from mlip.data.atomic_data import from_atoms
from mlip.data.neighbors import add_neighbors
from mlip.layers.radial import BesselBasis
from mlip.models import load

LEGACY = Path(__file__).parent / "legacy"
NAMES = ["mace-cg", "mace-gaunt", "nequip", "gridnet-gaunt", "gridnet-swiglu"]
R_MAX = 3.0


def structure(expected: dict[str, torch.Tensor], name: str) -> Atoms:
    return Atoms(
        numbers=expected[f"{name}.numbers"].numpy(),
        positions=expected[f"{name}.positions"].numpy(),
        cell=expected[f"{name}.cell"].numpy(),
        pbc=expected[f"{name}.pbc"].numpy(),
    )


@pytest.mark.parametrize("name", NAMES)
def test_legacy_model_file_loads_with_identical_outputs(name):
    expected = load_file(str(LEGACY / "expected.safetensors"))
    exact = load(LEGACY / f"{name}.safetensors").eval()
    model = load(LEGACY / f"{name}.safetensors").eval()
    assert model.dtype == torch.float64
    for basis in (m for m in model.modules() if isinstance(m, BesselBasis)):
        legacy = torch.arange(1, basis.num_basis + 1) * math.pi / basis.r_max  # float32, as before
        basis.frequencies.copy_(legacy.to(torch.float64))
    for sname in ("ethanol", "box"):
        periodic = sname == "box"
        data = add_neighbors(from_atoms(structure(expected, sname)), R_MAX)
        out = model(data, compute_forces=True, compute_stress=periodic)
        for key in ("energy", "forces", "stress") if periodic else ("energy", "forces"):
            torch.testing.assert_close(
                out[key].detach(), expected[f"{name}.{sname}.{key}"], rtol=1e-12, atol=1e-12
            )
        unrounded = exact(data, compute_forces=True, compute_stress=periodic)
        torch.testing.assert_close(
            unrounded["energy"].detach(), expected[f"{name}.{sname}.energy"], rtol=1e-6, atol=1e-6
        )
