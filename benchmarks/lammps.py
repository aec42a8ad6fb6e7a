"""MD throughput of LAMMPS with ``pair_style mlip`` on 1 and 2 MPI ranks vs ``mlip md`` vs ASE's
VelocityVerlet with :class:`mlip.calculator.MLIPCalculator`, same model, periodic ethanol boxes.

``--package`` is a ``.pt2`` written by ``mlip compile`` from ``--model`` (the script checks the package's
``model_sha256`` against the model file); without ``--model`` only the LAMMPS rows are timed (e.g. with a
toy package). Systems: ``--grid`` G gives G^3 randomly rotated ethanol molecules (9 G^3 atoms; 5 -> 1125,
10 -> 9000) at 4.6 Å spacing (about the liquid's density). Every route runs ``--steps`` NVE steps of
0.5 fs after a warm-up; LAMMPS' own "Loop time" is used for its rows (start-up and package load excluded).

Reported per row: timesteps/s, ns/day; for LAMMPS also the ghost overhead, (local + ghost) / local atoms
per rank (the model runs on all of them; the extra is redundant work), the pair-style share of the loop,
and, for 2 ranks, the strong-scaling efficiency t(1 rank) / (2 t(2 ranks)). The machine may be shared:
the environment block in the JSON says what it was; read the 2-rank figures with that in mind.
Writes ``benchmarks/results/lammps.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ase.io
import numpy as np
from ase.build import molecule
from ase.md.verlet import VelocityVerlet

from mlip.benchmarking import print_table, write_json

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BIN = Path(sys.prefix) / "bin"
DT_FS = 0.5


def ethanol_box(grid: int, spacing: float = 4.6, seed: int = 0):
    """``grid^3`` randomly rotated ethanol molecules on a cubic grid in a periodic cubic cell (ase.Atoms)."""
    from scipy.spatial.transform import Rotation

    mol = molecule("CH3CH2OH")
    mol.positions -= mol.get_center_of_mass()
    rotations = Rotation.random(grid**3, random_state=seed)
    corners = np.array(list(np.ndindex(grid, grid, grid)), dtype=float)
    positions = np.concatenate(
        [rotations[k].apply(mol.positions) + (c + 0.5) * spacing for k, c in enumerate(corners)]
    )
    atoms = ase.Atoms(np.tile(mol.numbers, grid**3), positions, cell=[grid * spacing] * 3, pbc=True)
    atoms.wrap()
    return atoms


def lammps_row(atoms, package: Path, plugin: Path, ranks: int, steps: int) -> dict:
    """Times ``steps`` NVE steps in LAMMPS on ``ranks`` ranks (one thread each); parses its summary."""
    with tempfile.TemporaryDirectory() as tmp:
        ase.io.write(f"{tmp}/box.data", atoms, format="lammps-data", specorder=["H", "C", "O"], masses=True)
        Path(tmp, "in.lmp").write_text(
            f"units metal\natom_style atomic\nboundary p p p\nread_data box.data\n"
            f"plugin load {plugin}\npair_style mlip\npair_coeff * * {package} H C O\n"
            "neighbor 1.0 bin\nneigh_modify every 1 delay 0 check yes\n"
            f"timestep {DT_FS / 1000}\nvelocity all create 300 4928459 mom yes rot yes\nfix 1 all nve\n"
            f"thermo {steps}\nrun 5\nrun {steps}\n"
        )
        run = subprocess.run(
            [str(BIN / "mpirun"), "-np", str(ranks), str(BIN / "lmp"), "-in", "in.lmp", "-log", "none"],
            cwd=tmp,
            env=os.environ | {"OMP_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
        )
    if run.returncode != 0:
        raise RuntimeError(f"LAMMPS failed on {ranks} ranks:\n{(run.stdout + run.stderr)[-2000:]}")
    out = run.stdout
    loop = float(re.findall(rf"Loop time of ([\d.e+-]+) on \d+ procs for {steps} steps", out)[-1])
    pair = float(re.findall(r"^Pair\s+\|[^|]+\|\s+([\d.e+-]+)", out, re.M)[-1])
    nlocal = float(re.findall(r"^Nlocal:\s+([\d.e+-]+) ave", out, re.M)[-1])
    nghost = float(re.findall(r"^Nghost:\s+([\d.e+-]+) ave", out, re.M)[-1])
    return {
        "route": f"lammps {ranks} rank{'s' if ranks > 1 else ''}",
        "atoms": len(atoms),
        "seconds": loop,
        "pair_share": round(pair / loop, 3),
        "ghost_overhead": round((nlocal + nghost) / nlocal, 2),
    }


def mlip_md_row(atoms, model_path: Path, steps: int) -> dict:
    import torch

    from mlip import md, models

    model = models.load(model_path, dtype=torch.float64)
    state = md.from_atoms(atoms, seed=0)
    md.maxwell_boltzmann(state, 300.0)
    ff = md.ForceField(model, skin=1.0)
    md.nve.init(state, ff)
    md.simulate(state, ff, md.nve.step, steps=5, dt=DT_FS, log_interval=5)
    start = time.perf_counter()
    md.simulate(state, ff, md.nve.step, steps=steps, dt=DT_FS, log_interval=steps)
    return {"route": "mlip md", "atoms": len(atoms), "seconds": time.perf_counter() - start}


def ase_row(atoms, model_path: Path, steps: int) -> dict:
    import torch
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from mlip.calculator import MLIPCalculator

    atoms = atoms.copy()
    atoms.calc = MLIPCalculator(model_path, device="cpu", dtype=torch.float64, skin=1.0)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep=DT_FS * units.fs)
    dyn.run(5)
    start = time.perf_counter()
    dyn.run(steps)
    return {"route": "ase VelocityVerlet", "atoms": len(atoms), "seconds": time.perf_counter() - start}


def check_same_model(package: Path, model: Path) -> None:
    import torch

    meta = torch._inductor.aoti_load_package(str(package)).get_metadata()
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    if meta.get("model_sha256") != digest:
        sys.exit(f"{package}: model_sha256 {meta.get('model_sha256')} is not that of {model} ({digest})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, required=True, help=".pt2 from mlip compile (float64)")
    parser.add_argument("--model", type=Path, help="the model file the package was compiled from")
    parser.add_argument("--plugin", type=Path, default=REPO / "lammps" / "build" / "mlipplugin.so")
    parser.add_argument("--grid", type=int, nargs="+", default=[5, 10], help="molecules per box edge")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS / "lammps.json")
    args = parser.parse_args()
    if not args.plugin.is_file():
        sys.exit(f"{args.plugin}: no plugin; build it with `make lammps`")
    if args.model is not None:
        check_same_model(args.package, args.model)
    rows = []
    for grid in args.grid:
        atoms = ethanol_box(grid)
        group = [lammps_row(atoms, args.package, args.plugin, k, args.steps) for k in args.ranks]
        if args.model is not None:
            group += [mlip_md_row(atoms, args.model, args.steps), ase_row(atoms, args.model, args.steps)]
        one = next((r["seconds"] for r in group if r["route"] == "lammps 1 rank"), None)
        native = next((r["seconds"] for r in group if r["route"] == "mlip md"), None)
        for row in group:
            row["steps_per_s"] = round(args.steps / row["seconds"], 3)
            row["ns_per_day"] = round(row["steps_per_s"] * DT_FS * 1e-6 * 86400, 4)
            ranks = int(row["route"].split()[1]) if row["route"].startswith("lammps") else 0
            if one is not None and ranks > 1:
                row["scaling_efficiency"] = round(one / (ranks * row["seconds"]), 2)
            if native is not None:
                row["speed_vs_mlip_md"] = round(native / row["seconds"], 3)
        rows += group
    columns = ["route", "atoms", "seconds", "steps_per_s", "ns_per_day", "speed_vs_mlip_md"]
    columns += ["ghost_overhead", "pair_share", "scaling_efficiency"]
    print_table(rows, [c for c in columns if any(c in r for r in rows)])
    write_json(args.out, "lammps", rows, package=str(args.package), model=str(args.model), steps=args.steps)


if __name__ == "__main__":
    main()
