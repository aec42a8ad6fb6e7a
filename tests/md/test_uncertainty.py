"""Uncertainty-aware MD: a committee of two pair potentials that agree below 1.2 Å and disagree beyond
(a synthetic uncertain region); a dimer starting compressed at rest swings into it."""

import ase.io
import h5py
import numpy as np
import pytest
from ase import Atoms

from mlip.errors import RunFailedError
from mlip.md import ExplosionError, MDInputError, UncertaintyError
from mlip.md import cli as md_cli
from mlip.models import Committee
from mlip.models.classical import HarmonicPair

from .test_cli import _args


def _committee():
    return Committee(
        [
            HarmonicPair(k=10.0, r0=1.0, switch_start=1.2, cutoff=1.6),
            HarmonicPair(k=10.0, r0=1.0, switch_start=1.4, cutoff=1.8),
        ]
    )


def _dimer(tmp_path):
    path = tmp_path / "h2.extxyz"
    ase.io.write(path, Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]]))
    return path


def _run_args(tmp_path, *extra):
    common = ["--ensemble", "nve", "--temperature", "0", "--dt", "0.25", "--steps", "40"]
    return _args(tmp_path, _dimer(tmp_path), *common, "--write-interval", "1", *extra)


def _stored_spread(path):
    with h5py.File(path, "r") as f:
        group = f["observables/system_0000/max_forces_std"]
        return group["step"][()], group["value"][()]


def test_run_stops_as_uncertain_and_keeps_trajectory_and_candidates(tmp_path):
    args = _run_args(tmp_path, "--max-uncertainty", "0.2", "--candidate-uncertainty", "0.02")
    with pytest.raises(UncertaintyError, match="max_uncertainty=0.2") as caught:
        md_cli.run(args, model=_committee())
    error = caught.value
    assert isinstance(error, ExplosionError) and isinstance(error, RunFailedError)
    assert 0 < error.step < 40
    steps, spread = _stored_spread(tmp_path / "run.h5")
    assert steps[-1] == error.step and list(steps) == list(range(error.step + 1))  # every frame kept
    assert spread[0] == 0.0 and np.all(spread[:-1] <= 0.2) and spread[-1] > 0.2
    candidates = ase.io.read(tmp_path / "run_candidates.extxyz", index=":")
    expected = [int(s) for s, v in zip(steps, spread, strict=True) if v > 0.02]
    assert [a.info["step"] for a in candidates] == expected and expected[-1] == error.step
    for atoms in candidates:
        assert atoms.info["max_forces_std"] == pytest.approx(
            atoms.arrays["forces_std"].max(), rel=1e-6
        )  # %.8f text
        assert atoms.info["max_forces_std"] == pytest.approx(spread[list(steps).index(atoms.info["step"])])


def test_run_below_the_limit_completes_and_records_the_spread(tmp_path):
    args = _run_args(tmp_path, "--max-uncertainty", "50", "--candidate-uncertainty", "0.02")
    assert md_cli.run(args, model=_committee()) == 0
    steps, spread = _stored_spread(tmp_path / "run.h5")
    assert steps[-1] == 40 and spread.max() > 0.2  # it swung through the uncertain region
    candidates = ase.io.read(tmp_path / "run_candidates.extxyz", index=":")
    assert len(candidates) == int((spread > 0.02).sum()) > 0


def test_energy_plot_shows_the_spread(tmp_path):
    from mlip import md

    state = md.from_atoms([ase.io.read(_dimer(tmp_path))])
    ff = md.ForceField(_committee())
    md.nve.init(state, ff)
    result = md.simulate(state, ff, md.nve.step, 30, 0.25, guard=md.ExplosionGuard(max_uncertainty=50.0))
    figure = md_cli.energy_figure(result.log, state.num_atoms, "nve")
    assert len(figure.axes) == 4
    plotted = figure.axes[3].lines[0].get_ydata()
    np.testing.assert_array_equal(plotted, result.log.series("max_forces_std")[:, 0].numpy())
    assert plotted.max() > 0.2


def test_uncertainty_flags_are_checked(tmp_path):
    with pytest.raises(MDInputError, match="needs a committee"):
        md_cli.run(_run_args(tmp_path, "--max-uncertainty", "0.2"), model=HarmonicPair())
    with pytest.raises(MDInputError, match="must be below --max-uncertainty"):
        md_cli.run(_run_args(tmp_path, "--max-uncertainty", "0.2", "--candidate-uncertainty", "0.3"))
    with pytest.raises(MDInputError, match="--max-uncertainty"):
        md_cli.run(_run_args(tmp_path, "--max-uncertainty", "-1"))
    with pytest.raises(MDInputError, match="MD only"):
        md_cli.run(_run_args(tmp_path, "--candidate-uncertainty", "0.1", "--ensemble", "fire"))
