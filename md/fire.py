"""FIRE relaxation (Bitzek et al. 2006, as in ASE) of a batch, optionally relaxing the cell too.

FIRE is a minimiser, not dynamics: it uses unit fictitious masses and ASE's time units for its adaptive
step (``dt`` starts at ``dt_start`` and grows to ``dt_max``; each atom moves at most ``max_step`` Å per
step). Every system has its own ``dt``, mixing ``alpha`` and counter, and stops moving once converged.

Cell relaxation (fully periodic systems): the cell is ``h = h0 F`` with a symmetric deformation
``F = exp(X / c)`` (no rotation), where ``X`` is a log-strain coordinate scaled by ``c`` = number of
atoms (as in ASE's cell filters). Atoms move in the frame of the deformed cell (``r = s F``). The force
on ``X`` is ``-V (stress + P I) / c``, so a converged cell has ``stress = -P I`` (``P`` in eV/Å^3):
the enthalpy is minimised.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from mlip.md.checks import ExplosionError, MDInputError, check_parameter, check_structure
from mlip.md.fields import Variables, atom_field, global_field, system_field
from mlip.md.forcefield import ForceField
from mlip.md.observers import non_finite
from mlip.md.state import MDState


@dataclasses.dataclass
class FIREVariables(Variables):
    """FIRE's per-atom ``velocity`` ``[N, 3]`` (unit-mass fictitious velocities), per-system
    ``cell_velocity``, ``cell_coordinate`` (the log-strain ``X``) and ``reference_cell`` (``h0``, Å), all
    ``[B, 3, 3]``, adaptive ``dt``, mixing ``alpha``, count of ``positive_steps`` and target ``pressure``
    (eV/Å^3), all ``[B]``; and for the batch ``dt_max``, ``max_step`` (Å) and ``relax_cell``."""

    velocity: torch.Tensor = atom_field()
    cell_velocity: torch.Tensor = system_field()
    cell_coordinate: torch.Tensor = system_field()
    reference_cell: torch.Tensor = system_field()
    dt: torch.Tensor = system_field()
    alpha: torch.Tensor = system_field()
    positive_steps: torch.Tensor = system_field()
    pressure: torch.Tensor = system_field()
    dt_max: float = global_field()
    max_step: float = global_field()
    relax_cell: bool = global_field()


def init(
    state: MDState,
    model: ForceField,
    relax_cell: bool = False,
    pressure: float = 0.0,
    dt_start: float = 0.1,
    dt_max: float = 1.0,
    max_step: float = 0.2,
) -> MDState:
    """Set :class:`FIREVariables` and evaluate forces (and stress when relaxing the cell)."""
    if relax_cell and not bool(state.pbc.all()):
        raise MDInputError("cell relaxation needs fully periodic systems")
    b = state.num_systems
    zeros3 = torch.zeros(b, 3, 3, dtype=torch.float64, device=state.device)
    state.variables = FIREVariables(
        velocity=torch.zeros_like(state.positions),
        cell_velocity=zeros3.clone(),
        cell_coordinate=zeros3.clone(),
        reference_cell=state.cell.clone(),
        dt=state.per_system(dt_start),
        alpha=state.per_system(_ALPHA_START),
        positive_steps=state.per_system(0.0),
        pressure=state.per_system(pressure),
        dt_max=float(dt_max),
        max_step=float(max_step),
        relax_cell=bool(relax_cell),
    )
    return model(state, compute_stress=relax_cell)


_ALPHA_START, _F_ALPHA, _F_INC, _F_DEC, _N_MIN = 0.1, 0.99, 1.1, 0.5, 5


def _deformation(state: MDState) -> torch.Tensor:
    """``[B, 3, 3]`` symmetric ``F = exp(X / c)``."""
    scale = state.num_atoms.to(torch.float64)[:, None, None]
    lam, vec = torch.linalg.eigh(state.variables_of(FIREVariables).cell_coordinate / scale)
    return vec @ torch.diag_embed(torch.exp(lam)) @ vec.transpose(1, 2)


def generalized_forces(state: MDState) -> tuple[torch.Tensor, torch.Tensor]:
    """Forces on the atoms' cell-frame coordinates ``[N, 3]`` (eV/Å) and on ``X`` ``[B, 3, 3]`` (eV;
    zero without cell relaxation)."""
    variables = state.variables_of(FIREVariables)
    if not variables.relax_cell:
        return state.forces, torch.zeros_like(variables.cell_velocity)
    f_atoms = torch.einsum("ni,nji->nj", state.forces, _deformation(state)[state.batch])
    eye = torch.eye(3, dtype=torch.float64, device=state.device)
    volume = state.volume()[:, None, None]
    virial = -volume * (state.stress + variables.pressure[:, None, None] * eye)
    return f_atoms, virial / state.num_atoms.to(torch.float64)[:, None, None]


def max_force(state: MDState) -> torch.Tensor:
    """``[B]`` largest generalized force (eV/Å for atoms; cell rows included when relaxing the cell)."""
    f_atoms, f_cell = generalized_forces(state)
    per_atom = torch.zeros(state.num_systems, dtype=torch.float64, device=state.device)
    per_atom = per_atom.scatter_reduce(0, state.batch, f_atoms.norm(dim=1), "amax")
    return torch.maximum(per_atom, f_cell.norm(dim=2).amax(dim=1))


def step(state: MDState, model: ForceField, fmax: float = 0.0) -> MDState:
    """One FIRE step for every system whose max force is still ``>= fmax`` (eV/Å)."""
    fire = state.variables_of(FIREVariables)  # updated in place
    dt_max, max_step, relax_cell = fire.dt_max, fire.max_step, fire.relax_cell
    active = max_force(state) >= fmax  # [B]
    f, g = generalized_forces(state)
    v, w = fire.velocity, fire.cell_velocity
    power = state.system_sum((f * v).sum(dim=1)) + (g * w).sum(dim=(1, 2))
    f_norm = torch.sqrt(state.system_sum((f * f).sum(dim=1)) + (g * g).sum(dim=(1, 2))).clamp(min=1e-300)
    v_norm = torch.sqrt(state.system_sum((v * v).sum(dim=1)) + (w * w).sum(dim=(1, 2)))
    uphill = power <= 0
    mix = (fire.alpha * v_norm / f_norm)[:, None]
    keep = 1.0 - fire.alpha
    v = torch.where(
        state.per_atom(uphill)[:, None], 0.0, keep[state.batch, None] * v + state.per_atom(mix) * f
    )
    w = torch.where(uphill[:, None, None], 0.0, keep[:, None, None] * w + mix[:, :, None] * g)
    grow = ~uphill & (fire.positive_steps > _N_MIN)
    dt = torch.where(
        uphill,
        fire.dt * _F_DEC,
        torch.where(grow, (fire.dt * _F_INC).clamp(max=dt_max), fire.dt),
    )
    fire.alpha = torch.where(uphill, _ALPHA_START, torch.where(grow, fire.alpha * _F_ALPHA, fire.alpha))
    fire.positive_steps = torch.where(uphill, 0.0, fire.positive_steps + 1.0)
    v = v + dt[state.batch, None] * f
    w = w + dt[:, None, None] * g
    dr, dx = dt[state.batch, None] * v, dt[:, None, None] * w
    largest = torch.zeros_like(dt).scatter_reduce(0, state.batch, dr.norm(dim=1), "amax")
    largest = torch.maximum(largest, dx.norm(dim=2).amax(dim=1))
    shrink = torch.where(largest > max_step, max_step / largest.clamp(min=1e-300), 1.0)
    shrink = torch.where(active, shrink, 0.0)
    dr, dx = dr * shrink[state.batch, None], dx * shrink[:, None, None]
    if relax_cell:
        frame = torch.linalg.solve(
            _deformation(state), torch.eye(3, dtype=torch.float64, device=state.device)
        )
        s = torch.einsum("ni,nij->nj", state.positions, frame[state.batch]) + dr
        fire.cell_coordinate = fire.cell_coordinate + 0.5 * (dx + dx.transpose(1, 2))
        deformation = _deformation(state)
        state.positions = torch.einsum("ni,nij->nj", s, deformation[state.batch])
        state.cell = fire.reference_cell @ deformation
    else:
        state.positions = state.positions + dr
    fire.velocity = torch.where(state.per_atom(active)[:, None], v, 0.0)
    fire.cell_velocity = torch.where(active[:, None, None], w, 0.0)
    fire.dt = dt
    model(state, compute_stress=relax_cell)
    state.step += 1
    return state


def relax(
    state: MDState,
    model: ForceField,
    fmax: float = 0.05,
    max_steps: int = 1000,
    on_step: Callable[[MDState], None] | None = None,
) -> tuple[MDState, bool]:
    """Run FIRE (after :func:`init`) until every system's max force is below ``fmax`` (eV/Å) or
    ``max_steps``; returns the state and whether all systems converged. ``on_step(state)`` is called
    after every step (e.g. to write the relaxation path). The structure and ``fmax`` are checked first
    (:class:`~mlip.md.checks.MDInputError`); a non-finite position, force, energy, cell or stress at any
    step raises :class:`~mlip.md.checks.ExplosionError`, so convergence is never claimed on non-finite
    values."""
    check_parameter("fmax", fmax, "eV/Å")
    check_structure(state, "initial state")
    for _ in range(max_steps):
        _stop_if_non_finite(state)
        if bool((max_force(state) < fmax).all()):
            return state, True
        step(state, model, fmax)
        if on_step is not None:
            on_step(state)
    _stop_if_non_finite(state)
    return state, bool((max_force(state) < fmax).all())


def _stop_if_non_finite(state: MDState) -> None:
    bad = non_finite(state)
    if bad:
        system, reason = min(bad.items())
        raise ExplosionError(state.step, f"FIRE: {reason}", system)
