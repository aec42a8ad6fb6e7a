"""torch-sim drives our models: its own interface validation, NVT MD, FIRE with a cell filter, and
autobatching, all matching our ASE calculator (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

ts = pytest.importorskip("torch_sim", reason="torch-sim not installed (pip install 'mlip-torch[torchsim]')")

from mlip.calculator import MLIPCalculator  # noqa: E402
from mlip.interop.torch_sim import TorchSimModel  # noqa: E402
from mlip.models import create  # noqa: E402

SPECIES = [13, 14, 26, 29]


@pytest.fixture(scope="module")
def potential():
    return create(
        "mace",
        species=SPECIES,
        dtype=torch.float64,
        seed=0,
        hidden_irreps="8x0e+8x1o",
        max_ell=2,
        correlation=2,
        num_interactions=2,
        r_max=4.0,
        radial_mlp=[8],
        num_bessel=4,
        avg_num_neighbors=20.0,
        scale=0.1,
    )


def crystals():
    from ase.build import bulk

    out = [
        bulk("Si", "diamond", a=5.43, cubic=True),
        bulk("Fe", "bcc", a=2.87, cubic=True).repeat([2, 2, 1]),
        bulk("Cu", "fcc", a=3.61).repeat([2, 2, 2]),
        bulk("Al", "fcc", a=4.05, cubic=True),
    ]
    for i, atoms in enumerate(out):
        atoms.rattle(0.05, seed=i)
    return out


def calculator_results(potential, atoms_list):
    calc = MLIPCalculator(potential, device="cpu", dtype=torch.float64)
    out = []
    for atoms in atoms_list:
        atoms = atoms.copy()
        atoms.calc = calc
        out.append((atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(voigt=False)))
    return out


def test_validate_model_outputs(potential):
    from torch_sim.models.interface import validate_model_outputs

    validate_model_outputs(TorchSimModel(potential), torch.device("cpu"), torch.float64)


@pytest.mark.parametrize("neighbor_list", ["mlip", "torch_sim"])
def test_batched_outputs_equal_the_calculator(potential, neighbor_list):
    atoms_list = crystals()
    model = TorchSimModel(potential, neighbor_list=neighbor_list)
    out = model(ts.io.atoms_to_state(atoms_list, model.device, model.dtype))
    counts = [len(a) for a in atoms_list]
    forces = torch.split(out["forces"], counts)
    for i, (energy, f, stress) in enumerate(calculator_results(potential, atoms_list)):
        assert abs(out["energy"][i].item() - energy) < 1e-10
        np.testing.assert_allclose(forces[i].numpy(), f, atol=1e-10)
        np.testing.assert_allclose(out["stress"][i].numpy(), stress, atol=1e-12)


def test_nvt_langevin_batch(potential):
    atoms_list = crystals()
    model = TorchSimModel(potential)
    state = ts.io.atoms_to_state(atoms_list, model.device, model.dtype)
    final = ts.integrate(
        state, model, integrator=ts.nvt_langevin, n_steps=10, temperature=300.0, timestep=0.001
    )
    moved = ts.io.state_to_atoms(final)
    assert max(np.abs(a.positions - b.positions).max() for a, b in zip(moved, atoms_list, strict=True)) > 1e-4
    for i, (energy, forces, _) in enumerate(calculator_results(potential, moved)):
        assert abs(final.energy[i].item() - energy) < 1e-8
        counts = final.system_idx == i
        np.testing.assert_allclose(final.forces[counts].numpy(), forces, atol=1e-8)


@pytest.mark.parametrize("batched", [False, True])
def test_fire_with_cell_filter_lowers_energy(potential, batched):
    """FIRE with the Frechet cell filter, in one batch or through the in-flight autobatcher."""
    atoms_list = crystals()
    model = TorchSimModel(potential)
    state = ts.io.atoms_to_state(atoms_list, model.device, model.dtype)
    start = model(state)["energy"]
    autobatcher = (
        ts.InFlightAutoBatcher(model, memory_scales_with="n_atoms", max_memory_scaler=12.0)
        if batched
        else False
    )
    final = ts.optimize(state, model, optimizer=ts.frechet_cell_fire, max_steps=30, autobatcher=autobatcher)
    assert final.n_systems == len(atoms_list)
    relaxed = ts.io.state_to_atoms(final)
    assert any(not np.allclose(a.cell, b.cell) for a, b in zip(relaxed, atoms_list, strict=True))
    results = calculator_results(potential, relaxed)
    for i, (energy, forces, _) in enumerate(results):
        assert energy < start[i].item()
        assert abs(final.energy[i].item() - energy) < 1e-8
        np.testing.assert_allclose(final.forces[final.system_idx == i].numpy(), forces, atol=1e-8)


def test_autobatching_equals_one_batch(potential):
    """NVE from rest with a binning autobatcher (forced into several batches) equals the one-batch run,
    and so does torch-sim's ``static`` runner."""
    atoms_list = crystals()
    model = TorchSimModel(potential)
    state = ts.io.atoms_to_state(atoms_list, model.device, model.dtype)
    kwargs = dict(integrator=ts.nve, n_steps=5, temperature=0.0, timestep=0.002)
    whole = ts.integrate(state, model, **kwargs)
    batcher = ts.BinningAutoBatcher(model, memory_scales_with="n_atoms", max_memory_scaler=12.0)
    batched = ts.integrate(state, model, autobatcher=batcher, **kwargs)
    assert len(batcher.index_bins) > 1
    for a, b, start in zip(
        ts.io.state_to_atoms(whole), ts.io.state_to_atoms(batched), atoms_list, strict=True
    ):
        assert np.abs(a.positions - start.positions).max() > 1e-5
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-10)
    static = ts.static(
        state,
        model,
        autobatcher=ts.BinningAutoBatcher(model, memory_scales_with="n_atoms", max_memory_scaler=12.0),
    )
    for i, (energy, _, _) in enumerate(calculator_results(potential, atoms_list)):
        assert abs(static[i]["potential_energy"].item() - energy) < 1e-10
