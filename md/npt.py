"""NPT with stochastic cell rescaling (Bernetti & Bussi 2020) and the CSVR thermostat.

The barostat acts on the log-strain of each cell (positions and cell scaled by ``mu = exp(d eps)``,
velocities by ``mu^-1``), with ``P_int`` the instantaneous pressure (kinetic plus virial, eV/Å^3),
``beta`` the compressibility (Å^3/eV; it sets only the relaxation speed, not the ensemble) and ``tau_p``
the barostat time (fs):

- ``mode="isotropic"``: the volume follows the paper's
  ``d ln V = -(beta / tau_p) (P0 - P_int - kB T / V) dt + sqrt(2 kB T beta / (V tau_p)) dW`` and the cell
  keeps its shape (``eps = (ln V) / 3`` times the identity).
- ``mode="full"``: ``eps`` is a symmetric 3x3 matrix (no rotation) driven by the pressure tensor: each
  diagonal element follows ``-(beta / (3 tau_p)) (P0 - P_aa - kB T / V) dt +
  sqrt(2 kB T beta / (3 V tau_p)) dW`` (so ``tr eps`` obeys the isotropic volume equation), off-diagonal
  elements ``(beta / (3 tau_p)) P_ab dt`` with half that noise variance.

Each step: thermostat ``dt/2``, kick ``dt/2``, barostat ``dt``, drift ``dt``, forces and stress, kick
``dt/2``, thermostat ``dt/2``. Fully periodic systems without fixed atoms only.
"""

from __future__ import annotations

import dataclasses

import torch

from mlip.md import csvr
from mlip.md.checks import check_parameter
from mlip.md.fields import global_field, system_field
from mlip.md.forcefield import ForceField
from mlip.md.nve import advance_clock, drift, kick
from mlip.md.state import MDState
from mlip.md.units import KB

MODES = ("isotropic", "full")


@dataclasses.dataclass
class NPTVariables(csvr.CSVRVariables):
    """The thermostat's (see :class:`~mlip.md.csvr.CSVRVariables`) and the barostat's: target
    ``pressure`` (eV/Å^3), ``tau_p`` (fs), ``compressibility`` (Å^3/eV), all ``[B]``; ``anisotropic``
    (``mode="full"``) for the whole batch."""

    pressure: torch.Tensor = system_field()
    tau_p: torch.Tensor = system_field()
    compressibility: torch.Tensor = system_field()
    anisotropic: bool = global_field(default=False)


def init(
    state: MDState,
    model: ForceField,
    temperature: float | torch.Tensor,
    pressure: float | torch.Tensor = 0.0,
    mode: str = "isotropic",
    tau_t: float | torch.Tensor = 100.0,
    tau_p: float | torch.Tensor = 1000.0,
    compressibility: float | torch.Tensor = 1.0,
) -> MDState:
    """Set :class:`NPTVariables` (the thermostat as :func:`mlip.md.csvr.init`, ``pressure`` eV/Å^3,
    ``tau_p`` fs, ``compressibility`` Å^3/eV); evaluate forces and stress."""
    if mode not in MODES:
        raise ValueError(f"NPT mode must be one of {MODES}, got {mode!r}")
    if not bool(state.pbc.all()):
        raise ValueError("NPT needs fully periodic systems (pbc = True in all directions)")
    if bool(state.fixed.any()):
        raise ValueError("NPT with fixed atoms is not supported (the cell rescaling moves every atom)")
    check_parameter("barostat tau_p", tau_p, "fs")
    check_parameter("compressibility", compressibility, "Å^3/eV")
    csvr.init(state, model, temperature, tau_t)
    thermostat = state.variables_of(csvr.CSVRVariables)
    state.variables = NPTVariables(
        **{f.name: getattr(thermostat, f.name) for f in dataclasses.fields(thermostat)},
        pressure=state.per_system(pressure),
        tau_p=state.per_system(tau_p),
        compressibility=state.per_system(compressibility),
        anisotropic=mode == "full",
    )
    return model(state, compute_stress=True)


def _pressure_tensor(state: MDState) -> torch.Tensor:
    """``[B, 3, 3]`` eV/Å^3 instantaneous pressure tensor ``(sum m v v^T) / V - stress``."""
    return state.kinetic_tensor() / state.volume()[:, None, None] - state.stress


def _rescale_cell(state: MDState, dt: float) -> None:
    """One barostat update over ``dt`` fs."""
    variables = state.variables_of(NPTVariables)
    volume = state.volume()
    kt = KB * variables.temperature
    rate = variables.compressibility / (3.0 * variables.tau_p)  # [B] Å^3/(eV fs)
    noise_scale = torch.sqrt(2.0 * kt * rate * dt / volume)
    eye = torch.eye(3, dtype=torch.float64, device=state.device)
    if variables.anisotropic:
        p_int = _pressure_tensor(state)
        target = (variables.pressure - kt / volume)[:, None, None] * eye
        noise = torch.stack([n.reshape(3, 3) for n in state.randn_systems(torch.full_like(volume, 9))])
        noise = 0.5 * (noise + noise.transpose(1, 2))
        d_eps = -(rate * dt)[:, None, None] * (target - p_int) + noise_scale[:, None, None] * noise
        d_eps = 0.5 * (d_eps + d_eps.transpose(1, 2))
        lam, vec = torch.linalg.eigh(d_eps)
        mu = vec @ torch.diag_embed(torch.exp(lam)) @ vec.transpose(1, 2)
        mu_inv = vec @ torch.diag_embed(torch.exp(-lam)) @ vec.transpose(1, 2)
    else:
        p_int = _pressure_tensor(state).diagonal(dim1=1, dim2=2).mean(dim=1)
        noise = torch.cat(state.randn_systems(torch.ones_like(volume)))
        d_eps = -rate * dt * (variables.pressure - p_int - kt / volume) + noise_scale * noise / 3.0**0.5
        mu = torch.exp(d_eps)[:, None, None] * eye
        mu_inv = torch.exp(-d_eps)[:, None, None] * eye
    state.positions = torch.einsum("ni,nij->nj", state.positions, mu[state.batch])
    state.velocities = torch.einsum("ni,nij->nj", state.velocities, mu_inv[state.batch])
    state.cell = state.cell @ mu


def step(state: MDState, model: ForceField, dt: float) -> MDState:
    """One NPT step of ``dt`` fs."""
    csvr.rescale(state, 0.5 * dt)
    kick(state, 0.5 * dt)
    _rescale_cell(state, dt)
    drift(state, dt)
    model(state, compute_stress=True)
    kick(state, 0.5 * dt)
    csvr.rescale(state, 0.5 * dt)
    return advance_clock(state, dt)
