"""Active learning on the embedded ethanol data: committee-uncertainty picking vs random picking.

The 377 PBE/def2-SVP frames of ``mlip/demo_data`` (already labelled, so "labelling" a frame means
moving it from the pool into the training set) are split once (``--split-seed``) into a fixed test set
(``--test`` frames) and a pool. Each repeat (``--seeds``) draws ``--initial`` random pool frames, trains
a committee on them (``mlip.train.trainer.train`` with ``train.committee``, the machinery of ``mlip
train``) and then, per strategy, runs ``--rounds`` rounds of: add ``--batch`` pool frames, retrain.

- ``uncertainty``: the committee of the previous round evaluates the pool (``MLIPCalculator.
  calculate_many``); a frame's uncertainty is the max (``--reduce max``) or mean over its atoms of the
  per-atom force std ``forces_std`` (eV/Å); :func:`mlip.learn.selection.select_uncertain` keeps the
  most uncertain frames no two of which (nor one and a training frame) lie closer than
  ``--min-distance`` (1/Å, fingerprint distance);
- ``random``: ``--batch`` pool frames drawn uniformly (seeded by the repeat's seed).

Both strategies share the initial set and its committee, the committee seeds and the training budget:
every committee is trained from scratch for ``--steps`` optimizer steps (cosine schedule, EMA weights,
no validation set: the final weights are used), whatever the training-set size. After each round the
committee mean is tested: force MAE (meV/Å, over components), energy MAE (meV/atom), and the Spearman
rank correlation between the committee's force std and the true force error, per frame (frame
uncertainty as above vs mean atomic force-error norm) and per atom (std vs force-error norm).

Writes ``--out`` (JSON: one row per strategy and round with the mean and spread over repeats, and every
repeat's figures under ``runs``) and a figure beside it (``.png``: test force MAE vs labelled frames
with error bars over repeats, and std vs error on the test set with rho in the title). ``--quick``:
tiny models, two rounds of a few steps, for smoke tests.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import shutil
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mlip.benchmarking import print_table, write_json

DATA = "ethanol_pbe_def2svp.extxyz"
STRATEGIES = ("uncertainty", "random")
MODEL = {
    "hidden_irreps": "16x0e+16x1o",
    "max_ell": 2,
    "correlation": 2,
    "num_interactions": 2,
    "r_max": 5.0,
    "radial_mlp": [16, 16],
}
QUICK_MODEL = {**MODEL, "hidden_irreps": "4x0e+4x1o", "max_ell": 1, "num_interactions": 1, "radial_mlp": [8]}


def load_frames() -> list:
    """The embedded ethanol frames (ASE atoms with energy and forces in eV, eV/Å)."""
    from ase.io import read

    with resources.as_file(resources.files("mlip") / "demo_data" / DATA) as path:
        return read(path, index=":")


def split(n: int, n_test: int, seed: int) -> tuple[list[int], list[int]]:
    """Fixed ``(test, pool)`` frame indices: a seeded permutation of ``range(n)``."""
    order = np.random.default_rng(seed).permutation(n).tolist()
    return sorted(order[:n_test]), sorted(order[n_test:])


def train_config(train_file: Path, out: Path, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """The ``mlip train`` config of one committee (a plain dict for ``config_from_dict``)."""
    return {
        "data": {"train": str(train_file), "valid_fraction": 0.0},
        # one molecule: least squares cannot separate the E0s, so the mean energy per atom
        "model": {
            "name": args.model,
            "hyperparameters": QUICK_MODEL if args.quick else MODEL,
            "e0s": "average",
            "seed": seed,
        },
        "loss": {"kind": "mse", "energy_weight": 1.0, "forces_weight": 100.0},
        "optim": {"lr": args.lr, "ema_decay": 0.99},
        "schedule": {"kind": "cosine", "warmup_steps": min(20, args.steps // 5), "min_lr": 1e-4},
        "train": {
            "max_steps": args.steps,
            "batch_size": args.batch_size,
            "valid_every": args.steps,  # no validation set: one "validation" at the end, best = last
            "seed": seed,
            "committee": args.committee,
            "bootstrap": args.bootstrap,
        },
        "output": {"dir": str(out), "progress": False, "tensorboard": False, "plots": False},
    }


def train_committee(frames: list, indices: list[int], out: Path, args: argparse.Namespace, seed: int) -> Path:
    """Train a committee on ``frames[indices]`` in ``out`` (replaced); returns its model file."""
    from ase.io import write

    from mlip.train.config import config_from_dict
    from mlip.train.trainer import train

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    train_file = out / "train.extxyz"
    write(train_file, [frames[i] for i in indices], format="extxyz")
    config = config_from_dict(train_config(train_file, out / "run", args, seed))
    with contextlib.redirect_stdout(io.StringIO()):  # the run summaries: kept in each train.log
        result = train(config)
    return Path(result["committee"])


def predict(model_file: Path, frames: list) -> list[dict[str, Any]]:
    """The committee's results (``energy``, ``forces``, ``forces_std``) on ``frames``, float64."""
    from mlip.calculator import MLIPCalculator

    return MLIPCalculator(model_file, device="cpu").calculate_many(frames)


def frame_uncertainty(results: list[dict[str, Any]], reduce: str) -> np.ndarray:
    """Per frame, the max or mean over atoms of the committee force std ``[F]`` (eV/Å)."""
    op = np.max if reduce == "max" else np.mean
    return np.array([op(r["forces_std"]) for r in results])


def max_force(atoms) -> float:
    """The largest DFT force norm of a frame (eV/Å): how far it is from equilibrium."""
    return float(np.linalg.norm(atoms.get_forces(), axis=1).max())


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of two equally long samples."""
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def test_metrics(results: list[dict[str, Any]], frames: list, reduce: str) -> dict[str, Any]:
    """Errors of the committee mean on ``frames`` and how its force std ranks the true errors."""
    energy_error, force_error, atom_error = [], [], []
    for r, atoms in zip(results, frames, strict=True):
        energy_error.append(abs(r["energy"] - atoms.get_potential_energy()) / len(atoms))
        delta = r["forces"] - atoms.get_forces()
        force_error.append(np.abs(delta).ravel())
        atom_error.append(np.linalg.norm(delta, axis=1))
    per_frame_error = np.array([e.mean() for e in atom_error])
    atom_std = np.concatenate([r["forces_std"] for r in results])
    return {
        "forces_mae": 1000.0 * float(np.concatenate(force_error).mean()),
        "energy_mae": 1000.0 * float(np.mean(energy_error)),
        "rho_frame": spearman(frame_uncertainty(results, reduce), per_frame_error),
        "rho_atom": spearman(atom_std, np.concatenate(atom_error)),
        "mean_forces_std": 1000.0 * float(atom_std.mean()),
        # for the scatter plot: per frame, uncertainty and mean atomic force-error norm (meV/Å)
        "scatter": [
            (1000.0 * frame_uncertainty(results, reduce)).round(2).tolist(),
            (1000.0 * per_frame_error).round(2).tolist(),
        ],
    }


def pick(
    strategy: str,
    model_file: Path,
    frames: list,
    pool: list[int],
    labelled: list[int],
    fingerprints: dict[int, np.ndarray],
    args: argparse.Namespace,
    rng: np.random.Generator,
) -> tuple[list[int], dict[str, float]]:
    """The next ``args.batch`` pool frames of ``strategy`` (not in ``labelled``) and pool statistics."""
    from mlip.learn.selection import select_uncertain

    candidates = [i for i in pool if i not in set(labelled)]
    if strategy == "random":
        return sorted(rng.choice(candidates, size=args.batch, replace=False).tolist()), {}
    uncertainty = frame_uncertainty(predict(model_file, [frames[i] for i in candidates]), args.reduce)
    chosen = select_uncertain(
        uncertainty,
        [fingerprints[i] for i in candidates],
        args.batch,
        args.min_distance,
        exclude=[fingerprints[i] for i in labelled],
    )
    if len(chosen) < args.batch:
        raise RuntimeError(
            f"--min-distance {args.min_distance}: only {len(chosen)} of {args.batch} pool frames are far "
            "enough apart; lower it"
        )
    picked = uncertainty[chosen]
    stats = {"pool_std_median": 1000.0 * float(np.median(uncertainty))}
    stats["picked_std_median"] = 1000.0 * float(np.median(picked))
    return sorted(candidates[c] for c in chosen), stats


def run_repeat(
    seed: int, frames: list, test: list[int], pool: list[int], args: argparse.Namespace, work: Path
) -> list[dict[str, Any]]:
    """One repeat: the shared initial committee, then ``args.rounds`` rounds per strategy."""
    from mlip.learn.selection import structure_fingerprint

    fingerprints = {i: structure_fingerprint(frames[i].numbers, frames[i].positions) for i in pool}
    rng = np.random.default_rng(seed)
    initial = sorted(rng.choice(pool, size=args.initial, replace=False).tolist())
    test_frames = [frames[i] for i in test]
    model_seed = 1000 * seed  # members get model_seed + i; the same per round for both strategies

    def evaluate(strategy: str, round_: int, labelled: list[int], model: Path, start: float, extra: dict):
        row = {"seed": seed, "strategy": strategy, "round": round_, "labelled": len(labelled)}
        row.update(test_metrics(predict(model, test_frames), test_frames, args.reduce))
        row.update(extra, train_s=round(time.monotonic() - start, 1))
        print(
            f"seed {seed} {strategy:11s} round {round_}: {len(labelled)} frames, force MAE "
            f"{row['forces_mae']:.1f} meV/Å, energy MAE {row['energy_mae']:.2f} meV/atom, "
            f"rho frame {row['rho_frame']:.2f} atom {row['rho_atom']:.2f} ({row['train_s']} s)",
            flush=True,
        )
        return row

    start = time.monotonic()
    first = train_committee(frames, initial, work / f"seed{seed}" / "round0", args, model_seed)
    shared = evaluate("both", 0, initial, first, start, {})
    rows = [{**shared, "strategy": s} for s in STRATEGIES]
    for strategy in STRATEGIES:
        labelled, model = list(initial), first
        strategy_rng = np.random.default_rng([seed, 1])  # random picks: the same stream in every run
        for round_ in range(1, args.rounds + 1):
            start = time.monotonic()
            new, stats = pick(strategy, model, frames, pool, labelled, fingerprints, args, strategy_rng)
            stats["picked"] = new  # frame indices in the demo file
            stats["picked_max_force_median"] = float(np.median([max_force(frames[i]) for i in new]))
            labelled = sorted(labelled + new)
            model = train_committee(
                frames, labelled, work / f"seed{seed}" / f"{strategy}{round_}", args, model_seed
            )
            rows.append(evaluate(strategy, round_, labelled, model, start, stats))
    return rows


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per strategy and round: the mean and sample std over repeats of the test figures."""
    out = []
    for strategy in STRATEGIES:
        for round_ in sorted({r["round"] for r in runs}):
            group = [r for r in runs if r["strategy"] == strategy and r["round"] == round_]
            row: dict[str, Any] = {"strategy": strategy, "round": round_, "labelled": group[0]["labelled"]}
            row["repeats"] = len(group)
            for key in ("forces_mae", "energy_mae", "rho_frame", "rho_atom"):
                values = np.array([r[key] for r in group])
                row[key] = float(values.mean())
                row[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
            out.append(row)
    return out


def compare(summary: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per round after the first: the force MAE difference random - uncertainty (meV/Å), its mean and
    std over repeats (paired by seed), and in how many repeats uncertainty picking was better."""
    out = []
    for round_ in sorted({r["round"] for r in runs if r["round"] > 0}):
        by = {(r["strategy"], r["seed"]): r["forces_mae"] for r in runs if r["round"] == round_}
        seeds = sorted({s for _, s in by})
        diff = np.array([by["random", s] - by["uncertainty", s] for s in seeds])
        out.append(
            {
                "round": round_,
                "labelled": next(r["labelled"] for r in summary if r["round"] == round_),
                "random_minus_uncertainty": float(diff.mean()),
                "std": float(diff.std(ddof=1)) if len(diff) > 1 else float("nan"),
                "uncertainty_better": f"{int((diff > 0).sum())}/{len(diff)}",
            }
        )
    return out


def plot(summary: list[dict[str, Any]], runs: list[dict[str, Any]], path: Path, reduce: str) -> None:
    """Test force MAE vs labelled frames per strategy (error bars: std over repeats), and the last
    uncertainty-picked committee's frame uncertainty vs frame force error on the test set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for strategy, marker in zip(STRATEGIES, ("o", "s"), strict=True):
        rows = [r for r in summary if r["strategy"] == strategy]
        left.errorbar(
            [r["labelled"] for r in rows],
            [r["forces_mae"] for r in rows],
            yerr=[0.0 if math.isnan(r["forces_mae_std"]) else r["forces_mae_std"] for r in rows],
            marker=marker,
            capsize=3,
            label=f"{strategy}-picked",
        )
    repeats = summary[0]["repeats"]
    left.set(
        xlabel="labelled (training) frames",
        ylabel="test force MAE (meV/Å)",
        title=f"ethanol, committee mean, {repeats} repeat(s) (mean ± std)",
    )
    left.legend()
    last = max(r["round"] for r in runs)
    shown = [r for r in runs if r["strategy"] == "uncertainty" and r["round"] == last]
    for r in shown:
        right.scatter(*r["scatter"], s=10, alpha=0.6, label=f"seed {r['seed']}")
    rho = np.mean([r["rho_frame"] for r in shown])
    right.set(
        xlabel=f"committee force std, {reduce} over atoms (meV/Å)",
        ylabel="mean atomic force error (meV/Å)",
        title=f"test set after round {last} (uncertainty): Spearman rho = {rho:.2f}",
        xscale="log",
        yscale="log",
    )
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one repeat per seed")
    parser.add_argument("--test", type=int, default=77, help="fixed test frames")
    parser.add_argument("--initial", type=int, default=20, help="labelled frames before round 1")
    parser.add_argument("--batch", type=int, default=20, help="frames added per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--committee", type=int, default=3, help="committee members")
    parser.add_argument("--bootstrap", action="store_true", help="train each member on a bootstrap resample")
    parser.add_argument("--model", default="mace", help="registered model name (mace or nequip)")
    parser.add_argument("--steps", type=int, default=800, help="optimizer steps per member and round")
    parser.add_argument("--batch-size", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--reduce", choices=("max", "mean"), default="max", help="atom std -> frame")
    parser.add_argument("--min-distance", type=float, default=0.015, help="fingerprint spread (1/Å)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the fixed test/pool split")
    parser.add_argument("--quick", action="store_true", help="tiny models, 2 rounds of 10 steps, 1 seed")
    parser.add_argument("--jobs", type=int, default=2, help="repeats run in parallel processes")
    parser.add_argument("--work", default="/tmp/active_learning", help="scratch folder (replaced)")
    parser.add_argument("--out", default="benchmarks/results/active_learning.json")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.rounds, args.steps, args.committee = args.seeds[:1], 2, 10, 2
        args.initial, args.batch = 10, 10
    if args.committee < 2:
        sys.exit("--committee: a committee needs at least 2 members")
    frames = load_frames()
    test, pool = split(len(frames), args.test, args.split_seed)
    if args.initial + args.rounds * args.batch > len(pool):
        sys.exit(f"{args.initial} + {args.rounds} x {args.batch} frames exceed the pool of {len(pool)}")
    work = Path(args.work)
    runs: list[dict[str, Any]] = []
    start = time.monotonic()
    if args.jobs == 1:
        for seed in args.seeds:
            runs += run_repeat(seed, frames, test, pool, args, work)
    else:  # repeats in parallel processes, one thread each
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=context) as executor:
            tasks = [executor.submit(run_repeat, s, frames, test, pool, args, work) for s in args.seeds]
            for task in tasks:
                runs += task.result()
    summary = summarise(runs)
    gains = compare(summary, runs)
    print_table(
        summary,
        [
            "strategy",
            "round",
            "labelled",
            "forces_mae",
            "forces_mae_std",
            "energy_mae",
            "rho_frame",
            "rho_atom",
        ],
    )
    print_table(gains)
    out = Path(args.out)
    setup = {k: v for k, v in vars(args).items() if k not in ("work", "out")}
    write_json(
        out,
        "active_learning",
        summary,
        setup=json.dumps(setup),
        model_hyperparameters=json.dumps(QUICK_MODEL if args.quick else MODEL),
        test_frames=len(test),
        pool_frames=len(pool),
        pool_max_force_median=float(np.median([max_force(frames[i]) for i in pool])),
        wall_s=round(time.monotonic() - start, 1),
        gains=gains,
        runs=[{k: v for k, v in r.items()} for r in runs],
    )
    plot(summary, runs, out.with_suffix(".png"), args.reduce)
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
