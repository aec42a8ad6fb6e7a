"""What a run measures: per-step energies, temperature and pressure, the NVE drift metric, and the
explosion guard that stops a run that has gone wrong."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import torch

from mlip.md.checks import MDInputError
from mlip.md.fields import ThermostatVariables
from mlip.md.state import MDState
from mlip.md.units import EV_A3_TO_GPA


def observe(state: MDState) -> dict[str, torch.Tensor]:
    """Per-system observables ``[B]`` of the current state: ``kinetic``, ``potential``, ``total`` (eV),
    ``temperature`` (K), when the state holds a stress and a full cell, ``pressure`` (GPa), and for a
    committee ``max_forces_std`` (eV/Å, the largest per-atom force spread of the system)."""
    kinetic = state.kinetic_energy()
    out = {
        "kinetic": kinetic,
        "potential": state.energy,
        "total": kinetic + state.energy,
        "temperature": state.temperature(),
    }
    if state.stress is not None and bool(state.pbc.all()):
        out["pressure"] = state.pressure() * EV_A3_TO_GPA
    if state.forces_std is not None:
        out["max_forces_std"] = max_per_system(state, state.forces_std)
    return out


def max_per_system(state: MDState, values: torch.Tensor) -> torch.Tensor:
    """``[B]`` the largest of per-atom ``values`` ``[N]`` in each system."""
    out = torch.full((state.num_systems,), -math.inf, dtype=values.dtype, device=values.device)
    return out.scatter_reduce(0, state.batch, values, "amax")


class EnergyLog:
    """Time series of :func:`observe` (one row per logged step), kept on the CPU. The columns are the
    systems of the first recorded state (``system_ids``); a system dropped later reads NaN from then on."""

    def __init__(self) -> None:
        self.time: list[float] = []
        self.step: list[int] = []
        self.values: dict[str, list[torch.Tensor]] = {}
        self.system_ids: torch.Tensor | None = None

    def record(self, state: MDState) -> dict[str, torch.Tensor]:
        """Append the observables of ``state``; return them."""
        obs = observe(state)
        ids = state.system_ids.cpu()
        if self.system_ids is None:
            self.system_ids = ids.clone()
        columns = torch.searchsorted(self.system_ids, ids)
        if not torch.equal(self.system_ids[columns.clamp(max=len(self.system_ids) - 1)], ids):
            raise ValueError(f"systems {ids.tolist()} are not among the log's {self.system_ids.tolist()}")
        self.time.append(state.time)
        self.step.append(state.step)
        for key, value in obs.items():
            row = torch.full((len(self.system_ids),), math.nan, dtype=value.dtype)
            self.values.setdefault(key, []).append(row.index_copy(0, columns, value.detach().cpu()))
        return obs

    def series(self, key: str) -> torch.Tensor:
        """``[T, B]`` values of one observable."""
        if key not in self.values:
            raise KeyError(f"no observable {key!r}; logged: {sorted(self.values)}")
        return torch.stack(self.values[key])

    def drift(self, num_atoms: torch.Tensor, equilibration: float = 0.0) -> torch.Tensor:
        """``[B]`` NVE energy drift in meV/atom/ps: least-squares slope of the total energy over time,
        over the whole log unless the first ``equilibration`` fraction is discarded."""
        if len(self.time) < 3:
            raise ValueError("the drift needs at least 3 logged steps")
        first = min(int(equilibration * len(self.time)), len(self.time) - 2)
        t = torch.tensor(self.time[first:], dtype=torch.float64) * 1e-3  # ps
        e = self.series("total")[first:]
        t = t - t.mean()
        slope = (t[:, None] * (e - e.mean(dim=0))).sum(dim=0) / (t * t).sum()  # eV/ps
        return 1e3 * slope / num_atoms.cpu().to(torch.float64)

    def fluctuation(self, num_atoms: torch.Tensor) -> torch.Tensor:
        """``[B]`` meV/atom, standard deviation of the total energy over the log."""
        return 1e3 * self.series("total").std(dim=0, correction=0) / num_atoms.cpu().to(torch.float64)


@dataclasses.dataclass
class ExplosionGuard:
    """Finds the systems of a batch that have blown up.

    :meth:`start` records the reference (total energy, which systems have an atom without neighbours) at
    the start of a run; :meth:`check` then runs after every step. A system has exploded when any of its
    positions, velocities, forces, energy, cell or stress is non-finite, two atoms come closer than
    ``min_distance``, a force exceeds ``max_force``, an atom has lost all its neighbours (no other atom
    within the cutoff, so zero force) while the system had no such atom at the start, its temperature
    exceeds ``max_temperature`` or, for a thermostatted run (the state's variables are
    :class:`~mlip.md.fields.ThermostatVariables`), ``max_temperature_ratio`` times the target, or, for a
    run without a thermostat (NVE), its total energy has changed by more than ``max_energy_change`` per
    atom.

    Attributes:
        max_force: eV/Å.
        max_temperature: K, for every run.
        max_temperature_ratio: largest temperature / target temperature of a thermostatted run.
        max_energy_change: eV/atom, largest change of the total energy of a run without a thermostat.
        min_distance: Å, closest allowed approach of two atoms.
        max_uncertainty: eV/Å, largest allowed per-atom committee force spread (``MDState.forces_std``);
            ``None``: not checked. A system above it stops as uncertain, not exploded
            (:meth:`uncertain`; :class:`~mlip.md.checks.UncertaintyError`), and only when no other
            check fired.
    """

    max_force: float = 50.0
    max_temperature: float = 1e5
    max_temperature_ratio: float = 10.0
    max_energy_change: float = 0.1
    min_distance: float = 0.4
    max_uncertainty: float | None = None

    def __post_init__(self) -> None:
        self._uncertain: set[int] = set()
        self._start_step = 0
        self._reference_total: torch.Tensor | None = None
        self._had_isolated: torch.Tensor | None = None

    def start(self, state: MDState, edge_index: torch.Tensor) -> None:
        """Record the reference of a run starting at ``state`` (energies evaluated); ``edge_index``
        ``[2, E]`` are the pairs within the potential's cutoff."""
        if self.max_uncertainty is not None and state.forces_std is None:
            raise MDInputError(
                f"max_uncertainty = {self.max_uncertainty} eV/Å needs a committee model "
                "(mlip.models.Committee): the potential gives no force spread"
            )
        self._start_step = state.step
        self._reference_total = observe(state)["total"].detach().clone()
        self._had_isolated = state.system_sum(_isolated(state, edge_index).to(torch.int64)) > 0

    def keep(self, systems: torch.Tensor) -> None:
        """Keep the references of the systems ``systems`` (batch indices, ascending) only: after the
        others were dropped from the state."""
        if self._reference_total is None or self._had_isolated is None:
            raise RuntimeError("ExplosionGuard.keep before start")
        self._reference_total = self._reference_total[systems]
        self._had_isolated = self._had_isolated[systems]

    def check(self, state: MDState, edge_index: torch.Tensor, edge_vectors: torch.Tensor) -> dict[int, str]:
        """``{b: reason}`` for every system (batch index ``b``) that has exploded (empty when none has);
        each reason is one line naming the system (by its ``system_ids``) and the value. ``edge_index``
        ``[2, E]`` and ``edge_vectors`` ``[E, 3]`` (Å) are the current pairs within the cutoff."""
        if self._reference_total is None or self._had_isolated is None:
            raise RuntimeError("ExplosionGuard.check before start")
        reasons = non_finite(state)
        flag = functools.partial(_flag, reasons, state.system_ids.tolist())
        if edge_index.shape[1]:
            lengths = edge_vectors.norm(dim=1)
            shortest = torch.full((state.num_systems,), math.inf, dtype=lengths.dtype, device=state.device)
            shortest = shortest.scatter_reduce(0, state.batch[edge_index[0]], lengths, "amin")
            flag(
                shortest < self.min_distance,
                lambda b: (
                    f"two atoms are {float(shortest[b]):.3g} Å apart (< min_distance={self.min_distance})"
                ),
            )
        force = state.forces.norm(dim=1)
        largest = torch.zeros(state.num_systems, dtype=force.dtype, device=state.device)
        largest = largest.scatter_reduce(0, state.batch, force, "amax")
        flag(
            largest > self.max_force,
            lambda b: f"force {float(largest[b]):.3g} eV/Å exceeds max_force={self.max_force}",
        )
        isolated = _isolated(state, edge_index)
        lost = (state.system_sum(isolated.to(torch.int64)) > 0) & ~self._had_isolated

        def lonely(b: int) -> str:
            first = int((isolated & (state.batch == b)).nonzero()[0, 0])
            local = first - int(state.num_atoms[:b].sum())
            return f"atom {local} has no neighbour within the cutoff (zero force): it left the structure"

        flag(lost, lonely)
        temperature = state.temperature()
        flag(
            temperature > self.max_temperature,
            lambda b: (
                f"temperature {float(temperature[b]):.4g} K exceeds max_temperature={self.max_temperature}"
            ),
        )
        if isinstance(state.variables, ThermostatVariables):
            target = state.variables.temperature
            flag(
                (target > 0) & (temperature > self.max_temperature_ratio * target),
                lambda b: (
                    f"temperature {float(temperature[b]):.4g} K is more than "
                    f"{self.max_temperature_ratio:g} x the target {float(target[b]):.4g} K"
                ),
            )
        else:
            change = (observe(state)["total"] - self._reference_total).abs() / state.num_atoms
            flag(
                change > self.max_energy_change,
                lambda b: (
                    f"total energy changed by {float(change[b]):.3g} eV/atom since step "
                    f"{self._start_step} (max_energy_change={self.max_energy_change} eV/atom)"
                ),
            )
        exploded = set(reasons)
        if self.max_uncertainty is not None and state.forces_std is not None:
            spread = max_per_system(state, state.forces_std)

            def uncertain(b: int) -> str:
                in_system = torch.where(state.batch == b, state.forces_std, -math.inf)
                local = int(in_system.argmax()) - int(state.num_atoms[:b].sum())
                return (
                    f"committee force std {float(spread[b]):.3g} eV/Å on atom {local} exceeds "
                    f"max_uncertainty={self.max_uncertainty} eV/Å: outside the training data"
                )

            flag(spread > self.max_uncertainty, uncertain)
        self._uncertain = set(reasons) - exploded
        return dict(sorted(reasons.items()))

    def uncertain(self, system: int) -> bool:
        """Whether the last :meth:`check` flagged system ``system`` (batch index) only as uncertain."""
        return system in self._uncertain


def non_finite(state: MDState) -> dict[int, str]:
    """``{b: reason}`` for the systems (batch index ``b``) with a non-finite position, velocity, force,
    energy, cell or stress (the first atom named; the reason names the system by its ``system_ids``)."""
    reasons: dict[int, str] = {}
    ids = state.system_ids.tolist()
    per_atom = {"position": state.positions, "velocity": state.velocities, "force": state.forces}
    for name, values in per_atom.items():
        if values is None:
            continue
        bad = (~torch.isfinite(values)).any(dim=1)
        for i in bad.nonzero().squeeze(1).tolist():
            b = int(state.batch[i])
            local = i - int(state.num_atoms[:b].sum())
            reasons.setdefault(b, f"system {ids[b]}: non-finite {name} of atom {local}")
    flag = functools.partial(_flag, reasons, ids)
    if state.energy is not None:
        flag(~torch.isfinite(state.energy), lambda b: "non-finite energy")
    flag(~torch.isfinite(state.cell).all(dim=(1, 2)), lambda b: "non-finite cell")
    if state.stress is not None:
        flag(~torch.isfinite(state.stress).all(dim=(1, 2)), lambda b: "non-finite stress")
    return reasons


def _flag(reasons: dict[int, str], ids: list[int], mask: torch.Tensor, reason: Callable[[int], str]) -> None:
    """Add ``system ID: reason(b)`` (``ID = ids[b]``, the replica) for every system ``b`` where ``mask``
    ``[B]`` is set and that has no reason yet."""
    for b in mask.nonzero().squeeze(1).tolist():
        reasons.setdefault(b, f"system {ids[b]}: {reason(b)}")


def _isolated(state: MDState, edge_index: torch.Tensor) -> torch.Tensor:
    """``[N]`` bool, atoms without a neighbour within the cutoff in a system of more than one atom."""
    degree = torch.bincount(edge_index[0], minlength=state.positions.shape[0])
    return (degree == 0) & (state.per_atom(state.num_atoms) > 1)
