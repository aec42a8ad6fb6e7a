"""What a run measures: per-step energies, temperature and pressure, the NVE drift metric, and the
explosion guard that stops a run that has gone wrong."""

from __future__ import annotations

import dataclasses

import torch

from mlip.md.state import MDState
from mlip.md.units import EV_A3_TO_GPA


def observe(state: MDState) -> dict[str, torch.Tensor]:
    """Per-system observables ``[B]`` of the current state: ``kinetic``, ``potential``, ``total`` (eV),
    ``temperature`` (K) and, when the state holds a stress and a full cell, ``pressure`` (GPa)."""
    kinetic = state.kinetic_energy()
    out = {
        "kinetic": kinetic,
        "potential": state.energy,
        "total": kinetic + state.energy,
        "temperature": state.temperature(),
    }
    if state.stress is not None and bool(state.pbc.all()):
        out["pressure"] = state.pressure() * EV_A3_TO_GPA
    return out


class EnergyLog:
    """Time series of :func:`observe` (one row per logged step), kept on the CPU."""

    def __init__(self) -> None:
        self.time: list[float] = []
        self.step: list[int] = []
        self.values: dict[str, list[torch.Tensor]] = {}

    def record(self, state: MDState) -> dict[str, torch.Tensor]:
        """Append the observables of ``state``; return them."""
        obs = observe(state)
        self.time.append(state.time)
        self.step.append(state.step)
        for key, value in obs.items():
            self.values.setdefault(key, []).append(value.detach().cpu())
        return obs

    def series(self, key: str) -> torch.Tensor:
        """``[T, B]`` values of one observable."""
        if key not in self.values:
            raise KeyError(f"no observable {key!r}; logged: {sorted(self.values)}")
        return torch.stack(self.values[key])

    def drift(self, num_atoms: torch.Tensor, equilibration: float = 0.1) -> torch.Tensor:
        """``[B]`` NVE energy drift in meV/atom/ps: least-squares slope of the total energy over time,
        after discarding the first ``equilibration`` fraction of the log."""
        if len(self.time) < 3:
            raise ValueError("the drift needs at least 3 logged steps")
        first = min(int(equilibration * len(self.time)), len(self.time) - 2)
        t = torch.tensor(self.time[first:], dtype=torch.float64) * 1e-3  # ps
        e = self.series("total")[first:]
        t = t - t.mean()
        slope = (t[:, None] * (e - e.mean(dim=0))).sum(dim=0) / (t * t).sum()  # eV/ps
        return 1e3 * slope / num_atoms.cpu().to(torch.float64)


@dataclasses.dataclass
class ExplosionGuard:
    """Stops a run when a system blows up.

    Attributes:
        max_force: eV/Å, largest allowed force on an atom.
        max_temperature: K.
        min_distance: Å, closest allowed approach of two atoms (checked on neighbour-list edges).
    """

    max_force: float = 50.0
    max_temperature: float = 1e5
    min_distance: float = 0.4

    def check(self, state: MDState, edge_vectors: torch.Tensor | None = None) -> str | None:
        """The reason to stop, naming the system and the value, or ``None``. ``edge_vectors`` ``[E, 3]``
        (Å) are the current neighbour-list vectors, used for the distance check."""
        if not bool(torch.isfinite(state.positions).all()) or not bool(torch.isfinite(state.energy).all()):
            return "non-finite positions or energy"
        force = state.forces.norm(dim=1)
        worst = int(force.argmax()) if force.numel() else 0
        if force.numel() and float(force[worst]) > self.max_force:
            return (
                f"force {float(force[worst]):.3g} eV/Å on atom {worst} of system {int(state.batch[worst])} "
                f"exceeds max_force={self.max_force}"
            )
        temperature = state.temperature()
        hot = int(temperature.argmax())
        if float(temperature[hot]) > self.max_temperature:
            return (
                f"temperature {float(temperature[hot]):.4g} K of system {hot} exceeds "
                f"max_temperature={self.max_temperature}"
            )
        if edge_vectors is not None and edge_vectors.shape[0]:
            lengths = edge_vectors.norm(dim=1)
            closest = int(lengths.argmin())
            if float(lengths[closest]) < self.min_distance:
                distance = float(lengths[closest])
                return f"two atoms are {distance:.3g} Å apart (< min_distance={self.min_distance})"
        return None
