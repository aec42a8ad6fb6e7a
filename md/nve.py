"""NVE velocity Verlet, and the kick/drift pieces the other integrators are built from.

``v(t + dt/2) = v(t) + dt/2 a(t)``, ``r(t + dt) = r(t) + dt v(t + dt/2)``, forces at ``r(t + dt)``,
``v(t + dt) = v(t + dt/2) + dt/2 a(t + dt)``; ``a = F / m`` in Å/fs^2 (see :mod:`mlip.md.units`).
Identical, step by step, to ``ase.md.VelocityVerlet`` with the same forces.
"""

from __future__ import annotations

from mlip.md.forcefield import ForceField
from mlip.md.state import MDState, zero_momentum


def kick(state: MDState, dt: float) -> None:
    """``v += dt a`` (dt in fs); fixed atoms stay at rest."""
    state.velocities = state.velocities + dt * state.acceleration()


def drift(state: MDState, dt: float) -> None:
    """``r += dt v`` (dt in fs); fixed atoms have zero velocity."""
    state.positions = state.positions + dt * state.velocities


def advance_clock(state: MDState, dt: float) -> MDState:
    """Count one step of ``dt`` fs."""
    state.step += 1
    state.time += dt
    return state


def verlet(state: MDState, model: ForceField, dt: float, compute_stress: bool = False) -> None:
    """One velocity-Verlet step (without the clock): half kick, drift, forces, half kick."""
    kick(state, 0.5 * dt)
    drift(state, dt)
    model(state, compute_stress=compute_stress)
    kick(state, 0.5 * dt)


def init(state: MDState, model: ForceField, remove_com: bool = True) -> MDState:
    """Evaluate forces; with ``remove_com`` zero the centre-of-mass momentum (``dof = 3N - 3``)."""
    if remove_com:
        zero_momentum(state)
    return model(state)


def step(state: MDState, model: ForceField, dt: float) -> MDState:
    """One NVE step of ``dt`` fs."""
    verlet(state, model, dt)
    return advance_clock(state, dt)
