"""MD throughput and energy drift: the native batched driver vs an ASE loop with a calculator.

For 1, 16 and 128 replicas of a molecule (aspirin from SMILES) and a 1000-atom periodic box: atom-steps/s
and ns/day of ``mlip.md`` (all replicas in one batch) and of ``ase.md.VelocityVerlet`` run replica after
replica with a calculator wrapping the same potential; plus the NVE drift (meV/atom/ps) of the box in
float64. The potential is selectable: ``--model lj`` (default, Lennard-Jones) or a saved model file
(``mlip.models.load``). Prints a table and writes benchmarks/results/md.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.md.verlet import VelocityVerlet
from mlip.md.cli import load_model, read_structure
from mlip.md.units import FS

from mlip import md
from mlip.benchmarking import print_table, write_json
from mlip.data import from_atoms
from mlip.data.neighbors import add_neighbors
from mlip.models.classical import LennardJones


class _Calculator(Calculator):
    """ASE calculator around a Potential (the route of ``mlip.calculator`` without its extras)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, potential: torch.nn.Module) -> None:
        super().__init__()
        self.potential = potential

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        data = add_neighbors(from_atoms(self.atoms, use_calculator_labels=False), self.potential.cutoff)
        out = self.potential(data, compute_forces=True, create_graph=False)
        self.results = {"energy": float(out["energy"][0].detach()), "forces": out["forces"].detach().numpy()}


def _systems(model_name: str) -> dict[str, object]:
    box = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((6, 6, 7))
    box.positions += np.random.default_rng(0).normal(scale=0.02, size=box.positions.shape)
    return {"aspirin": read_structure("CC(=O)Oc1ccccc1C(=O)O", smiles=True), "box1008": box}


def _potential(name: str, system: str, dtype: torch.dtype) -> torch.nn.Module:
    if name != "lj":
        return load_model(name).to(dtype).eval()
    if system == "aspirin":  # soft at bond lengths, so the molecule does not blow apart
        return LennardJones(epsilon=0.001, sigma=1.0, cutoff=4.0).to(dtype)
    return LennardJones(cutoff=6.0).to(dtype)


def native(atoms, replicas: int, potential, steps: int, dt: float) -> float:
    state = md.from_atoms([atoms] * replicas, seed=0)
    md.maxwell_boltzmann(state, 50.0)
    ff = md.ForceField(potential, skin=1.0)
    md.nve.init(state, ff)
    md.simulate(state, ff, md.nve.step, steps=2, dt=dt)  # warm-up
    return md.simulate(state, ff, md.nve.step, steps=steps, dt=dt, log_interval=steps).wall_time


def ase_loop(atoms, replicas: int, potential, steps: int, dt: float) -> float:
    start = time.perf_counter()
    for _ in range(replicas):
        a = atoms.copy()
        a.calc = _Calculator(potential)
        VelocityVerlet(a, timestep=dt * FS).run(steps)
    return time.perf_counter() - start


def drift(atoms, potential, steps: int, dt: float) -> float:
    state = md.from_atoms(atoms, seed=1)
    md.maxwell_boltzmann(state, 50.0)
    ff = md.ForceField(potential, skin=0.5)
    md.nve.init(state, ff)
    result = md.simulate(state, ff, md.nve.step, steps=steps, dt=dt)
    return float(result.log.drift(state.num_atoms)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="lj", help="'lj' or a saved model file")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 16, 128])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    parser.add_argument("--drift-steps", type=int, default=400)
    parser.add_argument("--dt", type=float, default=1.0, help="fs (drift: 5 fs for the LJ box)")
    parser.add_argument("--out", default="benchmarks/results/md.json")
    args = parser.parse_args()
    rows = []
    for name, atoms in _systems(args.model).items():
        potential = _potential(args.model, name, torch.float64)
        for replicas in args.replicas if name == "aspirin" else [1]:
            ours = native(atoms, replicas, potential, args.steps, args.dt)
            peer = ase_loop(atoms, replicas, potential, args.steps, args.dt)
            atom_steps = len(atoms) * replicas * args.steps
            rows.append(
                {
                    "system": name,
                    "replicas": replicas,
                    "atoms": len(atoms) * replicas,
                    "native_atom_steps_s": atom_steps / ours,
                    "ase_atom_steps_s": atom_steps / peer,
                    "speedup": peer / ours,
                    "native_ns_day": args.steps * args.dt * 1e-6 / ours * 86400,
                    "ase_ns_day": args.steps * args.dt * 1e-6 / peer * 86400,
                }
            )
    print_table(rows)
    box = _systems(args.model)["box1008"]
    drift_dt = 5.0 if args.model == "lj" else args.dt
    nve = drift(box, _potential(args.model, "box1008", torch.float64), args.drift_steps, drift_dt)
    print(f"NVE drift, box1008, float64, {args.drift_steps} x {drift_dt} fs: {nve:.3g} meV/atom/ps")
    write_json(
        args.out,
        "md",
        rows,
        model=args.model,
        threads=torch.get_num_threads(),
        nve_drift_meV_atom_ps=nve,
        drift_steps=args.drift_steps,
        drift_dt_fs=drift_dt,
    )


if __name__ == "__main__":
    main()
