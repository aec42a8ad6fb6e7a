"""NVT Langevin dynamics with the BAOAB splitting (Leimkuhler & Matthews 2013).

B: ``v += dt/2 a``; A: ``r += dt/2 v``; O: ``v = c v + sqrt(1 - c^2) sqrt(kB T / m) xi`` with
``c = exp(-gamma dt)``; A; forces; B. ``gamma`` in 1/fs, ``T`` in K; noise from each system's generator.
Momentum is not conserved, so ``dof = 3 N_free``.
"""

from __future__ import annotations

import dataclasses

import torch

from mlip.md.checks import check_parameter
from mlip.md.fields import ThermostatVariables, system_field
from mlip.md.forcefield import ForceField
from mlip.md.nve import advance_clock, drift, kick
from mlip.md.state import MDState
from mlip.md.units import AMU_A2_FS2_TO_EV, KB


@dataclasses.dataclass
class LangevinVariables(ThermostatVariables):
    """``temperature`` ``[B]`` K (the target) and ``friction`` ``[B]`` 1/fs."""

    friction: torch.Tensor = system_field()


def init(
    state: MDState,
    model: ForceField,
    temperature: float | torch.Tensor,
    friction: float | torch.Tensor = 0.01,
) -> MDState:
    """Set :class:`LangevinVariables` (``temperature`` K, ``friction`` 1/fs); evaluate forces."""
    check_parameter("temperature", temperature, "K", allow_zero=True)
    check_parameter("Langevin friction", friction, "1/fs")
    state.variables = LangevinVariables(
        temperature=state.per_system(temperature), friction=state.per_system(friction)
    )
    state.dof = 3.0 * state.system_sum((~state.fixed).to(torch.float64))
    return model(state)


def ornstein_uhlenbeck(state: MDState, dt: float) -> None:
    """The O part: exact update of the velocities under friction and noise over ``dt`` fs."""
    variables = state.variables_of(LangevinVariables)
    c = torch.exp(-state.per_atom(variables.friction) * dt)[:, None]
    sigma = torch.sqrt(KB * state.per_atom(variables.temperature) / (state.masses * AMU_A2_FS2_TO_EV))
    v = c * state.velocities + torch.sqrt(1.0 - c * c) * sigma[:, None] * state.randn_atoms()
    state.velocities = torch.where(state.fixed[:, None], torch.zeros_like(v), v)


def step(state: MDState, model: ForceField, dt: float) -> MDState:
    """One BAOAB step of ``dt`` fs."""
    kick(state, 0.5 * dt)
    drift(state, 0.5 * dt)
    ornstein_uhlenbeck(state, dt)
    drift(state, 0.5 * dt)
    model(state)
    kick(state, 0.5 * dt)
    return advance_clock(state, dt)
