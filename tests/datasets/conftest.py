"""Shared fixtures: the real-data folder (skipped when absent) and an ASE neighbour-list function."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms

ETHANOL_Z = np.array([6, 6, 8, 1, 1, 1, 1, 1, 1], dtype=np.uint8)


def shared_data_dir() -> Path:
    """``$MLIP_SHARED_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("MLIP_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The real samples folder; the test is skipped when it is not on this machine."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data not present at {path}")
    return path


def ase_neighbor_list(
    positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, cutoff: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference neighbour list from ``ase.neighborlist.primitive_neighbor_list``: ([2, E], [E, 3])."""
    from ase.neighborlist import primitive_neighbor_list

    i, j, shifts = primitive_neighbor_list(
        "ijS", pbc.numpy(), cell.numpy(), positions.numpy(), cutoff, self_interaction=False
    )
    edge_index = torch.from_numpy(np.stack([i, j]).astype(np.int64))
    return edge_index, torch.from_numpy(shifts.astype(np.float64))


def rmd17_frames(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random ethanol-sized frames in rMD17 units: coords [n, 9, 3] Å, energies [n] kcal/mol, forces."""
    rng = np.random.default_rng(seed)
    return {
        "coords": rng.normal(size=(n, 9, 3)),
        "energies": -97070.0 + rng.normal(size=n),
        "forces": 50 * rng.normal(size=(n, 9, 3)),
    }


def write_rmd17(path, n: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """An npz with the rMD17 keys and dtypes (kcal/mol, Å); returns the arrays written."""
    arrays = {"nuclear_charges": ETHANOL_Z, **rmd17_frames(n, seed)}
    arrays["old_indices"] = np.arange(n, dtype=np.int64) * 7
    arrays["old_energies"] = arrays["energies"] + 1.0
    arrays["old_forces"] = arrays["forces"] * 0.5
    np.savez(path, **arrays)
    return arrays


def periodic_frames(n: int = 4, seed: int = 0) -> list[Atoms]:
    """Small periodic Cu3O frames with energy, forces, Voigt stress, tags and a FixAtoms constraint."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        atoms = Atoms(
            "Cu3O",
            positions=rng.uniform(0, 4, size=(4, 3)),
            cell=np.diag([4.0, 4.5, 5.0]) + 0.1 * k,
            pbc=True,
        )
        atoms.set_tags([0, 1, 1, 2])
        atoms.set_constraint(FixAtoms(indices=[0]))
        atoms.calc = SinglePointCalculator(
            atoms, energy=-10.0 - k, forces=rng.normal(size=(4, 3)), stress=rng.normal(size=6) * 0.01
        )
        frames.append(atoms)
    return frames


@pytest.fixture
def fx() -> SimpleNamespace:
    """The file writers and helpers above, for test modules (importlib mode cannot import conftest)."""
    return SimpleNamespace(
        ETHANOL_Z=ETHANOL_Z,
        rmd17_frames=rmd17_frames,
        write_rmd17=write_rmd17,
        periodic_frames=periodic_frames,
        neighbor_fn=ase_neighbor_list,
    )
