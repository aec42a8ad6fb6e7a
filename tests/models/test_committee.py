"""Committees: save/load, mean and std equal the members', forces of the mean by finite differences,
one pass per member in batched evaluation, and `train.committee` writing a committee file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.calculators.fd import calculate_numerical_forces

from mlip.calculator import MLIPCalculator
from mlip.models import Committee, ModelFileError, create, load, save
from mlip.testing import tiny_mace

SPECIES = [1, 6, 8]


def _member(seed: int):
    return tiny_mace(
        SPECIES, num_interactions=1, avg_num_neighbors=4.0, seed=seed, e0s=[-1.0 - seed, -2.0, -3.0]
    )


@pytest.fixture(scope="module")
def members():
    return [_member(seed) for seed in range(3)]


def _periodic():
    atoms = bulk("C", "diamond", a=3.6) * (1, 1, 2)
    atoms.rattle(0.05, seed=1)
    atoms.numbers[1] = 8
    return atoms


def _member_results(members, atoms):
    out = []
    for m in members:
        a = atoms.copy()
        a.calc = MLIPCalculator(m, device="cpu")
        out.append((a.get_potential_energy(), a.get_forces(), a.get_stress()))
    return out


def test_mean_and_std_equal_the_members(members):
    atoms = _periodic()
    atoms.calc = MLIPCalculator(Committee(members), device="cpu")
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    each = _member_results(members, atoms)
    energies = np.array([e for e, _, _ in each])
    member_forces = np.stack([f for _, f, _ in each])
    assert energies.std() > 1e-3  # the members differ, so the spread is a real check
    assert energy == pytest.approx(energies.mean(), abs=1e-12)
    np.testing.assert_allclose(forces, member_forces.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(stress, np.mean([s for _, _, s in each], 0), rtol=0, atol=1e-12)
    results = atoms.calc.results
    assert results["energy_std"] == pytest.approx(energies.std(), abs=1e-12)
    expected = np.sqrt(((member_forces - member_forces.mean(0)) ** 2).sum(-1).mean(0))
    assert results["forces_std"].shape == (len(atoms),)
    np.testing.assert_allclose(results["forces_std"], expected, rtol=0, atol=1e-12)
    assert results["stress_std"] > 0


def test_identical_members_have_zero_std(members):
    atoms = _periodic()
    atoms.calc = MLIPCalculator(Committee([members[0], _member(0)]), device="cpu")
    atoms.get_potential_energy()
    assert atoms.calc.results["energy_std"] == 0.0
    assert np.all(atoms.calc.results["forces_std"] == 0.0)


def test_forces_are_minus_the_gradient_of_the_mean_energy(members):
    atoms = molecule("CH3OH")
    atoms.rattle(0.05, seed=2)
    atoms.calc = MLIPCalculator(Committee(members), device="cpu")
    numerical = calculate_numerical_forces(atoms, eps=1e-5)
    np.testing.assert_allclose(atoms.get_forces(), numerical, rtol=0, atol=1e-7)


def test_save_load_round_trip_and_corruption(members, tmp_path):
    path = tmp_path / "committee.model"
    save(Committee(members), path)
    loaded = load(path, dtype=torch.float64)
    assert isinstance(loaded, Committee) and len(loaded) == 3
    atoms = _periodic()
    atoms.calc = MLIPCalculator(Committee(members), device="cpu")
    expected = atoms.get_forces(), atoms.calc.results["forces_std"]
    atoms.calc = MLIPCalculator(path, device="cpu")
    np.testing.assert_array_equal(atoms.get_forces(), expected[0])
    np.testing.assert_array_equal(atoms.calc.results["forces_std"], expected[1])
    with pytest.raises(ModelFileError, match="holds a 'committee' model"):
        load(path, expected="mace")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # a byte of the last tensor
    bad = tmp_path / "bad.model"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256"):
        load(bad)


def test_compile_refuses_a_committee(members, tmp_path, capsys):
    from mlip.cli import main

    path = tmp_path / "committee.model"
    save(Committee(members), path)
    assert main(["compile", str(path), "-o", str(tmp_path / "c.pt2")]) == 2
    assert "a committee cannot be compiled" in capsys.readouterr().err
    assert not (tmp_path / "c.pt2").exists()


def test_members_must_know_the_same_species(members):
    other = create("mace", species=[1, 8], hidden_irreps="4x0e", max_ell=1, num_interactions=1, seed=0)
    with pytest.raises(ValueError, match="different species"):
        Committee([members[0], other.double()])
    with pytest.raises(ValueError, match="at least 2"):
        Committee([members[0]])


def test_batched_evaluation_runs_each_member_once(members, monkeypatch):
    committee = Committee(members)
    calc = MLIPCalculator(committee, device="cpu")
    structures = [molecule("CH3OH"), molecule("H2O"), molecule("CO2")]
    for i, a in enumerate(structures):
        a.rattle(0.05, seed=i)
    calls = []
    for m in calc.model.members:
        original = m.forward
        monkeypatch.setattr(m, "forward", lambda *a, _f=original, **k: calls.append(1) or _f(*a, **k))
    batched = calc.calculate_many(structures)
    assert len(calls) == len(members)  # one batch, one pass per member
    for atoms, result in zip(structures, batched, strict=True):
        atoms.calc = MLIPCalculator(committee, device="cpu")
        atoms.get_potential_energy()
        assert result["energy"] == pytest.approx(atoms.calc.results["energy"], abs=1e-10)
        assert result["energy_std"] == pytest.approx(atoms.calc.results["energy_std"], abs=1e-10)
        np.testing.assert_allclose(result["forces_std"], atoms.calc.results["forces_std"], atol=1e-10)
