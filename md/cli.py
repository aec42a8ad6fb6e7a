"""``mlip md``: run molecular dynamics (or a FIRE relaxation) with a trained potential.

Reads a structure (any ASE-readable file, a pymatgen-readable file, or ``--smiles``), the model
(``mlip.models.load``), runs the chosen ensemble on ``--replicas`` copies with an H5MD trajectory, a
progress bar with ns/day and an energy plot at the end. :func:`run` is the Python entry point and also
accepts a model object.

With a committee model (``train.committee``) every written frame records the largest per-atom force
std (``max_forces_std`` in the H5MD observables and the extxyz info, ``forces_std`` per atom in
extxyz); ``--candidate-uncertainty Y`` writes the written frames above ``Y`` eV/Å to ``--candidates``,
and ``--max-uncertainty X`` stops the run (checked every step) with
:class:`~mlip.md.checks.UncertaintyError` (exit 1) once a system goes above ``X``, keeping the trajectory
up to that step.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mlip.md.checks import (
    ExplosionError,
    MDInputError,
    MissingInputError,
    UncertaintyError,
    check_parameter,
)
from mlip.md.trajectory import CandidateWriter

ENSEMBLES = ("nve", "langevin", "nhc", "csvr", "npt", "npt-full", "fire", "fire-cell")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "structure",
        nargs="?",
        help="structure file (ASE or pymatgen readable) or, with --smiles, a SMILES; optional with "
        "--append (then it must hold the same atoms, in the same order and periodicity, as the file)",
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
    parser.add_argument(
        "--device", default="auto", help="auto (cuda if available), cpu, cuda, ... (default auto)"
    )
    parser.add_argument("--backend", choices=("auto", "torch", "triton"), default="auto", help="kernels")
    parser.add_argument(
        "--fixed-shape",
        action="store_true",
        help="hand a .pt2 package the skin neighbour list padded to a fixed capacity (constant shapes "
        "between rebuilds; the default on CUDA and with --cuda-graph; slower on the CPU: more edges)",
    )
    parser.add_argument(
        "--cuda-graph",
        action="store_true",
        help="capture the force step as a CUDA graph and replay it until the padded neighbour list "
        "changes shape (CUDA only; an eager model or a .pt2 package)",
    )
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--output", default="md.h5", help="H5MD trajectory")
    parser.add_argument("--append", action="store_true", help="continue the run stored in --output")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing output files (trajectory, --xyz, plot; with --append only the plot)",
    )
    parser.add_argument("--xyz", default=None, help="also write extended XYZ (or .traj) frames here")
    parser.add_argument("--write-interval", type=int, default=10)
    parser.add_argument("--log-interval", type=int, default=1)
    parser.add_argument(
        "--plot",
        default=None,
        help="energy plot PNG (default: OUTPUT with .png; with --append OUTPUT_from_step<S>.png)",
    )
    parser.add_argument(
        "--max-uncertainty",
        type=float,
        default=None,
        help="stop when a committee model's per-atom force std exceeds this, eV/Å (needs a committee)",
    )
    parser.add_argument(
        "--candidate-uncertainty",
        type=float,
        default=None,
        help="write the frames whose max per-atom force std exceeds this (eV/Å) to --candidates",
    )
    parser.add_argument(
        "--candidates", default=None, help="candidate frames, extxyz (default: OUTPUT_candidates.extxyz)"
    )
    parser.add_argument("--no-progress", action="store_true")


def read_structure(text: str, smiles: bool = False, seed: int = 0) -> Any:
    """An ``ase.Atoms`` from a SMILES (rdkit: hydrogens added, 3D embedded, MMFF-optimised) or a file
    readable by ASE or, failing that, by pymatgen."""
    if smiles:
        from mlip.dft.sampling import atoms_from_smiles

        return atoms_from_smiles(text, seed)
    path = Path(text)
    if not path.exists():
        raise MissingInputError(f"structure file {path} does not exist (use --smiles for a SMILES string)")
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
        raise MDInputError(f"neither ASE nor pymatgen can read {path}: {ase_error}") from ase_error


def main(args: argparse.Namespace) -> int:
    return run(args)


def run(args: argparse.Namespace, model: Any = None) -> int:
    """Run ``mlip md`` with parsed ``args``; ``model`` (a Potential) replaces ``--model`` when given.

    Everything is checked before the model is evaluated: the parameters, the structure (or, with
    ``--append``, the trajectory and its agreement with the structure argument) and the output files
    (an existing one is refused without ``--overwrite``). A run that explodes raises
    :class:`~mlip.md.checks.ExplosionError` after its trajectory (up to that step) and plot are written.
    """
    import torch

    from mlip import md, models
    from mlip.compile.model import StepModel
    from mlip.kernels import set_backend
    from mlip.md.units import EV_A3_TO_GPA
    from mlip.train.distributed import choose_device

    _check_arguments(args)
    args.device = str(choose_device(args.device, 0))
    if args.cuda_graph and torch.device(args.device).type != "cuda":
        raise MDInputError(f"--cuda-graph needs a CUDA device (--device is {args.device})")
    output = Path(args.output)
    state = _initial_state(args, output)
    fire = args.ensemble in ("fire", "fire-cell")
    plot = None if fire else _plot_path(args, output, state.step)
    _check_outputs(args, output, plot, state.system_ids.tolist())
    potential = model if model is not None else models.load(args.model)
    potential = (
        potential.to(device=args.device, dtype=getattr(torch, args.dtype)).eval().requires_grad_(False)
    )
    set_backend(potential, args.backend)
    if args.cuda_graph:
        from mlip.compile.graphs import cuda_graph

        potential = cuda_graph(potential)
    if args.fixed_shape and not isinstance(potential, StepModel):
        raise MDInputError(f"--fixed-shape needs a compiled model (.pt2 package), not {args.model}")
    ff = md.ForceField(potential, skin=args.skin, fixed_shape=True if args.fixed_shape else None)
    pressure = args.pressure / EV_A3_TO_GPA
    if fire:
        return _relax(args, state, ff, output, pressure)
    name = "npt" if args.ensemble.startswith("npt") else args.ensemble
    integrator = md.INTEGRATORS[name]
    integrator.init(state, ff, **_integrator_parameters(args, name, pressure))
    writers: list[Any] = [md.H5MDWriter(output, append=args.append, overwrite=args.overwrite)]
    if args.xyz:
        writers.append(md.ASEWriter(args.xyz, append=args.append, overwrite=args.overwrite))
    if args.candidate_uncertainty is not None:
        candidates = _candidates_path(args, output)
        writers.append(
            CandidateWriter(
                candidates, args.candidate_uncertainty, append=args.append, overwrite=args.overwrite
            )
        )
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
            guard=md.ExplosionGuard(max_uncertainty=args.max_uncertainty),
            progress=not args.no_progress,
            on_explosion="drop" if state.num_systems > 1 else "stop",
        )
    except ExplosionError as error:
        if error.result is not None:
            label = f"{args.ensemble}: FAILED at step {error.step}"
            plot_energy(error.result.log, plot, state.num_atoms, label)
        raise
    finally:
        for w in writers:
            w.close()
    _report(result, args, state.num_atoms, ff)
    label = args.ensemble + (f" (replicas {sorted(result.dropped)} dropped)" if result.dropped else "")
    plot_energy(
        result.log, plot, state.num_atoms, label, drift=args.ensemble == "nve" and 0 not in result.dropped
    )
    if result.dropped:
        first = min(result.dropped.values(), key=lambda error: error.step)
        listed = "; ".join(f"replica {i} at {error}" for i, error in sorted(result.dropped.items()))
        uncertain = all(isinstance(error, UncertaintyError) for error in result.dropped.values())
        raise (UncertaintyError if uncertain else ExplosionError)(
            result.state.step,
            f"{len(result.dropped)} of {state.num_systems} replicas "
            f"{'became too uncertain' if uncertain else 'exploded'} and were dropped ({listed}); "
            f"the others ran to step {result.state.step}; trajectory kept",
            first.system,
            result,
        )
    return 0


def _relax(args: argparse.Namespace, state: Any, ff: Any, output: Path, pressure: float) -> int:
    """FIRE (``fire-cell``: with the cell) to ``--fmax``; writes the relaxation path (the start unless
    appending, where it is the files' last frame, every ``--write-interval`` steps, and the last step) to
    the H5MD file and ``--xyz``; exit code 1 when it did not converge."""
    from mlip import md

    md.fire.init(state, ff, relax_cell=args.ensemble == "fire-cell", pressure=pressure)
    writers = [md.H5MDWriter(output, append=args.append, overwrite=args.overwrite)]
    if args.xyz:
        writers.append(md.ASEWriter(args.xyz, append=args.append, overwrite=args.overwrite))
    written = [state.step] if args.append else []

    def record(current: Any) -> None:
        for w in writers:
            w.write(current)
        written.append(current.step)

    try:
        if not args.append:
            record(state)
        state, converged = md.fire.relax(
            state,
            ff,
            fmax=args.fmax,
            max_steps=args.steps,
            on_step=lambda s: record(s) if s.step % args.write_interval == 0 else None,
        )
        if written[-1:] != [state.step]:
            record(state)
    finally:
        for w in writers:
            w.close()
    energies = ", ".join(f"{e:.6f}" for e in state.energy.tolist())
    outcome = "converged" if converged else "did not converge"
    print(f"FIRE {outcome} after {state.step} steps; E = {energies} eV")
    return 0 if converged else 1


def _integrator_parameters(args: argparse.Namespace, name: str, pressure: float) -> dict[str, Any]:
    """The ``init`` arguments of integrator ``name`` from the command line (``pressure`` in eV/Å^3)."""
    from mlip.md.units import EV_A3_TO_GPA

    return {
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


def _check_arguments(args: argparse.Namespace) -> None:
    check_parameter("--dt", args.dt, "fs")
    check_parameter("--temperature", args.temperature, "K", allow_zero=True)
    for name in ("steps", "replicas", "write_interval", "log_interval"):
        value = getattr(args, name)
        if value < (0 if name == "steps" else 1):
            raise MDInputError(
                f"--{name.replace('_', '-')} = {value}: must be >= {0 if name == 'steps' else 1}"
            )
    for name in ("max_uncertainty", "candidate_uncertainty"):
        if getattr(args, name) is not None:
            check_parameter(f"--{name.replace('_', '-')}", getattr(args, name), "eV/Å")
            if args.ensemble in ("fire", "fire-cell"):
                raise MDInputError(
                    f"--{name.replace('_', '-')}: MD only, not with --ensemble {args.ensemble}"
                )
    if args.max_uncertainty is not None and args.candidate_uncertainty is not None:
        if args.candidate_uncertainty >= args.max_uncertainty:
            raise MDInputError(
                f"--candidate-uncertainty = {args.candidate_uncertainty}: must be below --max-uncertainty = "
                f"{args.max_uncertainty}"
            )
    if args.structure is None and not args.append:
        raise MDInputError("a structure (file or, with --smiles, SMILES) is needed unless --append")


def _initial_state(args: argparse.Namespace, output: Path) -> Any:
    """The state to start from: the structure argument (``--replicas`` copies, Maxwell–Boltzmann
    velocities) or, with ``--append``, the last frame of ``output`` (checked against the structure
    argument when one is given)."""
    from mlip import md

    source = f"SMILES {args.structure!r}" if args.smiles else args.structure
    atoms = read_structure(args.structure, args.smiles, args.seed) if args.structure is not None else None
    if not args.append:
        state = md.from_atoms([atoms] * args.replicas, device=args.device, seed=args.seed, source=source)
        if args.ensemble not in ("fire", "fire-cell"):
            md.maxwell_boltzmann(state, args.temperature)
        return state
    if not output.exists():
        raise MissingInputError(f"{output}: no trajectory to append to (run without --append first)")
    state = md.resume(output, device=args.device, seed=args.seed)
    if atoms is not None:
        for frame in md.read_h5md(output)[0]:
            _check_same_system(atoms, frame, source, output)
    return state


def _check_same_system(atoms: Any, frame: Any, source: str, output: Path) -> None:
    """Refuse a structure whose atoms (count, elements in order, periodicity) differ from a frame."""
    if len(atoms) != len(frame):
        raise MDInputError(f"{source} has {len(atoms)} atoms, the last frame of {output} {len(frame)}")
    differ = (atoms.numbers != frame.numbers).nonzero()[0]
    if len(differ):
        i = int(differ[0])
        raise MDInputError(
            f"{source}: atom {i} is {atoms.get_chemical_symbols()[i]}, in the last frame of {output} "
            f"{frame.get_chemical_symbols()[i]}"
        )
    if list(atoms.pbc) != list(frame.pbc):
        raise MDInputError(
            f"{source} has pbc {list(atoms.pbc)}, the last frame of {output} {list(frame.pbc)}"
        )


def _plot_path(args: argparse.Namespace, output: Path, step: int) -> Path:
    if args.plot:
        return Path(args.plot)
    if args.append:
        return output.with_name(f"{output.stem}_from_step{step}.png")
    return output.with_suffix(".png")


def _check_outputs(args: argparse.Namespace, output: Path, plot: Path | None, system_ids: list[int]) -> None:
    """Refuse, before anything is computed, to replace an existing output without ``--overwrite``."""
    from mlip.md.trajectory import ASEWriter, refuse_existing

    refuse_existing([output], args.append or args.overwrite)
    if args.xyz:
        refuse_existing(ASEWriter(args.xyz).paths(system_ids), args.append or args.overwrite)
    if plot is not None:
        refuse_existing([plot], args.overwrite)
    if args.candidate_uncertainty is not None:
        refuse_existing([_candidates_path(args, output)], args.append or args.overwrite)


def _candidates_path(args: argparse.Namespace, output: Path) -> Path:
    return Path(args.candidates) if args.candidates else output.with_name(f"{output.stem}_candidates.extxyz")


def _report(result: Any, args: argparse.Namespace, num_atoms: Any, ff: Any) -> None:
    """Throughput, the padded edge capacity and CUDA-graph captures of a fixed-shape step and, for NVE,
    each system's drift and fluctuation over the whole run (``dropped`` for a replica that exploded);
    ``num_atoms`` ``[B]`` of the systems the run started with."""
    print(
        f"{result.state.step} steps of {args.dt} fs, {result.atom_steps_per_s:.4g} atom-steps/s, "
        f"{result.ns_per_day:.4g} ns/day, {result.state.num_systems} system(s), trajectory {args.output}"
    )
    if ff.fixed_shape:
        neighbors = ff.neighbors
        line = (
            f"fixed-shape step: edges padded to {neighbors.capacity} (grown {neighbors.growths} times), "
            f"{neighbors.builds} neighbour-list builds"
        )
        if args.cuda_graph:
            graph = ff.potential.step  # a StaticStep (mlip.compile.graphs.cuda_graph)
            line += f", CUDA graph captured {graph.captures} times, replayed {graph.replays} times"
        print(line)
    if args.ensemble == "nve" and len(result.log.time) >= 3:
        ids = result.log.system_ids.tolist()
        for name, values in (
            ("NVE drift over the run (meV/atom/ps)", result.log.drift(num_atoms)),
            ("NVE total-energy fluctuation (meV/atom)", result.log.fluctuation(num_atoms)),
        ):
            shown = [
                "dropped" if i in result.dropped else f"{v:.3g}"
                for i, v in zip(ids, values.tolist(), strict=True)
            ]
            print(f"{name}: " + ", ".join(shown))


def plot_energy(log: Any, path: Path, num_atoms: Any, label: str, drift: bool = False) -> Path:
    """Write :func:`energy_figure` to ``path`` (PNG)."""
    import matplotlib.pyplot as plt

    fig = energy_figure(log, num_atoms, label, drift)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def energy_figure(log: Any, num_atoms: Any, label: str, drift: bool = False) -> Any:
    """The energy plot against time (ps): total-energy change (meV/atom) on its own axis, potential and
    kinetic energy change (eV), temperature (K) and, for a committee, the largest per-atom force std
    (eV/Å); system 0 solid, others faint. The title holds ``label``
    and, with ``drift`` (runs that conserve the total energy), system 0's drift (meV/atom/ps) and
    fluctuation (meV/atom) over the whole log. Returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [x * 1e-3 for x in log.time]
    per_atom = num_atoms.cpu().to(float).numpy()
    committee = "max_forces_std" in log.values
    fig, axes = plt.subplots(4 if committee else 3, 1, figsize=(7, 10 if committee else 8), sharex=True)

    def lines(ax: Any, series: Any, colour: str, name: str) -> None:
        for b in range(series.shape[1]):
            ax.plot(t, series[:, b], colour, alpha=1.0 if b == 0 else 0.2, label=name if b == 0 else None)

    total = log.series("total").numpy()
    lines(axes[0], 1e3 * (total - total[0]) / per_atom, "k", "total")
    axes[0].set_ylabel("E_total - E_total(0)\n(meV/atom)")
    for key, colour in (("potential", "C0"), ("kinetic", "C3")):
        series = log.series(key).numpy()
        lines(axes[1], series - series[0], colour, key)
    axes[1].set_ylabel("E - E(0) (eV)")
    axes[1].legend()
    lines(axes[2], log.series("temperature").numpy(), "C2", "temperature")
    axes[2].set_ylabel("temperature (K)")
    if committee:
        lines(axes[3], log.series("max_forces_std").numpy(), "C4", "max force std")
        axes[3].set_ylabel("max force std\n(eV/Å)")
    axes[-1].set_xlabel("time (ps)")
    title = label
    if drift and len(log.time) >= 3:
        d = float(log.drift(num_atoms)[0])
        f = float(log.fluctuation(num_atoms)[0])
        title += f": drift {d:.3g} meV/atom/ps, fluctuation {f:.3g} meV/atom"
    axes[0].set_title(title)
    fig.tight_layout()
    return fig
