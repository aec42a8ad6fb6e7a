"""``mlip label``: sample configurations of a molecule and label them with PySCF DFT into extxyz.

Examples::

    mlip label ethanol.extxyz --smiles CCO --count 300 --temperature 500   # sample + label
    mlip label todo.extxyz --smiles CCO --count 300 --sample-only          # sample only (no PySCF)
    mlip label labelled.extxyz --configs todo.extxyz --workers 16          # label given configurations
    mlip label md.extxyz --smiles CCO --method md --model best.model       # snapshots of MD with a model

Labelling is resumable: configurations whose ``config_id`` is already in the output are skipped, and a
frame cut by a crash is dropped. Each labelled frame holds energy (eV) and forces (eV/Å) plus
``energy_hartree``, ``scf_cycles``, ``label_seconds`` and the level of theory in its info. For an HDF5
dataset, convert the result with ``mlip data convert`` (the HDF5 cache of :mod:`mlip.datasets`).
"""

from __future__ import annotations

import argparse
from typing import Any

from mlip.dft.pyscf_labeler import DFTSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", help="extxyz file to write (appended to, and resumed from)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--smiles", help="molecule as SMILES (rdkit + MMFF94 reference geometry)")
    source.add_argument("--molecule", help="structure file with the reference geometry (first frame)")
    source.add_argument("--configs", help="file of configurations to label as they are (no sampling)")
    sample = parser.add_argument_group("sampling (with --smiles or --molecule)")
    sample.add_argument("--count", type=int, default=100, help="number of configurations (default 100)")
    sample.add_argument("--temperature", type=float, default=500.0, help="K (default 500)")
    sample.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sample.add_argument(
        "--min-wavenumber", type=float, default=200.0, help="floor on mode stiffness, cm^-1 (default 200)"
    )
    sample.add_argument(
        "--method",
        choices=("normal-modes", "md"),
        default="normal-modes",
        help="sampling (default normal-modes)",
    )
    sample.add_argument("--model", help="trained potential for --method md (mlip.models.load)")
    sample.add_argument("--md-interval", type=int, default=20, help="MD steps of 0.5 fs between snapshots")
    sample.add_argument("--sample-only", action="store_true", help="write unlabelled configurations, no DFT")
    defaults = DFTSettings()
    dft = parser.add_argument_group("DFT (PySCF)")
    dft.add_argument("--xc", default=defaults.xc, help=f"functional (default {defaults.xc})")
    dft.add_argument("--basis", default=defaults.basis, help=f"basis set (default {defaults.basis})")
    dft.add_argument("--grid-level", type=int, default=defaults.grid_level, help="DFT grid level (default 3)")
    dft.add_argument("--conv-tol", type=float, default=defaults.conv_tol, help="SCF tolerance, Ha (1e-9)")
    dft.add_argument("--density-fit", action="store_true", help="RI-J density fitting")
    dft.add_argument("--charge", type=int, default=0, help="total charge (default 0)")
    dft.add_argument("--spin", type=int, default=0, help="2S, unpaired electrons (default 0)")
    run = parser.add_argument_group("execution")
    run.add_argument("--workers", type=int, default=1, help="parallel PySCF processes (default 1)")
    run.add_argument(
        "--threads-per-worker", type=int, default=None, help="OpenMP threads each (default: cores / workers)"
    )
    run.add_argument("--time-limit", type=float, default=None, help="stop cleanly after this many seconds")
    run.add_argument(
        "--scheduler",
        default=None,
        help="Dask distributed scheduler address (tcp://host:8786): label on that cluster instead of "
        "local processes (extra 'cluster'; --workers and --threads-per-worker are then the cluster's)",
    )


def _configurations(args: argparse.Namespace) -> list[Any]:
    """The configurations to label, each with an integer ``info['config_id']``."""
    from ase.io import read

    if args.configs:
        frames = read(args.configs, index=":")
        for i, atoms in enumerate(frames):
            atoms.info.setdefault("config_id", i)
            atoms.calc = None
        return frames
    from mlip.dft import sampling

    if args.method == "md":
        if not args.model:
            raise SystemExit("mlip label: --method md needs --model")
        if args.smiles:
            start = sampling.atoms_from_smiles(args.smiles, seed=args.seed)
        else:
            start = read(args.molecule, index=0)
        return sampling.md_samples(
            start, args.model, args.count, args.temperature, args.seed, args.md_interval
        )
    if args.smiles:
        mol = sampling.molecule_from_smiles(args.smiles, seed=args.seed)
    else:
        mol = sampling.molecule_from_atoms(read(args.molecule, index=0))
    return sampling.sample_molecule(mol, args.count, args.temperature, args.seed, args.min_wavenumber)


def main(args: argparse.Namespace) -> int:
    from mlip.dft import store
    from mlip.dft.executor import make_executor
    from mlip.dft.labelling import label_configurations

    configs = _configurations(args)
    if args.sample_only:
        store.write_atomic(args.output, "".join(store.frame_text(a) for a in configs))
        print(f"wrote {len(configs)} unlabelled configurations to {args.output}")
        return 0
    settings = DFTSettings(
        xc=args.xc,
        basis=args.basis,
        grid_level=args.grid_level,
        conv_tol=args.conv_tol,
        density_fit=args.density_fit,
        charge=args.charge,
        spin=args.spin,
    )
    executor = make_executor(args.workers, args.threads_per_worker, args.scheduler)
    try:
        report = label_configurations(configs, args.output, settings, executor, args.time_limit)
    finally:
        executor.close()
    if report.failed:
        print(f"{len(report.failed)} of {len(configs)} configurations failed: run again to retry them")
    return 1 if report.failed else 0
