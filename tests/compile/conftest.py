"""Shared helpers of the compile tests."""

from __future__ import annotations

import pytest
import torch
from ase.build import molecule

from mlip import md


class Recorder:
    """An MD writer keeping every written frame's positions and forces."""

    def __init__(self) -> None:
        self.frames: list[tuple[torch.Tensor, torch.Tensor]] = []

    def write(self, state: md.MDState) -> None:
        self.frames.append((state.positions.clone(), state.forces.clone()))

    def close(self) -> None:
        pass


def _run_md(
    potential,
    steps: int,
    capacities: dict[int, int] | None = None,
    device: str = "cpu",
    structures=None,
    fixed_shape: bool | None = None,
):
    """NVE at 600 K on ``structures`` (default: two ethanol replicas) with a 0.5 Å skin (several
    rebuilds) and ``ForceField(fixed_shape=)``; returns the frames and the force field.
    ``capacities``: step -> padded edge capacity set before that step (0: before the first
    evaluation); one below the stored list makes the next evaluation grow it."""
    capacities = capacities or {}
    structures = structures if structures is not None else [molecule("CH3CH2OH")] * 2
    state = md.from_atoms(structures, seed=1, device=device)
    md.maxwell_boltzmann(state, 600.0)
    ff = md.ForceField(potential, skin=0.5, fixed_shape=fixed_shape)
    ff.neighbors.capacity = capacities.get(0, 0)
    md.nve.init(state, ff)
    recorder = Recorder()

    def step(state, model, dt):
        ff.neighbors.capacity = capacities.get(state.step + 1, ff.neighbors.capacity)
        return md.nve.step(state, model, dt)

    md.simulate(state, ff, step, steps, 0.5, writers=[recorder], write_interval=1)
    return recorder.frames, ff


@pytest.fixture
def run_md():
    """:func:`_run_md`: NVE through the Python MD driver, every frame recorded."""
    return _run_md
