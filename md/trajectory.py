"""Trajectory writers: H5MD (HDF5 via h5py; append/resume; flushed after every frame) and ASE formats
(extxyz, .traj).

H5MD layout (version 1.1), one particle group per system of the batch (``system_0000``, ..., named by
``MDState.system_ids``: a replica dropped from a run keeps its name, and its series ends early)::

    /h5md                       version, author, creator
    /particles/system_b/species                 [N] atomic numbers
    /particles/system_b/mass                    [N] amu
    /particles/system_b/box                     dimension, boundary; edges/{step,time,value [T,3,3]}
    /particles/system_b/{position,velocity,force}/{step [T], time [T], value [T,N,3]}
    /observables/system_b/{kinetic,potential,total,temperature[,pressure]}/{step,time,value [T]}
    /observables/system_b/max_forces_std/...    a committee's largest per-atom force spread (eV/Å)

Every ``value`` and ``time`` dataset carries a ``unit`` attribute in the H5MD notation, from the set that
MDAnalysis' ``H5MDReader`` understands: positions and box ``Angstrom``, velocities ``Angstrom fs-1``, time
``fs``, energies ``eV``, temperature ``K``, pressure ``GPa``, and forces ``kJ mol-1 Angstrom-1`` (the one
quantity stored in other units than the package's eV/Å: MDAnalysis knows no eV-based force unit).
Files written before these units (``Å``, ``eV Å-1``, no observable units) read and resume the same.

Every frame is flushed, so a run killed between frames leaves a readable file; reopening with
``append=True`` continues the time series after the last complete frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlip.md.checks import MDInputError, OutputExistsError
from mlip.md.observers import observe
from mlip.md.state import MDState, from_atoms, to_atoms
from mlip.md.units import EV_TO_KJ_PER_MOL

_UNITS = {"position": "Angstrom", "velocity": "Angstrom fs-1", "force": "kJ mol-1 Angstrom-1"}
_OBSERVABLE_UNITS = {
    "kinetic": "eV",
    "potential": "eV",
    "total": "eV",
    "temperature": "K",
    "pressure": "GPa",
    "max_forces_std": "eV Angstrom-1",
}


class H5MDWriter:
    """Appends frames of a batched state to an H5MD file (see the module docstring).

    ``append=True`` on an existing file continues it (the same number of systems, with the same species
    in the same order; otherwise :class:`~mlip.md.checks.MDInputError`); otherwise the file is created
    (an existing one is an :class:`~mlip.md.checks.OutputExistsError` unless ``overwrite``).
    """

    def __init__(self, path: str | Path, append: bool = False, overwrite: bool = False) -> None:
        import h5py

        self.path = Path(path)
        refuse_existing([self.path], append or overwrite)
        mode = "a" if append and self.path.exists() else "w"
        self.file = h5py.File(self.path, mode)
        if mode == "w":
            h5md = self.file.create_group("h5md")
            h5md.attrs["version"] = np.array([1, 1])
            h5md.create_group("author").attrs["name"] = "mlip-torch"
            creator = h5md.create_group("creator")
            creator.attrs["name"] = "mlip.md"
            creator.attrs["version"] = "0.1.0"

    def write(self, state: MDState) -> None:
        """Append one frame of every system (positions, velocities, forces, box, observables); flush."""
        obs = (
            {k: v.detach().cpu().numpy() for k, v in observe(state).items()}
            if state.energy is not None
            else {}
        )
        counts = state.num_atoms.tolist()
        ids = state.system_ids.tolist()
        stored = sorted(self.file["particles"]) if "particles" in self.file else []
        missing = [i for i in ids if f"system_{i:04d}" not in stored]
        if stored and missing:
            raise MDInputError(f"{self.path} holds {stored}, not the state's system(s) {missing}")
        starts = np.cumsum([0, *counts])
        for b, n in enumerate(counts):
            sl = slice(int(starts[b]), int(starts[b]) + n)
            group = self._system_group(state, b, sl)
            fields = {"position": state.positions[sl], "velocity": state.velocities[sl]}
            if state.forces is not None:
                fields["force"] = state.forces[sl] * EV_TO_KJ_PER_MOL
            for name, value in fields.items():
                self._append(group.require_group(name), value.detach().cpu().numpy(), state, _UNITS[name])
            self._append(group["box"].require_group("edges"), state.cell[b].cpu().numpy(), state, "Angstrom")
            obs_group = self.file.require_group(f"observables/system_{ids[b]:04d}")
            for name, value in obs.items():
                self._append(
                    obs_group.require_group(name), np.asarray(value[b]), state, _OBSERVABLE_UNITS[name]
                )
        self.file.flush()

    def _system_group(self, state: MDState, b: int, sl: slice) -> Any:
        system = int(state.system_ids[b])
        name = f"particles/system_{system:04d}"
        species = state.atomic_numbers[sl].cpu().numpy()
        if name in self.file:
            group = self.file[name]
            if not np.array_equal(group["species"][()], species):
                raise MDInputError(f"{self.path}: system {system} has other atoms than the file's {name}")
            return group
        group = self.file.create_group(name)
        group.create_dataset("species", data=species)
        group.create_dataset("mass", data=state.masses[sl].cpu().numpy())
        box = group.create_group("box")
        box.attrs["dimension"] = 3
        box.attrs["boundary"] = np.array(
            ["periodic" if p else "none" for p in state.pbc[b].tolist()], dtype="S8"
        )
        return group

    @staticmethod
    def _append(group: Any, value: np.ndarray, state: MDState, unit: str) -> None:
        if "value" not in group:
            group.create_dataset(
                "value", shape=(0, *value.shape), maxshape=(None, *value.shape), dtype=value.dtype
            )
            group.create_dataset("step", shape=(0,), maxshape=(None,), dtype=np.int64)
            group.create_dataset("time", shape=(0,), maxshape=(None,), dtype=np.float64)
            group["time"].attrs["unit"] = "fs"
            group["value"].attrs["unit"] = unit
        t = group["step"].shape[0]
        for name, item in (("value", value), ("step", state.step), ("time", state.time)):
            group[name].resize(t + 1, axis=0)
            group[name][t] = item

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> H5MDWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_h5md(path: str | Path, frame: int = -1) -> tuple[list[Any], int, float]:
    """One frame (default the last complete one) of every system as ``ase.Atoms`` (positions, cell, pbc,
    masses, velocities), with its step and time (fs) (those of the last system): the starting point to
    resume a run."""
    frames = _read_frames(path, frame)
    return [atoms for _, atoms, _, _ in frames], frames[-1][2], frames[-1][3]


def _read_frames(path: str | Path, frame: int) -> list[tuple[int, Any, int, float]]:
    """``(system id, atoms, step, time)`` of frame ``frame`` of every system of an H5MD file."""
    import h5py
    from ase import Atoms

    from mlip.md.units import FS

    out = []
    if not Path(path).is_file():
        raise MDInputError(f"{path}: no such trajectory file")
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise MDInputError(f"{path}: not an HDF5 file ({error})") from error
    with f:
        if "particles" not in f:
            raise MDInputError(f"{path} is not an H5MD file written by mlip.md (no /particles)")
        for name in sorted(f["particles"]):
            g = f["particles"][name]
            n_frames = min(g[k]["value"].shape[0] for k in ("position", "velocity") if k in g)
            n_frames = min(n_frames, g["box/edges/value"].shape[0])
            if n_frames == 0:
                raise MDInputError(f"{path}: {name} holds no complete frame")
            index = frame if frame >= 0 else n_frames + frame
            boundary = [b.decode() == "periodic" for b in g["box"].attrs["boundary"]]
            atoms = Atoms(
                numbers=g["species"][()],
                positions=g["position/value"][index],
                cell=g["box/edges/value"][index],
                pbc=boundary,
                masses=g["mass"][()],
            )
            atoms.set_velocities(g["velocity/value"][index] / FS)
            step, time = int(g["position/step"][index]), float(g["position/time"][index])
            out.append((int(name.split("_")[-1]), atoms, step, time))
    return out


def resume(path: str | Path, device: str | torch.device = "cpu", seed: int = 0) -> MDState:
    """A state from the last frame of an H5MD file (positions, velocities, cell, step, time) of the
    systems that reached the latest step (a replica dropped earlier stays behind), with their
    ``system_ids``. Integrator variables (thermostat chains) are not stored: call the integrator's
    ``init`` again."""
    frames = _read_frames(path, -1)
    step = max(f[2] for f in frames)
    frames = [f for f in frames if f[2] == step]
    ids = [f[0] for f in frames]
    state = from_atoms(
        [f[1] for f in frames], device=device, seed=[seed + i for i in ids], source=f"{path} (step {step})"
    )
    state.step, state.time = step, frames[0][3]
    state.system_ids = torch.tensor(ids, device=state.device)
    return state


def refuse_existing(paths: list[Path], allowed: bool) -> None:
    """Raise :class:`~mlip.md.checks.OutputExistsError` for the first of ``paths`` that exists, unless
    replacing or continuing it is ``allowed``."""
    for path in paths:
        if path.exists() and not allowed:
            raise OutputExistsError(
                f"{path} exists: pass append=True (--append) to continue it or overwrite=True (--overwrite)"
            )


class ASEWriter:
    """Appends frames to ASE files: ``.xyz``/``.extxyz`` (extended XYZ) or ``.traj``. A lone system 0
    goes to ``path``; with several systems, system ``b`` (its ``system_ids``, kept when replicas are
    dropped) goes to ``<stem>_<b><suffix>``. An existing file is continued with ``append``, replaced
    with ``overwrite``, and otherwise refused (:class:`~mlip.md.checks.OutputExistsError`) at the first
    write, before anything is written."""

    def __init__(self, path: str | Path, append: bool = False, overwrite: bool = False) -> None:
        self.path = Path(path)
        if self.path.suffix not in (".xyz", ".extxyz", ".traj"):
            raise MDInputError(f"ASEWriter writes .xyz, .extxyz or .traj files, not {self.path.name}")
        self.append, self.overwrite = append, overwrite
        self._started = False
        self._lone = True  # whether the first write had a lone system 0

    def paths(self, system_ids: list[int]) -> list[Path]:
        """The file of each system."""
        if system_ids == [0] and self._lone:
            return [self.path]
        return [self.path.with_name(f"{self.path.stem}_{b}{self.path.suffix}") for b in system_ids]

    def write(self, state: MDState) -> None:
        """Append one frame of every system."""
        import ase.io

        ids = state.system_ids.tolist()
        if not self._started:
            self._lone = ids == [0]
            refuse_existing(self.paths(ids), self.append or self.overwrite)
        paths = self.paths(ids)
        for atoms, path in zip(to_atoms(state), paths, strict=True):
            append = self._started or (self.append and path.exists())
            if path.suffix == ".traj":
                from ase.io.trajectory import Trajectory

                with Trajectory(str(path), "a" if append else "w") as traj:
                    traj.write(atoms)
            else:
                ase.io.write(path, atoms, format="extxyz", append=append)
        self._started = True

    def close(self) -> None:
        """Nothing to release (every frame is written and closed)."""


class CandidateWriter:
    """Appends to one extxyz file every system of a written frame whose largest per-atom committee force
    spread (``MDState.forces_std``, eV/Å) exceeds ``threshold``: the frames worth labelling. Each frame
    carries ``info["system"]`` (its ``system_ids``), ``info["step"]``, ``info["max_forces_std"]`` and
    ``arrays["forces_std"]``. An existing file is continued with ``append``, replaced with
    ``overwrite``, and otherwise refused (:class:`~mlip.md.checks.OutputExistsError`) here."""

    def __init__(
        self, path: str | Path, threshold: float, append: bool = False, overwrite: bool = False
    ) -> None:
        self.path = Path(path)
        if self.path.suffix not in (".xyz", ".extxyz"):
            raise MDInputError(f"CandidateWriter writes .xyz or .extxyz files, not {self.path.name}")
        refuse_existing([self.path], append or overwrite)
        self.threshold = float(threshold)
        self._append = append and self.path.exists()
        self.count = 0  # frames written by this writer

    def write(self, state: MDState) -> None:
        """Append the systems of ``state`` above the threshold (none: nothing is written)."""
        import ase.io

        if state.forces_std is None:
            raise MDInputError("candidate frames need a committee model (the state has no forces_std)")
        spread = observe(state)["max_forces_std"]
        ids = state.system_ids.tolist()
        for b, atoms in enumerate(to_atoms(state)):
            if float(spread[b]) > self.threshold:
                atoms.info.update(system=ids[b], step=state.step)
                ase.io.write(self.path, atoms, format="extxyz", append=self._append)
                self._append = True
                self.count += 1

    def close(self) -> None:
        """Nothing to release (every frame is written and closed)."""
