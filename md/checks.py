"""What the MD driver refuses before the first step, and the errors it raises.

Bad input (a structure or a run parameter) raises :class:`MDInputError` (a
:class:`~mlip.data.atomic_data.DataError`, so the CLI prints one line and exits with code 2) naming the
source (file) and the atom indices; an output file that would be replaced raises
:class:`OutputExistsError`. A run that fails after it started raises :class:`ExplosionError` (a
:class:`~mlip.errors.RunFailedError`, CLI exit code 1) carrying the step, the system and the reason;
its subclass :class:`UncertaintyError` when a committee became too uncertain (``max_uncertainty``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mlip.data.atomic_data import DataError
from mlip.data.neighbors import HARD_MIN_DISTANCE, CloseAtomsError, batched_neighbor_list, closest_pair
from mlip.errors import RunFailedError, UserInputError

if TYPE_CHECKING:
    from mlip.md.state import MDState

MIN_RELATIVE_VOLUME = 1e-6  # volume / product of lattice lengths below which a periodic cell is flat


class MDInputError(DataError):
    """A structure or MD parameter the driver refuses; the message names the source and the atoms."""


class MissingInputError(MDInputError, FileNotFoundError):
    """An input file (structure, trajectory to append to) does not exist."""


class OutputExistsError(UserInputError, FileExistsError):
    """An output file exists and the run would replace it (pass overwrite or append)."""


class ExplosionError(RunFailedError):
    """A run stopped because a system exploded or became non-finite.

    Attributes:
        step: the step at which it was detected.
        system: index of the system in the batch (``None`` when not tied to one).
        reason: one line saying what was seen.
        result: the run's :class:`~mlip.md.run.RunResult` up to that step (log, state), when available.
    """

    def __init__(self, step: int, reason: str, system: int | None = None, result: Any = None) -> None:
        self.step, self.reason, self.system, self.result = step, reason, system, result
        super().__init__(f"step {step}: {reason}")


class UncertaintyError(ExplosionError):
    """A run stopped because a committee's force spread exceeded the run's ``max_uncertainty``: the
    trajectory left the region the model was trained on (nothing exploded, but forces are guesses)."""


def check_parameter(name: str, value: Any, unit: str, allow_zero: bool = False) -> None:
    """Refuse a non-finite, negative or (unless ``allow_zero``) zero run parameter (scalar or tensor)."""
    values = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    bound = "must be >= 0" if allow_zero else "must be > 0"
    bad = ~torch.isfinite(values) | (values < 0 if allow_zero else values <= 0)
    if bool(bad.any()):
        shown = float(values[bad][0])
        raise MDInputError(f"{name} = {shown:g} {unit}: {bound}")


def check_structure(state: MDState, source: str | Path | None = None) -> None:
    """Refuse a state that no step can start from: non-finite positions, velocities, masses or cell; a
    non-positive mass; a periodic cell with a zero-length or flat (near-zero volume) lattice; two atoms
    (or an atom and its periodic image) closer than
    :data:`~mlip.data.neighbors.HARD_MIN_DISTANCE` (:class:`~mlip.data.neighbors.CloseAtomsError`). The
    error names
    ``source`` (a file, or a description) and the atom indices within their system."""
    where = f"{source}: " if source is not None else ""
    counts = state.num_atoms.tolist()
    starts = [0]
    for n in counts:
        starts.append(starts[-1] + n)

    def atoms(indices: list[int]) -> str:
        b = int(state.batch[indices[0]])
        local = [str(i - starts[b]) for i in indices]
        listed = " and ".join(local) if len(local) == 2 else ", ".join(local)
        system = f" of system {b}" if state.num_systems > 1 else ""
        return f"atom{'s' if len(indices) > 1 else ''} {listed}{system}"

    for name, values in (("position", state.positions), ("velocity", state.velocities)):
        bad = (~torch.isfinite(values)).any(dim=1).nonzero().squeeze(1).tolist()
        if bad:
            raise MDInputError(f"{where}non-finite {name} of {atoms(bad[:5])}")
    bad = (~torch.isfinite(state.masses) | (state.masses <= 0)).nonzero().squeeze(1).tolist()
    if bad:
        raise MDInputError(f"{where}mass must be finite and > 0, not of {atoms(bad[:5])}")
    for b in range(state.num_systems):
        _check_cell(state.cell[b], state.pbc[b], where + (f"system {b}: " if state.num_systems > 1 else ""))
    edge_index, shifts = batched_neighbor_list(
        state.positions, state.cell, state.pbc, state.batch, HARD_MIN_DISTANCE
    )
    closest = closest_pair(state.positions, state.cell, state.batch, edge_index, shifts)
    if closest is not None:
        i, j, distance = closest
        pair = atoms([i]) + " and its periodic image" if i == j else atoms(sorted((i, j)))
        raise CloseAtomsError(f"{where}{pair} are {distance:.3g} Å apart (hard floor {HARD_MIN_DISTANCE} Å)")


def _check_cell(cell: torch.Tensor, pbc: torch.Tensor, where: str) -> None:
    if not bool(torch.isfinite(cell).all()):
        raise MDInputError(f"{where}the cell is not finite")
    periodic = cell[pbc]
    if periodic.shape[0] == 0:
        return
    lengths = periodic.norm(dim=1)
    if float(lengths.min()) < HARD_MIN_DISTANCE:
        raise MDInputError(
            f"{where}periodic lattice vector of length {float(lengths.min()):.3g} Å "
            f"(< {HARD_MIN_DISTANCE} Å): the cell has (near-)zero volume"
        )
    volume = math.sqrt(max(float(torch.linalg.det(periodic @ periodic.T)), 0.0))  # volume, area or length
    if volume < MIN_RELATIVE_VOLUME * float(lengths.prod()):
        raise MDInputError(f"{where}periodic cell of (near-)zero volume {volume:.3g} Å^{periodic.shape[0]}")
