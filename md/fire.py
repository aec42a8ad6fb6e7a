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

import torch

from mlip.md.checks import ExplosionError, check_parameter, check_structure
from mlip.md.forcefield import ForceField
from mlip.md.observers import non_finite
from mlip.md.state import MDState


def init(
    state: MDState,
    model: ForceField,
    relax_cell: bool = False,
    pressure: float = 0.0,
    dt_start: float = 0.1,
    dt_max: float = 1.0,
    max_step: float = 0.2,
) -> MDState:
    """Set the FIRE variables in ``aux`` and evaluate forces (and stress when relaxing the cell)."""
    if relax_cell and not bool(state.pbc.all()):
        raise ValueError("cell relaxation needs fully periodic systems")
    b = state.num_systems
    zeros3 = torch.zeros(b, 3, 3, dtype=torch.float64, device=state.device)
    state.aux.update(
        fire_velocity=torch.zeros_like(state.positions),
        fire_cell_velocity=zeros3.clone(),
        fire_cell_coordinate=zeros3.clone(),
        fire_reference_cell=state.cell.clone(),
        fire_dt=state.per_system(dt_start),
        fire_alpha=state.per_system(_ALPHA_START),
        fire_positive_steps=state.per_system(0.0),
        fire_pressure=state.per_system(pressure),
        fire_params=torch.tensor([dt_max, max_step, float(relax_cell)], dtype=torch.float64),
    )
    return model(state, compute_stress=relax_cell)


_ALPHA_START, _F_ALPHA, _F_INC, _F_DEC, _N_MIN = 0.1, 0.99, 1.1, 0.5, 5


def _deformation(state: MDState) -> torch.Tensor:
    """``[B, 3, 3]`` symmetric ``F = exp(X / c)``."""
    scale = state.num_atoms.to(torch.float64)[:, None, None]
    lam, vec = torch.linalg.eigh(state.aux["fire_cell_coordinate"] / scale)
    return vec @ torch.diag_embed(torch.exp(lam)) @ vec.transpose(1, 2)


def generalized_forces(state: MDState) -> tuple[torch.Tensor, torch.Tensor]:
    """Forces on the atoms' cell-frame coordinates ``[N, 3]`` (eV/Å) and on ``X`` ``[B, 3, 3]`` (eV;
    zero without cell relaxation)."""
    if not bool(state.aux["fire_params"][2]):
        return state.forces, torch.zeros_like(state.aux["fire_cell_velocity"])
    f_atoms = torch.einsum("ni,nji->nj", state.forces, _deformation(state)[state.batch])
    eye = torch.eye(3, dtype=torch.float64, device=state.device)
    volume = state.volume()[:, None, None]
    virial = -volume * (state.stress + state.aux["fire_pressure"][:, None, None] * eye)
    return f_atoms, virial / state.num_atoms.to(torch.float64)[:, None, None]


def max_force(state: MDState) -> torch.Tensor:
    """``[B]`` largest generalized force (eV/Å for atoms; cell rows included when relaxing the cell)."""
    f_atoms, f_cell = generalized_forces(state)
    per_atom = torch.zeros(state.num_systems, dtype=torch.float64, device=state.device)
    per_atom = per_atom.scatter_reduce(0, state.batch, f_atoms.norm(dim=1), "amax")
    return torch.maximum(per_atom, f_cell.norm(dim=2).amax(dim=1))


def step(state: MDState, model: ForceField, fmax: float = 0.0) -> MDState:
    """One FIRE step for every system whose max force is still ``>= fmax`` (eV/Å)."""
    aux = state.aux
    dt_max, max_step, relax_cell = aux["fire_params"].tolist()
    active = max_force(state) >= fmax  # [B]
    f, g = generalized_forces(state)
    v, w = aux["fire_velocity"], aux["fire_cell_velocity"]
    power = state.system_sum((f * v).sum(dim=1)) + (g * w).sum(dim=(1, 2))
    f_norm = torch.sqrt(state.system_sum((f * f).sum(dim=1)) + (g * g).sum(dim=(1, 2))).clamp(min=1e-300)
    v_norm = torch.sqrt(state.system_sum((v * v).sum(dim=1)) + (w * w).sum(dim=(1, 2)))
    uphill = power <= 0
    mix = (aux["fire_alpha"] * v_norm / f_norm)[:, None]
    keep = 1.0 - aux["fire_alpha"]
    v = torch.where(
        state.per_atom(uphill)[:, None], 0.0, keep[state.batch, None] * v + state.per_atom(mix) * f
    )
    w = torch.where(uphill[:, None, None], 0.0, keep[:, None, None] * w + mix[:, :, None] * g)
    grow = ~uphill & (aux["fire_positive_steps"] > _N_MIN)
    dt = torch.where(
        uphill,
        aux["fire_dt"] * _F_DEC,
        torch.where(grow, (aux["fire_dt"] * _F_INC).clamp(max=dt_max), aux["fire_dt"]),
    )
    aux["fire_alpha"] = torch.where(
        uphill, _ALPHA_START, torch.where(grow, aux["fire_alpha"] * _F_ALPHA, aux["fire_alpha"])
    )
    aux["fire_positive_steps"] = torch.where(uphill, 0.0, aux["fire_positive_steps"] + 1.0)
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
        aux["fire_cell_coordinate"] = aux["fire_cell_coordinate"] + 0.5 * (dx + dx.transpose(1, 2))
        deformation = _deformation(state)
        state.positions = torch.einsum("ni,nij->nj", s, deformation[state.batch])
        state.cell = aux["fire_reference_cell"] @ deformation
    else:
        state.positions = state.positions + dr
    aux["fire_velocity"] = torch.where(state.per_atom(active)[:, None], v, 0.0)
    aux["fire_cell_velocity"] = torch.where(active[:, None, None], w, 0.0)
    aux["fire_dt"] = dt
    model(state, compute_stress=bool(relax_cell))
    state.step += 1
    return state


def relax(
    state: MDState, model: ForceField, fmax: float = 0.05, max_steps: int = 1000
) -> tuple[MDState, bool]:
    """Run FIRE (after :func:`init`) until every system's max force is below ``fmax`` (eV/Å) or
    ``max_steps``; returns the state and whether all systems converged. The structure and ``fmax`` are
    checked first (:class:`~mlip.md.checks.MDInputError`); a non-finite position, force, energy, cell or
    stress at any step raises :class:`~mlip.md.checks.ExplosionError`, so convergence is never claimed on
    non-finite values."""
    check_parameter("fmax", fmax, "eV/Å")
    check_structure(state, "initial state")
    for _ in range(max_steps):
        _stop_if_non_finite(state)
        if bool((max_force(state) < fmax).all()):
            return state, True
        step(state, model, fmax)
    _stop_if_non_finite(state)
    return state, bool((max_force(state) < fmax).all())


def _stop_if_non_finite(state: MDState) -> None:
    bad = non_finite(state)
    if bad:
        system, reason = min(bad.items())
        raise ExplosionError(state.step, f"FIRE: {reason}", system)
