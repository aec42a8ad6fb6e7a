"""The MD phase of a round: run the committee, keep every written frame with its uncertainty.

The run is :func:`mlip.md.simulate` with the committee's per-atom force std checked every step
(:class:`~mlip.md.ExplosionGuard` with ``max_uncertainty``) and logged (``max_forces_std``). A replica
stopped as too uncertain keeps all its frames (the last one is the most useful to label); one that
exploded for another reason loses the frame of the explosion step (atoms too close or torn apart make
poor DFT and would only teach the model a broken geometry).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from mlip.learn.config import MDSection


@dataclasses.dataclass
class Exploration:
    """What one MD run found: ``frames`` (``ase.Atoms``, no labels; ``info``: ``step``, ``system`` and
    ``max_forces_std`` eV/Å), the largest and the mean of the logged per-system maximum force std
    (eV/Å, over every step and replica), the steps run, and why replicas stopped early
    (``{system: reason}``; empty when every replica ran to the end)."""

    frames: list[Any]
    max_std: float
    mean_std: float
    steps: int
    stopped: dict[int, str]


class _FrameCollector:
    """An :mod:`mlip.md` writer keeping each written system as a plain ``ase.Atoms``."""

    def __init__(self) -> None:
        self.frames: list[Any] = []

    def write(self, state: Any) -> None:
        from ase import Atoms

        from mlip import md

        for atoms, system in zip(md.to_atoms(state), state.system_ids.tolist(), strict=True):
            frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
            frame.info.update(step=state.step, system=system, max_forces_std=atoms.info["max_forces_std"])
            self.frames.append(frame)

    def close(self) -> None:
        """Nothing to release."""


def explore(potential: Any, starts: list[Any], config: MDSection, seed: int, progress: bool) -> Exploration:
    """Run ``config.steps`` of MD with the committee ``potential`` from the ``starts`` (``ase.Atoms``,
    one replica each, Maxwell-Boltzmann velocities at ``config.temperature``, seeded by ``seed``)."""
    from mlip import md

    potential = potential.to(dtype=torch.float64).eval().requires_grad_(False)
    state = md.from_atoms(starts, seed=seed)
    md.maxwell_boltzmann(state, config.temperature)
    forcefield = md.ForceField(potential, skin=config.skin)
    parameters = {
        "nve": {},
        "langevin": {"temperature": config.temperature, "friction": config.friction},
        "nhc": {"temperature": config.temperature, "tau": config.tau_t},
        "csvr": {"temperature": config.temperature, "tau": config.tau_t},
    }[config.ensemble]
    integrator = md.INTEGRATORS[config.ensemble]
    integrator.init(state, forcefield, **parameters)
    collector = _FrameCollector()
    stopped: dict[int, md.ExplosionError] = {}
    try:
        result = md.simulate(
            state,
            forcefield,
            integrator.step,
            config.steps,
            config.dt,
            writers=[collector],
            write_interval=config.write_interval,
            guard=md.ExplosionGuard(max_uncertainty=config.max_uncertainty),
            progress=progress,
            on_explosion="drop" if len(starts) > 1 else "stop",
        )
        stopped.update(result.dropped)
    except md.ExplosionError as error:  # the last replica stopped: its frames up to that step are kept
        result = error.result
        stopped.update(result.dropped)
        stopped[error.system] = error
    frames = [
        f
        for f in collector.frames
        if not (
            f.info["system"] in stopped
            and not isinstance(stopped[f.info["system"]], md.UncertaintyError)
            and f.info["step"] >= stopped[f.info["system"]].step
        )
    ]
    spread = result.log.series("max_forces_std")
    finite = spread[torch.isfinite(spread)]
    return Exploration(
        frames=frames,
        max_std=float(finite.max()) if finite.numel() else math.nan,
        mean_std=float(finite.mean()) if finite.numel() else math.nan,
        steps=max(result.log.step) if result.log.step else 0,
        stopped={system: str(error) for system, error in sorted(stopped.items())},
    )
