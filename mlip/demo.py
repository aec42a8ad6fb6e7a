"""``mlip demo``: train a MACE potential on the embedded ethanol DFT data, test it, run NVE MD with it.

The data (``mlip/demo_data``, 377 PBE/def2-SVP configurations made with ``mlip label``) is split
80/10/10 with a fixed seed. Training takes a few minutes on 2 CPU cores (``--minutes`` caps it); then
the test errors are printed, a 0.5 ps NVE trajectory at 300 K is run with the trained model in float64,
and its energies over time are plotted. Everything lands in ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DATA = "ethanol_pbe_def2svp.extxyz"

MODEL = {
    "hidden_irreps": "32x0e+32x1o",
    "max_ell": 2,
    "correlation": 3,
    "num_interactions": 2,
    "r_max": 5.0,
    "radial_mlp": [32, 32],
}
QUICK_MODEL = {**MODEL, "hidden_irreps": "4x0e+4x1o", "max_ell": 1, "correlation": 2, "num_interactions": 1}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier demo run in --out")
    parser.add_argument("--steps", type=int, default=1200, help="training steps (default 1200)")
    parser.add_argument("--minutes", type=float, default=4.0, help="cap on the training time (default 4)")
    parser.add_argument("--md-steps", type=int, default=1000, help="NVE steps of 0.5 fs (default 1000)")
    parser.add_argument("--temperature", type=float, default=300.0, help="initial MD temperature, K")
    parser.add_argument("--quick", action="store_true", help="tiny model, 20 steps, 50 MD steps (smoke test)")


def demo_config(data: Path, out: Path, steps: int, minutes: float, quick: bool) -> dict[str, Any]:
    """The training config of the demo (a plain dict for :func:`mlip.train.config.config_from_dict`)."""
    return {
        "data": {"train": str(data), "valid_fraction": 0.1, "test_fraction": 0.1, "split_seed": 0},
        # one molecule: least squares cannot separate the E0s, every element gets the mean energy per atom
        "model": {
            "name": "mace",
            "hyperparameters": QUICK_MODEL if quick else MODEL,
            "seed": 0,
            "e0s": "average",
        },
        "loss": {
            "energy_weight": 1.0,
            "forces_weight": 100.0,
            "stages": [{"start_step": int(0.8 * steps), "energy_weight": 10.0, "forces_weight": 100.0}],
        },
        "optim": {"lr": 0.01, "ema_decay": 0.99},
        "schedule": {"kind": "cosine", "warmup_steps": min(20, steps // 5), "min_lr": 1e-4},
        "train": {
            "max_steps": steps,
            "batch_size": 8,
            "valid_every": max(1, steps // 12),
            "time_limit": 60.0 * minutes,
            "seed": 0,
        },
        "output": {"dir": str(out / "train"), "progress": not quick},
    }


def run_nve(model_path: Path, atoms: Any, steps: int, temperature: float) -> Any:
    """NVE (velocity Verlet, 0.5 fs) from ``atoms`` with Maxwell-Boltzmann velocities; returns the run."""
    import torch

    from mlip import md, models

    potential = models.load(model_path, dtype=torch.float64).eval()
    state = md.from_atoms(atoms, seed=0)
    md.maxwell_boltzmann(state, temperature)
    forcefield = md.ForceField(potential, skin=1.0)
    md.nve.init(state, forcefield)
    return md.simulate(state, forcefield, md.nve.step, steps=steps, dt=0.5, log_interval=5)


def plot_energies(result: Any, path: Path, drift: float) -> None:
    """Potential, kinetic and total energy (eV, relative to the start) against time (fs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = result.log
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("potential", "kinetic", "total"):
        series = log.series(key)[:, 0].numpy()
        ax.plot(log.time, series - series[0], label=key)
    ax.set(xlabel="time (fs)", ylabel="energy - initial (eV)", title=f"NVE, drift {drift:.3f} meV/atom/ps")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    import json
    from importlib import resources

    from mlip.train.config import config_from_dict, dump_config
    from mlip.train.eval_verb import format_table
    from mlip.train.trainer import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = 20 if args.quick else args.steps
    md_steps = 50 if args.quick else args.md_steps
    with resources.as_file(resources.files("mlip") / "demo_data" / DATA) as data:
        config = config_from_dict(demo_config(data, out, steps, args.minutes, args.quick))
        print(f"training mace on {data.name} (PBE/def2-SVP ethanol); config:\n{dump_config(config)}")
        results = train(config, overwrite=args.overwrite)
        test_atoms = _first_test_structure(config)
    print(f"\ntest errors ({int(results['test']['num_structures'])} structures, best EMA weights):")
    print(format_table(results["test"]))
    model_path = Path(config.output.dir) / "best.model"
    run = run_nve(model_path, test_atoms, md_steps, args.temperature)
    drift = float(run.log.drift(run.state.num_atoms)[0])
    plot_energies(run, out / "md_energy.png", drift)
    total = run.log.series("total")[:, 0]
    summary = {
        "train": results,
        "md": {
            "steps": md_steps,
            "dt_fs": 0.5,
            "total_energy_range_meV": 1000 * float(total.max() - total.min()),
            "drift_meV_per_atom_per_ps": drift,
            "ns_per_day": run.ns_per_day,
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(
        f"\nNVE {md_steps} x 0.5 fs at {args.temperature:.0f} K: total energy within "
        f"{summary['md']['total_energy_range_meV']:.2f} meV, drift {drift:.3f} meV/atom/ps "
        f"({run.ns_per_day:.2f} ns/day)"
    )
    print(f"outputs: {out}/train (model, logs, plots), {out}/md_energy.png, {out}/summary.json")
    return 0


def _first_test_structure(config: Any) -> Any:
    """The first test structure of the demo split (an ``ase.Atoms`` without labels)."""
    from mlip.train.data import load_splits

    atoms = load_splits(config.data).test.to_atoms(0)
    atoms.calc = None
    return atoms
