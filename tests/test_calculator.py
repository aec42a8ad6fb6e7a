"""The ASE calculator: results equal the model's, caching, optimizers, cell filter, MD, batching, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.filters import FrechetCellFilter
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS, FIRE

from mlip.calculator import MLIPCalculator
from mlip.data.atomic_data import DataError
from mlip.testing import tiny_mace

SPECIES = [1, 6, 8]


@pytest.fixture(scope="module")
def model():
    return tiny_mace(SPECIES, max_ell=2, avg_num_neighbors=4.0, e0s=[-1.0, -2.0, -3.0])


def periodic() -> Atoms:
    atoms = bulk("C", "diamond", a=3.6)
    atoms.set_cell(
        atoms.cell.array + np.array([[0.0, 0.1, 0.0], [0.05, 0.0, 0.0], [0.0, 0.0, 0.1]]), scale_atoms=True
    )
    atoms.rattle(0.05, seed=1)
    return atoms


def test_results_match_model_and_are_cached(model, monkeypatch):
    atoms = periodic()
    atoms.calc = MLIPCalculator(model, device="cpu")
    calls = []
    original = atoms.calc.model.forward
    monkeypatch.setattr(atoms.calc.model, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    e, f, s, ea = (
        atoms.get_potential_energy(),
        atoms.get_forces(),
        atoms.get_stress(),
        atoms.get_potential_energies(),
    )
    assert len(calls) == 1  # one evaluation fills everything; ASE's check_state caches
    assert s.shape == (6,) and f.shape == (len(atoms), 3)
    assert np.isclose(ea.sum(), e) and np.isclose(atoms.get_potential_energy(force_consistent=True), e)
    atoms.get_forces()
    assert len(calls) == 1
    atoms.positions[0, 0] += 0.01
    atoms.get_forces()
    assert len(calls) == 2
    assert np.allclose(calculate_numerical_forces(atoms, eps=1e-5), atoms.get_forces(), atol=1e-6)
    assert np.allclose(calculate_numerical_stress(atoms, eps=1e-5), atoms.get_stress(), atol=1e-6)


def test_molecule_has_no_stress(model):
    atoms = molecule("CH3CH2OH")
    atoms.calc = MLIPCalculator(model, device="cpu")
    assert np.isfinite(atoms.get_forces()).all()
    from ase.calculators.calculator import PropertyNotImplementedError

    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


def test_optimizers_cell_filter_and_md(model):
    for optimizer in (BFGS, FIRE):
        atoms = molecule("H2O")
        atoms.calc = MLIPCalculator(model, device="cpu")
        e0 = atoms.get_potential_energy()
        optimizer(atoms, logfile=None).run(fmax=0.05, steps=8)
        assert atoms.get_potential_energy() <= e0 + 1e-12
    crystal = periodic()
    crystal.calc = MLIPCalculator(model, device="cpu")
    e0 = crystal.get_potential_energy()
    cell0 = crystal.cell.array.copy()
    converged = BFGS(FrechetCellFilter(crystal), logfile=None).run(fmax=1e-4, steps=6)
    assert crystal.get_potential_energy() < e0 and not np.allclose(crystal.cell.array, cell0)
    assert converged or np.abs(crystal.get_stress()).max() < 1.0
    md = molecule("CH3CH2OH")
    md.calc = MLIPCalculator(model, device="cpu")
    dyn = VelocityVerlet(md, timestep=0.25 * 1e-15 * 1e15 * 0.09822694788464063)  # 0.25 fs in ASE units
    start = md.get_total_energy()
    dyn.run(10)
    assert abs(md.get_total_energy() - start) < 1e-3


def test_calculate_many_equals_single(model):
    structures = [molecule("H2O"), periodic(), molecule("CH3CH2OH"), periodic()]
    structures[3].rattle(0.02, seed=4)
    calc = MLIPCalculator(model, device="cpu")
    many = calc.calculate_many(structures, max_atoms=12)
    for atoms, result in zip(structures, many, strict=True):
        atoms.calc = MLIPCalculator(model, device="cpu")
        assert np.isclose(result["energy"], atoms.get_potential_energy(), atol=1e-10)
        assert np.allclose(result["forces"], atoms.get_forces(), atol=1e-10)
        assert ("stress" in result) == atoms.pbc.all()
        if "stress" in result:
            assert np.allclose(result["stress"], atoms.get_stress(), atol=1e-10)


def test_load_from_path_and_dtype(model, tmp_path):
    path = tmp_path / "m.safetensors"
    model.save(path)
    atoms = molecule("H2O")
    atoms.calc = MLIPCalculator(path, device="cpu", dtype=torch.float32)
    assert atoms.calc.model.dtype == torch.float32
    reference = molecule("H2O")
    reference.calc = MLIPCalculator(model, device="cpu")
    assert np.isclose(atoms.get_potential_energy(), reference.get_potential_energy(), atol=1e-4)


def test_errors_and_warnings(model):
    calc = MLIPCalculator(model, device="cpu")
    with pytest.raises(DataError, match="element.*N.*not in the model's species"):
        calc.get_potential_energy(molecule("NH3"))
    bad = molecule("H2O")
    bad.positions[1, 0] = np.nan
    with pytest.raises(DataError, match="not finite"):
        calc.get_potential_energy(bad)
    no_cell = molecule("H2O")
    no_cell.pbc = True
    with pytest.raises(DataError, match="without a cell"):
        calc.get_potential_energy(no_cell)
    close = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.2]])
    with pytest.warns(RuntimeWarning, match="apart"):
        calc.get_potential_energy(close)
