"""NVT with a Nosé–Hoover chain (Martyna, Klein & Tuckerman 1992; integrator of Martyna, Tuckerman,
Tobias & Klein 1996).

Each step: chain over ``dt/2``, velocity Verlet, chain over ``dt/2``. The chain of length ``M`` per system
has positions ``xi`` ``[B, M]`` (dimensionless), velocities ``v_xi`` ``[B, M]`` (1/fs) and masses
``Q_1 = dof kB T tau^2``, ``Q_j = kB T tau^2`` (eV fs^2), propagated with Suzuki–Yoshida order-3 weights.
The extended energy ``E_kin + E_pot + sum Q v_xi^2 / 2 + dof kB T xi_1 + kB T sum_{j>1} xi_j`` is
conserved (:func:`conserved_energy`).
"""

from __future__ import annotations

import dataclasses

import torch

from mlip.md.checks import MDInputError, check_parameter
from mlip.md.fields import ThermostatVariables, system_field
from mlip.md.forcefield import ForceField
from mlip.md.nve import advance_clock, verlet
from mlip.md.state import MDState, zero_momentum
from mlip.md.units import KB

_W1 = 1.0 / (2.0 - 2.0 ** (1.0 / 3.0))
_SUZUKI_YOSHIDA = (_W1, 1.0 - 2.0 * _W1, _W1)


@dataclasses.dataclass
class NHCVariables(ThermostatVariables):
    """``temperature`` ``[B]`` K (the target); the chain's ``mass`` (eV fs^2), ``position`` (dimensionless)
    and ``velocity`` (1/fs), all ``[B, M]``."""

    mass: torch.Tensor = system_field()
    position: torch.Tensor = system_field()
    velocity: torch.Tensor = system_field()


def init(
    state: MDState,
    model: ForceField,
    temperature: float | torch.Tensor,
    tau: float | torch.Tensor = 100.0,
    chain_length: int = 3,
) -> MDState:
    """Set :class:`NHCVariables` (target ``temperature`` K, chain masses from ``tau``, the thermostat
    period in fs; chain positions and velocities zero); zero the centre-of-mass momentum; evaluate
    forces."""
    if chain_length < 1:
        raise MDInputError(f"chain_length must be >= 1, got {chain_length}")
    check_parameter("temperature", temperature, "K")
    check_parameter("Nosé–Hoover tau", tau, "fs")
    zero_momentum(state)
    temperature = state.per_system(temperature)
    kt_tau2 = KB * temperature * state.per_system(tau) ** 2
    mass = kt_tau2[:, None].repeat(1, chain_length)
    mass[:, 0] = mass[:, 0] * state.dof
    state.variables = NHCVariables(
        temperature=temperature, mass=mass, position=torch.zeros_like(mass), velocity=torch.zeros_like(mass)
    )
    return model(state)


def _chain_half_step(state: MDState, dt: float) -> None:
    """Propagate chain and velocity scaling over ``dt / 2`` fs (MTK 1996, Suzuki–Yoshida weights)."""
    variables = state.variables_of(NHCVariables)
    kt = KB * variables.temperature
    q = variables.mass
    xi = variables.position.clone()
    v = variables.velocity.clone()
    m = q.shape[1]
    two_k = 2.0 * state.kinetic_energy()
    scale = torch.ones_like(two_k)

    def force(j: int) -> torch.Tensor:
        if j == 0:
            return (two_k * scale * scale - state.dof * kt) / q[:, 0]
        return (q[:, j - 1] * v[:, j - 1] ** 2 - kt) / q[:, j]

    for w in _SUZUKI_YOSHIDA:
        h = 0.5 * w * dt  # this sub-step's share of dt / 2
        v[:, m - 1] += 0.5 * h * force(m - 1)
        for j in range(m - 2, -1, -1):
            damp = torch.exp(-0.25 * h * v[:, j + 1])
            v[:, j] = (v[:, j] * damp + 0.5 * h * force(j)) * damp
        scale = scale * torch.exp(-h * v[:, 0])
        xi += h * v
        for j in range(m - 1):
            damp = torch.exp(-0.25 * h * v[:, j + 1])
            v[:, j] = (v[:, j] * damp + 0.5 * h * force(j)) * damp
        v[:, m - 1] += 0.5 * h * force(m - 1)
    state.velocities = state.velocities * state.per_atom(scale)[:, None]
    variables.position = xi
    variables.velocity = v


def step(state: MDState, model: ForceField, dt: float) -> MDState:
    """One Nosé–Hoover-chain step of ``dt`` fs."""
    _chain_half_step(state, dt)
    verlet(state, model, dt)
    _chain_half_step(state, dt)
    return advance_clock(state, dt)


def conserved_energy(state: MDState) -> torch.Tensor:
    """``[B]`` eV, the extended-system energy that the dynamics conserves."""
    variables = state.variables_of(NHCVariables)
    kt = KB * variables.temperature
    q, xi, v = variables.mass, variables.position, variables.velocity
    chain = 0.5 * (q * v * v).sum(dim=1) + state.dof * kt * xi[:, 0] + kt * xi[:, 1:].sum(dim=1)
    return state.kinetic_energy() + state.energy + chain
