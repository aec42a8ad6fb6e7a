"""Integrators: exact answers (harmonic oscillator, ASE with MLIPCalculator), conservation, batching,
fixed atoms, FIRE."""

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.md.langevin import Langevin
from ase.md.verlet import VelocityVerlet

from mlip import md
from mlip.calculator import MLIPCalculator
from mlip.md.units import AMU_A2_FS2_TO_EV, FS
from mlip.models.classical import HarmonicPair, LennardJones


def test_verlet_harmonic_oscillator_matches_analytic():
    k, r0, amplitude, dt = 5.0, 1.0, 0.1, 1.0  # eV/Å^2, Å, Å, fs
    atoms = Atoms("H2", positions=[[0, 0, 0], [r0 + amplitude, 0, 0]], masses=[1.0, 1.0])
    state = md.from_atoms(atoms)
    ff = md.ForceField(HarmonicPair(k=k, r0=r0, cutoff=3.0, switch_start=2.5), skin=0.5)
    md.nve.init(state, ff)
    omega = math.sqrt(k / (0.5 * AMU_A2_FS2_TO_EV))  # reduced mass 0.5 amu, rad/fs
    theta = math.acos(1 - 0.5 * (omega * dt) ** 2)  # exact phase advance of velocity Verlet
    for n in range(1, 200):
        md.nve.step(state, ff, dt)
        x = float(state.positions[1, 0] - state.positions[0, 0]) - r0
        assert x == pytest.approx(amplitude * math.cos(n * theta), abs=1e-10)
        assert x == pytest.approx(amplitude * math.cos(n * omega * dt), abs=amplitude * (omega * dt) ** 2 * n)
    assert state.time == pytest.approx(199.0)


def ethanol_box() -> Atoms:
    """Four ethanol molecules (36 atoms) in a periodic 6.5 Å box: contacts across the boundary."""
    one = molecule("CH3CH2OH")
    box = Atoms(cell=[6.5, 6.5, 6.5], pbc=True)
    for shift in ([0.5, 0.5, 0.5], [3.7, 3.6, 0.9], [0.9, 3.8, 3.6], [3.6, 0.8, 3.9]):
        part = one.copy()
        part.translate(np.array(shift) - part.positions.min(axis=0))
        box += part
    return box


def test_native_verlet_equals_ase_velocity_verlet_with_mlip_calculator(tiny_mace):
    atoms = ethanol_box()
    rng = np.random.default_rng(1)
    atoms.set_velocities(rng.normal(scale=0.01, size=(len(atoms), 3)) / FS)  # Å/fs -> ASE units
    state = md.from_atoms(atoms)
    ff = md.ForceField(tiny_mace, skin=0.1)
    md.nve.init(state, ff, remove_com=False)
    atoms.calc = MLIPCalculator(tiny_mace, device="cpu", skin=0.5)
    dyn = VelocityVerlet(atoms, timestep=1.0 * FS)
    for _ in range(15):
        dyn.run(1)
        md.nve.step(state, ff, 1.0)
        np.testing.assert_allclose(state.positions.numpy(), atoms.positions, rtol=0, atol=1e-11)
        np.testing.assert_allclose(state.velocities.numpy(), atoms.get_velocities() * FS, rtol=0, atol=1e-11)
    assert float(state.energy[0]) == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
    assert ff.neighbors.builds > 1, "the test must cross neighbour-list rebuilds"


def test_ase_langevin_with_mlip_calculator_heats_towards_the_target(tiny_mace, monkeypatch):
    atoms = ethanol_box()
    calculator = MLIPCalculator(tiny_mace, device="cpu")
    evaluations = []
    original = calculator.calculate
    monkeypatch.setattr(calculator, "calculate", lambda *a, **k: (evaluations.append(1), original(*a, **k)))
    atoms.calc = calculator
    target, friction = 300.0, 0.1  # K, 1/fs
    rng = np.random.default_rng(0)
    dyn = Langevin(
        atoms, timestep=1.0 * FS, temperature_K=target, friction=friction / FS, fixcm=False, rng=rng
    )
    temperatures = []
    dyn.attach(lambda: temperatures.append(atoms.get_temperature()), interval=1)
    dyn.run(20)
    assert len(evaluations) == 21  # one model evaluation per step (results cached within a step)
    # from 0 K with a gentle model, T(t) ~ target (1 - exp(-2 friction t)): > 95 % after 20 fs;
    # 105 degrees of freedom give ~14 % fluctuations per sample
    assert np.mean(temperatures[-5:]) == pytest.approx(target, rel=0.35)
    assert temperatures[0] < 0.5 * target


def test_nve_drift_with_rebuilding_neighbour_list(argon, lj):
    state = md.from_atoms(argon, seed=3)
    md.maxwell_boltzmann(state, 50.0)
    ff = md.ForceField(lj, skin=0.3)
    md.nve.init(state, ff)
    result = md.simulate(state, ff, md.nve.step, steps=600, dt=5.0)
    assert ff.neighbors.builds > 2, "the test must cross neighbour-list rebuilds"
    drift = result.log.drift(state.num_atoms, equilibration=0.1)  # meV/atom/ps
    assert abs(float(drift[0])) < 1e-3  # = 1e-6 eV/atom/ps
    total = result.log.series("total")[:, 0]
    assert float(total.max() - total.min()) / 32 < 1e-4  # eV/atom fluctuation
    assert float(state.system_sum(state.masses[:, None] * state.velocities).abs().max()) < 1e-12


THERMOSTATS = {
    "langevin": (md.langevin, {"friction": 0.02}),
    "csvr": (md.csvr, {"tau": 50.0}),
    "nhc": (md.nose_hoover, {"tau": 50.0}),
}


@pytest.mark.parametrize("name", sorted(THERMOSTATS))
def test_thermostat_samples_canonical_kinetic_energy(name, argon, lj):
    module, params = THERMOSTATS[name]
    target = 60.0
    state = md.from_atoms([argon] * 4, seed=11)
    md.maxwell_boltzmann(state, target)
    ff = md.ForceField(lj, skin=0.5)
    module.init(state, ff, temperature=target, **params)
    result = md.simulate(state, ff, module.step, steps=500, dt=10.0)
    kinetic = result.log.series("kinetic")[100:]  # [T, B] eV
    mean_target = 0.5 * state.dof * md.units.KB * target  # [B]
    ratio = kinetic / mean_target
    # canonical: <K> = dof kT / 2 and var(K) / <K>^2 = 2 / dof; ~160 independent samples, so the
    # standard errors are ~0.012 (mean) and ~0.11 (variance ratio): 4-sigma tolerances
    assert float(ratio.mean()) == pytest.approx(1.0, abs=0.05)
    relative_variance = float(((ratio - 1.0) ** 2).mean() * state.dof.mean() / 2)
    assert relative_variance == pytest.approx(1.0, abs=0.45)
    if name == "nhc":
        conserved = md.nose_hoover.conserved_energy(state)
        assert torch.isfinite(conserved).all()


def test_nhc_and_csvr_conserve_their_extended_energy(argon, lj):
    for module, params in (THERMOSTATS["nhc"], THERMOSTATS["csvr"]):
        state = md.from_atoms(argon, seed=2)
        md.maxwell_boltzmann(state, 20.0)
        ff = md.ForceField(lj, skin=0.5)
        module.init(state, ff, temperature=80.0, **params)

        def extended(s, m=module):
            if m is md.nose_hoover:
                return float(md.nose_hoover.conserved_energy(s)[0])
            return float(s.kinetic_energy()[0] + s.energy[0] + s.variables.heat[0])

        start, kinetic0 = extended(state), float(state.kinetic_energy()[0])
        for _ in range(200):
            module.step(state, ff, 5.0)
        heated = float(state.kinetic_energy()[0]) - kinetic0
        assert heated > 0.05  # eV: heated towards 80 K by the thermostat
        assert extended(state) == pytest.approx(start, abs=5e-4)  # balanced to 1 % of the heat


@pytest.mark.parametrize("mode", ["isotropic", "full"])
def test_npt_holds_target_pressure(mode, argon, lj):
    target_gpa = 0.05
    state = md.from_atoms([argon] * 2, seed=5)
    md.maxwell_boltzmann(state, 60.0)
    ff = md.ForceField(lj, skin=0.5)
    md.npt.init(
        state,
        ff,
        temperature=60.0,
        pressure=target_gpa / md.units.EV_A3_TO_GPA,
        mode=mode,
        tau_t=100.0,
        tau_p=300.0,
        compressibility=150.0,
    )
    volume0 = state.volume().clone()
    result = md.simulate(state, ff, md.npt.step, steps=500, dt=10.0)
    pressure = result.log.series("pressure")[200:]  # GPa
    assert float(pressure.mean()) == pytest.approx(target_gpa, abs=0.02)
    assert bool(((state.volume() / volume0 - 1).abs() > 0.01).all())  # the barostat moved the cell
    if mode == "isotropic":
        angles = state.cell / state.cell.norm(dim=2, keepdim=True)
        assert torch.allclose(angles, torch.eye(3, dtype=torch.float64).expand(2, 3, 3), atol=1e-12)


def test_batched_equals_single_with_same_seeds(argon, lj):
    cluster = Atoms("Ar4", positions=[[0, 0, 0], [3.8, 0, 0], [0, 3.8, 0], [0, 0, 3.8]])
    cluster.set_masses([39.948, 39.948, 20.0, 39.948])
    batched = md.from_atoms([argon, cluster], seed=[7, 8])
    singles = [md.from_atoms(argon, seed=7), md.from_atoms(cluster, seed=8)]
    results = []
    for state in (batched, *singles):
        ff = md.ForceField(lj, skin=0.5)
        md.maxwell_boltzmann(state, 40.0)
        md.langevin.init(state, ff, temperature=40.0, friction=0.01)
        for _ in range(30):
            md.langevin.step(state, ff, 5.0)
        results.append(state)
    n = len(argon)
    torch.testing.assert_close(batched.positions[:n], results[1].positions, rtol=0, atol=1e-10)
    torch.testing.assert_close(batched.positions[n:], results[2].positions, rtol=0, atol=1e-10)
    torch.testing.assert_close(batched.velocities[n:], results[2].velocities, rtol=0, atol=1e-12)
    torch.testing.assert_close(batched.energy, torch.cat([r.energy for r in results[1:]]), rtol=0, atol=1e-10)


def test_fixed_atoms_stay_put_and_leave_the_dof(argon, lj):
    from ase.constraints import FixAtoms

    atoms = argon.copy()
    atoms.set_constraint(FixAtoms(indices=[0, 5]))
    state = md.from_atoms(atoms, seed=1)
    md.maxwell_boltzmann(state, 50.0)
    ff = md.ForceField(lj, skin=0.5)
    md.langevin.init(state, ff, temperature=50.0)
    start = state.positions[[0, 5]].clone()
    for _ in range(20):
        md.langevin.step(state, ff, 5.0)
    assert torch.equal(state.positions[[0, 5]], start)
    assert float(state.dof[0]) == 3 * 30
    assert float(state.forces[[0, 5]].abs().max()) == 0.0


def test_explosion_guard_stops_and_says_why(tmp_path, lj):
    atoms = Atoms("Ar3", positions=[[0, 0, 0], [1.6, 0, 0], [0, 4, 0]])
    state = md.from_atoms(atoms)
    ff = md.ForceField(lj, skin=0.5)
    md.nve.init(state, ff)
    writer = md.H5MDWriter(tmp_path / "boom.h5")
    with pytest.raises(md.ExplosionError) as failure:
        md.simulate(
            state,
            ff,
            md.nve.step,
            steps=50,
            dt=1.0,
            writers=[writer],
            write_interval=100,
            guard=md.ExplosionGuard(max_force=10.0),
        )
    writer.close()
    error = failure.value
    assert "max_force" in error.reason and "system 0" in error.reason and error.system == 0
    assert error.step == error.result.state.step < 50
    frames, step, _ = md.read_h5md(tmp_path / "boom.h5")
    assert step == error.step  # the last frame was kept


def test_fire_relaxes_positions_and_cell(argon):
    lj = LennardJones(cutoff=8.0)
    cluster = Atoms("Ar6", positions=np.random.default_rng(0).uniform(0, 6, size=(6, 3)))
    state = md.from_atoms(cluster)
    ff = md.ForceField(lj, skin=0.5)
    md.fire.init(state, ff)
    state, converged = md.fire.relax(state, ff, fmax=1e-3, max_steps=2000)
    assert converged and float(state.forces.norm(dim=1).max()) < 1e-3
    compressed = argon.copy()
    compressed.set_cell(compressed.cell * 0.97, scale_atoms=True)
    state = md.from_atoms(compressed)
    ff = md.ForceField(lj, skin=0.5)
    md.fire.init(state, ff, relax_cell=True)
    volume0 = float(state.volume()[0])
    state, converged = md.fire.relax(state, ff, fmax=1e-3, max_steps=3000)
    assert converged
    assert float(state.volume()[0]) > volume0
    assert float(state.stress.abs().max()) * 32 * float(state.volume()[0]) / 32 < 2e-3 * 32


def test_drift_metric_on_a_known_line():
    log = md.EnergyLog()
    log.time = [float(t) for t in range(0, 1001, 10)]  # fs
    log.values["total"] = [
        torch.tensor([1.0 + 2e-3 * t * 1e-3, 5.0], dtype=torch.float64) for t in log.time
    ]  # 2 meV/ps
    drift = log.drift(torch.tensor([4, 1]), equilibration=0.2)
    torch.testing.assert_close(drift, torch.tensor([0.5, 0.0], dtype=torch.float64))
