"""Batched molecular dynamics: state, integrators, observers, trajectory writers.

Integrators are modules with ``init(state, model, ...)`` and ``step(state, model, dt)`` acting on a
batched :class:`MDState` with a :class:`ForceField` (a potential plus its skin neighbour list); units eV,
Å, fs, amu, K (velocities Å/fs, see :mod:`mlip.md.units`). :data:`INTEGRATORS` names them for the CLI.
Bad input raises :class:`MDInputError` before the first step; a run that explodes raises
:class:`ExplosionError` (see :mod:`mlip.md.checks`).
"""

from mlip.md import csvr, fire, langevin, nose_hoover, npt, nve
from mlip.md.checks import ExplosionError, MDInputError, OutputExistsError, UncertaintyError
from mlip.md.forcefield import ForceField
from mlip.md.observers import EnergyLog, ExplosionGuard, observe
from mlip.md.run import RunResult, simulate
from mlip.md.state import MDState, from_atoms, maxwell_boltzmann, to_atoms, zero_momentum
from mlip.md.trajectory import ASEWriter, CandidateWriter, H5MDWriter, read_h5md, resume

INTEGRATORS = {"nve": nve, "langevin": langevin, "nhc": nose_hoover, "csvr": csvr, "npt": npt}

__all__ = [
    "INTEGRATORS",
    "ASEWriter",
    "CandidateWriter",
    "EnergyLog",
    "ExplosionError",
    "ExplosionGuard",
    "ForceField",
    "H5MDWriter",
    "MDInputError",
    "MDState",
    "OutputExistsError",
    "RunResult",
    "UncertaintyError",
    "csvr",
    "fire",
    "from_atoms",
    "langevin",
    "maxwell_boltzmann",
    "nose_hoover",
    "npt",
    "nve",
    "observe",
    "read_h5md",
    "resume",
    "simulate",
    "to_atoms",
    "zero_momentum",
]
