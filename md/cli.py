"""``mlip md``: run molecular dynamics (or a FIRE relaxation) with a trained potential.

Reads a structure (any ASE-readable file, a pymatgen-readable file, or ``--smiles``), the model
(``mlip.models.load``), runs the chosen ensemble on ``--replicas`` copies with an H5MD trajectory, a
progress bar with ns/day and an energy plot at the end. :func:`run` is the Python entry point and also
accepts a model object.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

ENSEMBLES = ("nve", "langevin", "nhc", "csvr", "npt", "npt-full", "fire", "fire-cell")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "structure", help="structure file (ASE or pymatgen readable) or, with --smiles, a SMILES"
    )
    parser.add_argument("--model", required=True, help="saved model file (mlip.models.load)")
    parser.add_argument(
        "--smiles", action="store_true", help="STRUCTURE is a SMILES string (rdkit 3D embedding)"
    )
    parser.add_argument("--ensemble", choices=ENSEMBLES, default="langevin")
    parser.add_argument("--temperature", type=float, default=300.0, help="K (also the initial velocities)")
    parser.add_argument("--pressure", type=float, default=0.0, help="GPa (npt, fire-cell)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--dt", type=float, default=0.5, help="time step, fs")
    parser.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs")
    parser.add_argument("--tau-t", type=float, default=100.0, help="thermostat time, fs (nhc, csvr, npt)")
    parser.add_argument("--tau-p", type=float, default=1000.0, help="barostat time, fs")
    parser.add_argument("--compressibility", type=float, default=0.5, help="barostat compressibility, 1/GPa")
    parser.add_argument("--fmax", type=float, default=0.05, help="FIRE convergence, eV/Å")
    parser.add_argument("--replicas", type=int, default=1, help="independent copies run as one batch")
    parser.add_argument("--skin", type=float, default=1.0, help="neighbour-list skin, Å")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", choices=("auto", "torch", "triton"), default="auto", help="kernels")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--output", default="md.h5", help="H5MD trajectory")
    parser.add_argument("--append", action="store_true", help="continue the run stored in --output")
    parser.add_argument("--xyz", default=None, help="also write extended XYZ (or .traj) frames here")
    parser.add_argument("--write-interval", type=int, default=10)
    parser.add_argument("--log-interval", type=int, default=1)
    parser.add_argument("--plot", default=None, help="energy plot PNG (default: OUTPUT with .png)")
    parser.add_argument("--no-progress", action="store_true")


def read_structure(text: str, smiles: bool = False, seed: int = 0) -> Any:
    """An ``ase.Atoms`` from a SMILES (rdkit: hydrogens added, 3D embedded, MMFF-optimised) or a file
    readable by ASE or, failing that, by pymatgen."""
    if smiles:
        from mlip.dft.sampling import atoms_from_smiles

        return atoms_from_smiles(text, seed)
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"structure file {path} does not exist (use --smiles for a SMILES string)")
    import ase.io

    try:
        return ase.io.read(path)
    except Exception as ase_error:  # noqa: BLE001 - fall back to pymatgen, report both failures
        from pymatgen.core import Molecule, Structure
        from pymatgen.io.ase import AseAtomsAdaptor

        for cls in (Structure, Molecule):
            try:
                return AseAtomsAdaptor.get_atoms(cls.from_file(path))
            except Exception:  # noqa: BLE001, S112
                continue
        raise ValueError(f"neither ASE nor pymatgen can read {path}: {ase_error}") from ase_error


def main(args: argparse.Namespace) -> int:
    return run(args)


def run(args: argparse.Namespace, model: Any = None) -> int:
    """Run ``mlip md`` with parsed ``args``; ``model`` (a Potential) replaces ``--model`` when given."""
    import torch

    from mlip import md, models
    from mlip.kernels import set_backend
    from mlip.md.units import EV_A3_TO_GPA

    potential = model if model is not None else models.load(args.model)
    potential = (
        potential.to(device=args.device, dtype=getattr(torch, args.dtype)).eval().requires_grad_(False)
    )
    set_backend(potential, args.backend)
    ff = md.ForceField(potential, skin=args.skin)
    output = Path(args.output)
    if args.append:
        state = md.resume(output, device=args.device, seed=args.seed)
    else:
        atoms = read_structure(args.structure, args.smiles, args.seed)
        state = md.from_atoms([atoms] * args.replicas, device=args.device, seed=args.seed)
        if args.ensemble not in ("fire", "fire-cell"):
            md.maxwell_boltzmann(state, args.temperature)
    pressure = args.pressure / EV_A3_TO_GPA
    if args.ensemble in ("fire", "fire-cell"):
        md.fire.init(state, ff, relax_cell=args.ensemble == "fire-cell", pressure=pressure)
        state, converged = md.fire.relax(state, ff, fmax=args.fmax, max_steps=args.steps)
        with md.H5MDWriter(output, append=args.append, overwrite=not args.append) as writer:
            writer.write(state)
        energies = ", ".join(f"{e:.6f}" for e in state.energy.tolist())
        outcome = "converged" if converged else "did not converge"
        print(f"FIRE {outcome} after {state.step} steps; E = {energies} eV")
        return 0 if converged else 1
    name = "npt" if args.ensemble.startswith("npt") else args.ensemble
    integrator = md.INTEGRATORS[name]
    params = {
        "nve": {},
        "langevin": {"temperature": args.temperature, "friction": args.friction},
        "nhc": {"temperature": args.temperature, "tau": args.tau_t},
        "csvr": {"temperature": args.temperature, "tau": args.tau_t},
        "npt": {
            "temperature": args.temperature,
            "pressure": pressure,
            "mode": "full" if args.ensemble == "npt-full" else "isotropic",
            "tau_t": args.tau_t,
            "tau_p": args.tau_p,
            "compressibility": args.compressibility * EV_A3_TO_GPA,
        },
    }[name]
    integrator.init(state, ff, **params)
    writers: list[Any] = [md.H5MDWriter(output, append=args.append, overwrite=not args.append)]
    if args.xyz:
        writers.append(md.ASEWriter(args.xyz, append=args.append))
    try:
        result = md.simulate(
            state,
            ff,
            integrator.step,
            args.steps,
            args.dt,
            log_interval=args.log_interval,
            writers=writers,
            write_interval=args.write_interval,
            guard=md.ExplosionGuard(),
            progress=not args.no_progress,
        )
    finally:
        for w in writers:
            w.close()
    _report(result, args, state)
    plot_energy(result.log, Path(args.plot) if args.plot else output.with_suffix(".png"))
    return 2 if result.stopped else 0


def _report(result: Any, args: argparse.Namespace, state: Any) -> None:
    print(
        f"{result.state.step} steps of {args.dt} fs, {result.atom_steps_per_s:.4g} atom-steps/s, "
        f"{result.ns_per_day:.4g} ns/day, {state.num_systems} system(s), trajectory {args.output}"
    )
    if result.stopped:
        print(f"stopped early: {result.stopped}")
    if args.ensemble == "nve" and len(result.log.time) >= 3:
        drift = result.log.drift(state.num_atoms)
        print("NVE drift (meV/atom/ps): " + ", ".join(f"{d:.3g}" for d in drift.tolist()))


def plot_energy(log: Any, path: Path) -> Path:
    """Kinetic, potential and total energy (eV, system 0 and others faint) against time (ps) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [x * 1e-3 for x in log.time]
    fig, axes = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for key, colour in (("total", "k"), ("potential", "C0"), ("kinetic", "C3")):
        series = log.series(key).numpy()
        for b in range(series.shape[1]):
            axes[0].plot(t, series[:, b], colour, alpha=1.0 if b == 0 else 0.2, label=key if b == 0 else None)
    axes[0].set_ylabel("energy (eV)")
    axes[0].legend()
    axes[1].plot(t, log.series("temperature").numpy(), alpha=0.7)
    axes[1].set_ylabel("temperature (K)")
    axes[1].set_xlabel("time (ps)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
