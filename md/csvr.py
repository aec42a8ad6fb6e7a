"""NVT with the canonical-sampling velocity-rescaling thermostat (Bussi, Donadio & Parrinello 2007).

Each step: thermostat over ``dt/2``, velocity Verlet, thermostat over ``dt/2``. The thermostat draws the
new kinetic energy ``K'`` of each system from the exact solution of its stochastic equation with
relaxation time ``tau`` (fs) towards the canonical distribution at ``T`` (K) for ``dof`` degrees of
freedom, and rescales the velocities by ``sqrt(K'/K)``. ``CSVRVariables.heat`` ``[B]`` (eV) accumulates the
energy the thermostat removed, so ``E_kin + E_pot + heat`` is conserved (a check of the integration).
"""

from __future__ import annotations

import dataclasses

import torch

from mlip.md.checks import check_parameter
from mlip.md.fields import ThermostatVariables, system_field
from mlip.md.forcefield import ForceField
from mlip.md.nve import advance_clock, verlet
from mlip.md.state import MDState, zero_momentum
from mlip.md.units import KB


@dataclasses.dataclass
class CSVRVariables(ThermostatVariables):
    """``temperature`` ``[B]`` K (the target), ``tau`` ``[B]`` fs and ``heat`` ``[B]`` eV (the energy the
    thermostat removed)."""

    tau: torch.Tensor = system_field()
    heat: torch.Tensor = system_field()


def init(
    state: MDState, model: ForceField, temperature: float | torch.Tensor, tau: float | torch.Tensor = 100.0
) -> MDState:
    """Set :class:`CSVRVariables` (``temperature`` K, ``tau`` fs, ``heat`` = 0 eV); zero the
    centre-of-mass momentum (the rescaling conserves it); evaluate forces."""
    check_parameter("temperature", temperature, "K", allow_zero=True)
    check_parameter("CSVR tau", tau, "fs")
    state.variables = CSVRVariables(
        temperature=state.per_system(temperature), tau=state.per_system(tau), heat=state.per_system(0.0)
    )
    zero_momentum(state)
    return model(state)


def rescale(state: MDState, dt: float) -> None:
    """Apply the thermostat over ``dt`` fs: resample each system's kinetic energy and rescale."""
    variables = state.variables_of(CSVRVariables)
    kinetic = state.kinetic_energy()
    dof = state.dof
    target = 0.5 * dof * KB * variables.temperature
    c = torch.exp(-dt / variables.tau)
    noises = state.randn_systems(dof.to(torch.int64))
    r1 = torch.stack([n[0] for n in noises])
    rest = torch.stack([(n[1:] * n[1:]).sum() for n in noises])  # chi-squared with dof - 1
    safe_k = kinetic.clamp(min=1e-300)
    new = (
        kinetic
        + (1.0 - c) * (target * (rest + r1 * r1) / dof - kinetic)
        + 2.0 * r1 * torch.sqrt(safe_k * target / dof * (1.0 - c) * c)
    ).clamp(min=0.0)
    alpha = torch.where(kinetic > 0, torch.sqrt(new / safe_k), torch.ones_like(kinetic))
    state.velocities = state.velocities * state.per_atom(alpha)[:, None]
    variables.heat = variables.heat + kinetic - new


def step(state: MDState, model: ForceField, dt: float) -> MDState:
    """One CSVR step of ``dt`` fs."""
    rescale(state, 0.5 * dt)
    verlet(state, model, dt)
    rescale(state, 0.5 * dt)
    return advance_clock(state, dt)
