"""Bad input and failed runs in MD (``mlip md``, ``mlip.md``) and the ASE calculator (issue 15, items 1-7).

Each test is one numbered behaviour, written as a table: the bad input (a file written here in a real
format, an argument, a model that goes non-finite) -> the error the user sees -> what is kept on disk.
Models are tiny (Lennard-Jones, a 4-channel MACE), so every row runs in about a second.
"""

from __future__ import annotations

import re
import warnings

import ase.io
import h5py
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.md.verlet import VelocityVerlet

from mlip import cli, md, testing
from mlip.calculator import MLIPCalculator, NonFiniteResultError
from mlip.data.neighbors import CloseAtomsError
from mlip.md import cli as md_cli
from mlip.models.classical import LennardJones


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def tiny_mace(scale: float = 0.05):
    """An untrained float64 MACE for H, C, O (cutoff 3 Å) with gentle forces."""
    return testing.tiny_mace(max_ell=2, avg_num_neighbors=4.0, scale=scale)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    tiny_mace().save(path)
    return path


class NaNBeyond(LennardJones):
    """Lennard-Jones that returns a NaN energy for pairs farther apart than ``r_nan`` (Å): a model queried
    outside the region where it is defined."""

    def __init__(self, r_nan: float) -> None:
        super().__init__(epsilon=0.0104, sigma=3.4, cutoff=6.0)
        self.r_nan = r_nan

    def pair_energy(self, r: torch.Tensor) -> torch.Tensor:
        lj = super().pair_energy(r)
        return torch.where(r > self.r_nan, torch.full_like(r, float("nan")), lj)


def argon() -> Atoms:
    """32-atom fcc argon (periodic), slightly perturbed."""
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)
    atoms.positions += np.random.default_rng(0).normal(scale=0.05, size=atoms.positions.shape)
    return atoms


def stored_steps(path) -> list[int]:
    with h5py.File(path, "r") as f:
        return f["particles/system_0000/position/step"][()].tolist()


def mlip_md(capsys, *argv) -> tuple[int, str, str]:
    """``mlip md ARGV`` through the console-script dispatcher: exit code, stdout, stderr."""
    code = cli.main(["md", *map(str, argv), "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------------
# 1. An exploded run is never reported as a good one: it stops with a one-line reason (the step, the
#    system, what was seen), the trajectory is kept up to that step, no drift is printed, exit code 1.

LJ = LennardJones(epsilon=0.0104, sigma=3.4, cutoff=6.0)
EXPLOSIONS = [
    # (row, structure, potential, integrator, parameters, initial K, dt fs, reason in the error)
    ("NVE energy change", argon, LJ, md.nve, {}, 300.0, 60.0, r"total energy changed by .* eV/atom"),
    (
        "thermostat far above target",
        argon,
        LJ,
        md.langevin,
        {"temperature": 50.0},
        50.0,
        150.0,
        r"temperature .* K is more than 10 x the target 50 K",
    ),
    (
        "atom leaves its neighbours",
        lambda: molecule("CH3CH2OH"),
        tiny_mace(),
        md.nve,
        {},
        300.0,
        50.0,
        r"atom \d+ has no neighbour within the cutoff \(zero force\)",
    ),
    (
        "model goes non-finite",
        lambda: Atoms("Ar2", positions=[[0, 0, 0], [3.2, 0, 0]]),
        NaNBeyond(r_nan=4.5),
        md.nve,
        {},
        0.0,
        5.0,
        r"non-finite (energy|force)",
    ),
]


@pytest.mark.parametrize(
    "structure, potential, integrator, params, temperature, dt, reason",
    [row[1:] for row in EXPLOSIONS],
    ids=[row[0] for row in EXPLOSIONS],
)
def test_1_exploded_run_raises_with_step_and_keeps_the_trajectory(
    tmp_path, structure, potential, integrator, params, temperature, dt, reason
):
    state = md.from_atoms(structure())
    md.maxwell_boltzmann(state, temperature)
    ff = md.ForceField(potential, skin=0.5)
    integrator.init(state, ff, **params)
    path = tmp_path / "run.h5"
    with md.H5MDWriter(path) as writer, pytest.raises(md.ExplosionError, match=reason) as failure:
        md.simulate(state, ff, integrator.step, 200, dt, writers=[writer], write_interval=1000)
    error = failure.value
    assert 0 < error.step < 200 and error.system == 0
    assert str(error).startswith(f"step {error.step}: system 0: ") and "\n" not in str(error)
    kept = stored_steps(path)
    assert kept[0] == 0 and kept[-1] <= error.step  # frames up to that step (the last one unless non-finite)
    assert f"trajectory kept up to step {kept[-1]}" in str(error)
    assert error.result.log.step[-1] == error.step


def test_1_cli_exploded_nve_run_exits_1_without_a_drift(tmp_path, model_file, capsys):
    """The issue's case: NVE with a 50 fs step blows ethanol apart."""
    output = tmp_path / "boom.h5"
    code, out, err = mlip_md(
        capsys, "CCO", "--smiles", "--model", model_file, "--ensemble", "nve", "--dt", 50, "--steps", 200,
        "--output", output,
    )  # fmt: skip
    assert code == 1
    assert re.fullmatch(r"mlip md: failed: step \d+: system 0: .*; trajectory kept up to step \d+\n", err)
    assert "drift" not in out
    step = int(err.split("step ")[1].split(":")[0])
    assert stored_steps(output)[-1] == step < 200
    assert (tmp_path / "boom.png").exists()  # the plot of the failed run (its title says FAILED)


# ---------------------------------------------------------------------------------------------------
# 2. Non-finite or impossible input is refused before the first step: one line naming the file and the
#    atoms, exit code 2, no output file created.


def _water(**change):
    atoms = molecule("H2O")
    for key, value in change.items():
        getattr(atoms, key)[...] = value
    return atoms


def _nan_position():
    atoms = molecule("H2O")
    atoms.positions[1, 2] = np.nan
    return atoms


def _inf_position():
    atoms = molecule("H2O")
    atoms.positions[2, 0] = np.inf
    return atoms


def _coincident():
    atoms = molecule("H2O")
    atoms.positions[2] = atoms.positions[0] + [0.05, 0.0, 0.0]
    return atoms


def _flat_cell():
    atoms = molecule("H2O", vacuum=3.0)
    atoms.cell[2] = atoms.cell[0] + [0.0, 1e-7, 0.0]  # two parallel lattice vectors
    atoms.pbc = True
    return atoms


def _tiny_cell():
    atoms = molecule("H2O", vacuum=3.0)
    atoms.cell[1] = [0.0, 0.05, 0.0]
    atoms.pbc = True
    return atoms


def _nan_cell():
    atoms = molecule("H2O", vacuum=3.0)
    atoms.cell[0, 0] = np.nan
    atoms.pbc = True
    return atoms


REFUSED_INPUT = [
    # (row, structure written to water.extxyz, extra arguments, message after "mlip md: error: ")
    ("NaN position", _nan_position, [], r"water\.extxyz: non-finite position of atom 1"),
    ("inf position", _inf_position, [], r"water\.extxyz: non-finite position of atom 2"),
    (
        "atoms 0.05 Å apart",
        _coincident,
        [],
        r"water\.extxyz: atoms 0 and 2 are 0\.05 Å apart \(hard floor 0\.1 Å\)",
    ),
    ("NaN cell", _nan_cell, [], r"water\.extxyz: the cell is not finite"),
    ("flat periodic cell", _flat_cell, [], r"water\.extxyz: periodic cell of \(near-\)zero volume"),
    ("0.05 Å lattice vector", _tiny_cell, [], r"water\.extxyz: periodic lattice vector of length 0\.05 Å"),
    ("dt = 0", _water, ["--dt", "0"], r"--dt = 0 fs: must be > 0"),
    ("dt < 0", _water, ["--dt", "-0.5"], r"--dt = -0\.5 fs: must be > 0"),
    ("negative temperature", _water, ["--temperature", "-10"], r"--temperature = -10 K: must be >= 0"),
    ("FIRE, NaN position", _nan_position, ["--ensemble", "fire"], r"water\.extxyz: non-finite position"),
]


@pytest.mark.parametrize(
    "structure, extra, message", [row[1:] for row in REFUSED_INPUT], ids=[row[0] for row in REFUSED_INPUT]
)
def test_2_bad_input_is_refused_before_the_first_step(
    tmp_path, model_file, capsys, structure, extra, message
):
    path = tmp_path / "water.extxyz"
    ase.io.write(path, structure(), format="extxyz")
    output = tmp_path / "md.h5"
    code, out, err = mlip_md(capsys, path, "--model", model_file, "--output", output, "--steps", 5, *extra)
    assert code == 2 and out == ""
    assert re.fullmatch(f"mlip md: error: .*{message}.*\n", err), err
    assert not output.exists() and not output.with_suffix(".png").exists()


def test_2_python_api_refuses_the_same_input():
    with pytest.raises(md.MDInputError, match=r"water: non-finite position of atom 1"):
        md.from_atoms(_nan_position(), source="water")
    with pytest.raises(CloseAtomsError, match=r"atoms 0 and 2 of system 1 are 0\.05 Å apart"):
        md.from_atoms([molecule("H2O"), _coincident()])
    state = md.from_atoms(argon())
    ff = md.ForceField(LJ, skin=0.5)
    md.nve.init(state, ff)
    with pytest.raises(md.MDInputError, match=r"dt = 0 fs: must be > 0"):
        md.simulate(state, ff, md.nve.step, 5, 0.0)
    with pytest.raises(md.MDInputError, match=r"temperature = -1 K: must be >= 0"):
        md.langevin.init(state, ff, temperature=-1.0)
    assert state.step == 0  # nothing ran


# ---------------------------------------------------------------------------------------------------
# 3. FIRE never reports convergence on non-finite forces or positions.

FIRE_FAILURES = [
    # (row, structure, potential, expected error, message)
    (
        "NaN position",
        _nan_position,
        LJ,
        md.MDInputError,
        r"non-finite position of atom 1",
    ),
    (
        "forces turn NaN during the relaxation",
        lambda: Atoms("Ar2", positions=[[0, 0, 0], [3.2, 0, 0]]),
        NaNBeyond(r_nan=3.6),
        md.ExplosionError,
        r"step \d+: FIRE: system 0: non-finite (force|energy)",
    ),
]


@pytest.mark.parametrize(
    "structure, potential, error, message",
    [row[1:] for row in FIRE_FAILURES],
    ids=[r[0] for r in FIRE_FAILURES],
)
def test_3_fire_never_converges_on_non_finite_values(structure, potential, error, message):
    ff = md.ForceField(potential, skin=0.5)
    with pytest.raises(error, match=message):
        state = md.from_atoms(structure())
        md.fire.init(state, ff)
        md.fire.relax(state, ff, fmax=1e-4, max_steps=500)


# ---------------------------------------------------------------------------------------------------
# 4. The final state is always written, whatever the write interval; --append continues from it.

FINAL_FRAME = [
    # (steps, --write-interval, steps stored in the trajectory)
    (25, 10, [0, 10, 20, 25]),
    (20, 10, [0, 10, 20]),
    (3, 10, [0, 3]),
    (4, 1, [0, 1, 2, 3, 4]),
]


@pytest.mark.parametrize("steps, interval, stored", FINAL_FRAME)
def test_4_final_state_is_always_written_and_append_continues_from_it(tmp_path, steps, interval, stored):
    structure = tmp_path / "argon.extxyz"
    ase.io.write(structure, argon())
    output = tmp_path / "run.h5"
    common = [
        "--model",
        "unused",
        "--output",
        str(output),
        "--xyz",
        str(tmp_path / "run.xyz"),
        "--no-progress",
    ]
    args = cli.build_parser().parse_args(
        ["md", str(structure), *common, "--ensemble", "nve", "--steps", str(steps), "--dt", "2"]
        + ["--write-interval", str(interval)]
    )
    assert md_cli.run(args, model=LJ) == 0
    assert stored_steps(output) == stored
    assert len(ase.io.read(tmp_path / "run.xyz", index=":")) == len(stored)
    args = cli.build_parser().parse_args(["md", *common, "--append", "--ensemble", "nve", "--steps", "2"])
    assert md_cli.run(args, model=LJ) == 0
    assert stored_steps(output)[len(stored) :] == [steps, steps + 2]  # from the true last step
    frames, step, time = md.read_h5md(output)
    assert step == steps + 2 and time == pytest.approx(2.0 * steps + 0.5 * 2)


# ---------------------------------------------------------------------------------------------------
# 5. No silent overwrite: existing outputs are refused without --overwrite (before anything runs, the
#    files untouched); --append with a structure that is not the file's system is an error.

OVERWRITE = [
    # (row, files there before (run.h5: a real 2-step trajectory of ethanol), arguments, exit code, message)
    ("trajectory exists", ["run.h5"], ["CCO", "--smiles"], 2, r"run\.h5 exists: .*--append.*--overwrite"),
    ("plot exists", ["run.png"], ["CCO", "--smiles"], 2, r"run\.png exists"),
    ("extxyz exists", ["run.xyz"], ["CCO", "--smiles", "--xyz", "run.xyz"], 2, r"run\.xyz exists"),
    ("--overwrite replaces them", ["run.h5", "run.png"], ["CCO", "--smiles", "--overwrite"], 0, None),
    ("--append, other molecule", ["run.h5"], ["C", "--smiles", "--append"], 2, r"SMILES 'C' has 5 atoms.* 9"),
    ("--append, same molecule", ["run.h5"], ["CCO", "--smiles", "--append"], 0, None),
    ("--append, no trajectory", [], ["--append"], 2, r"run\.h5: no trajectory to append to"),
]


@pytest.mark.parametrize(
    "present, argv, code, message", [row[1:] for row in OVERWRITE], ids=[row[0] for row in OVERWRITE]
)
def test_5_no_silent_overwrite(tmp_path, model_file, capsys, monkeypatch, present, argv, code, message):
    monkeypatch.chdir(tmp_path)
    common = ["--model", model_file, "--output", "run.h5", "--steps", 2]
    if "run.h5" in present:
        assert mlip_md(capsys, "CCO", "--smiles", *common)[0] == 0
        (tmp_path / "run.png").unlink()
    for name in present:
        if name != "run.h5":
            (tmp_path / name).write_bytes(b"the user's earlier work")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    got, _, err = mlip_md(capsys, *argv, *common)
    assert got == code, err
    if message is not None:
        assert re.fullmatch(f"mlip md: error: .*{message}.*\n", err), err
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing touched
    elif "--append" in argv:
        assert stored_steps(tmp_path / "run.h5") == [0, 2, 2, 4]
        assert (tmp_path / "run_from_step2.png").exists()
    else:
        assert stored_steps(tmp_path / "run.h5") == [0, 2]
        assert (tmp_path / "run.png").read_bytes() != b"the user's earlier work"


# ---------------------------------------------------------------------------------------------------
# 6. The energy plot: total-energy change on its own axis, units on every axis, drift and fluctuation in
#    the title.


def test_6_energy_plot_shows_total_energy_change_on_its_own_axis(tmp_path):
    state = md.from_atoms(argon())
    md.maxwell_boltzmann(state, 40.0)
    ff = md.ForceField(LJ, skin=0.5)
    md.nve.init(state, ff)
    log = md.simulate(state, ff, md.nve.step, 20, 5.0).log
    figure = md_cli.energy_figure(log, state.num_atoms, "nve", drift=True)
    total, energies, temperature = figure.axes
    expected = 1e3 * (log.series("total")[:, 0] - log.series("total")[0, 0]) / 32
    np.testing.assert_allclose(total.lines[0].get_ydata(), expected.numpy())
    assert [line.get_label() for line in energies.lines] == ["potential", "kinetic"]
    assert "meV/atom" in total.get_ylabel() and "(eV)" in energies.get_ylabel()
    assert "(K)" in temperature.get_ylabel() and "(ps)" in temperature.get_xlabel()
    drift, fluctuation = float(log.drift(state.num_atoms)[0]), float(log.fluctuation(state.num_atoms)[0])
    assert total.get_title() == f"nve: drift {drift:.3g} meV/atom/ps, fluctuation {fluctuation:.3g} meV/atom"
    failed = md_cli.energy_figure(log, state.num_atoms, "nve: FAILED at step 20", drift=False)
    assert failed.axes[0].get_title() == "nve: FAILED at step 20"  # no drift for a failed run


# ---------------------------------------------------------------------------------------------------
# 7. MLIPCalculator never returns NaN/inf, and warns about close atoms once per calculator.


def _nan_model():
    model = tiny_mace()
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))  # a corrupted weight
    return model


CALCULATOR_ERRORS = [
    # (row, model, structures, call, error, message)
    (
        "two atoms at one position",
        tiny_mace,
        [Atoms("H2O", positions=[[0, 0, 0], [0, 0, 0], [0.9, 0, 0.3]])],
        "energy",
        CloseAtomsError,
        r"MLIPCalculator: atoms 0 and 1 are 0 Å apart \(hard floor 0\.1 Å\)",
    ),
    (
        "batch: one structure with coincident atoms",
        tiny_mace,
        [molecule("H2O"), molecule("CH4"), Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.05]])],
        "many",
        CloseAtomsError,
        r"structure 2: atoms 0 and 1 are 0\.05 Å apart",
    ),
    (
        "model returns NaN",
        _nan_model,
        [molecule("H2O")],
        "forces",
        NonFiniteResultError,
        r"MLIPCalculator: the model returned a non-finite energy",
    ),
    ("batch: model returns NaN", _nan_model, [molecule("H2O")], "many", NonFiniteResultError, r"structure 0"),
]


@pytest.mark.parametrize(
    "model, structures, call, error, message",
    [row[1:] for row in CALCULATOR_ERRORS],
    ids=[row[0] for row in CALCULATOR_ERRORS],
)
def test_7_calculator_raises_instead_of_returning_nan(model, structures, call, error, message):
    calc = MLIPCalculator(model(), device="cpu")
    with pytest.raises(error, match=message):
        if call == "many":
            calc.calculate_many(structures)
        else:
            atoms = structures[0]
            atoms.calc = calc
            atoms.get_potential_energy() if call == "energy" else atoms.get_forces()
    assert "energy" not in (calc.results or {})


def test_7_close_atom_warning_is_given_once_per_calculator():
    atoms = Atoms("H2O", positions=[[0, 0, 0], [0.3, 0, 0], [0.0, 0.95, 0]])  # H-O 0.3 Å: allowed, warned
    atoms.calc = MLIPCalculator(tiny_mace(), device="cpu")
    atoms.set_momenta(np.random.default_rng(0).normal(scale=0.5, size=(3, 3)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        VelocityVerlet(atoms, timestep=0.5).run(20)  # 21 evaluations, every one at a new distance
    close = [w for w in caught if "apart" in str(w.message)]
    assert len(close) == 1 and np.isfinite(atoms.get_forces()).all()
