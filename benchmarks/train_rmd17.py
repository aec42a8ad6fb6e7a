"""Training under a fixed wall-clock budget on rMD17: our ``mace``, our grid variant, and mace-torch.

For each molecule (default ethanol and aspirin): 1000 training frames of split 01 (5% held out for
validation), tested on the 1000 frames of test_01. Each model trains for ``--budget`` seconds:
ours with ``train.time_limit`` (optimizer-step time; validation excluded), mace-torch with its own
``mace_run_train`` (recommended recipe: MSE with energy/force weights 10/1000, AMSGrad, EMA 0.99, batch
5, lr 0.01) killed after ``--budget`` seconds of wall time and then evaluated from its last
checkpoint (``--restart_latest`` with no epochs left: its own evaluation on the test file).
All models share the architecture size (``--channels``, L=1 hidden features, max_ell 3, correlation 3,
r_max 5 Å) and float32. Prints a table of energy (meV/atom) and force (meV/Å) MAE, writes
``benchmarks/results/train_rmd17.json`` and a learning-curve figure ``train_rmd17.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlip.benchmarking import print_table, write_json

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rmd17"


def _ours(molecule: str, product: str, args: argparse.Namespace, work: Path) -> dict:
    from mlip.train.config import config_from_dict
    from mlip.train.logs import read_log
    from mlip.train.trainer import train

    out = work / f"{molecule}_{product}"
    shutil.rmtree(out, ignore_errors=True)
    rmd17 = {"molecule": molecule, "split": 1}
    config = config_from_dict(
        {
            "data": {
                "train": str(DATA),
                "options": {**rmd17, "part": "train"},
                "test": str(DATA),
                "test_options": {**rmd17, "part": "test"},
                "valid_fraction": 0.05,
            },
            "model": {
                "name": "mace",
                "hyperparameters": {
                    "hidden_irreps": f"{args.channels}x0e+{args.channels}x1o",
                    "max_ell": 3,
                    "correlation": 3,
                    "r_max": 5.0,
                    "product": product,
                },
            },
            "loss": {"kind": "mse", "energy_weight": 10.0, "forces_weight": 1000.0},
            "optim": {"lr": 0.01, "ema_decay": 0.99, "amsgrad": True},
            "schedule": {"kind": "plateau", "plateau_patience": 5},
            "train": {
                "max_steps": 10**7,
                "batch_size": 5,
                "valid_every": args.valid_every,
                "time_limit": float(args.budget),
            },
            "output": {"dir": str(out), "progress": False, "tensorboard": False},
        }
    )
    results = train(config)
    log = read_log(out / "log.csv")
    return {
        "energy_mae": results["test"]["energy_mae"],
        "forces_mae": results["test"]["forces_mae"],
        "valid_energy_mae": results["valid"]["energy_mae"],
        "valid_forces_mae": results["valid"]["forces_mae"],
        "steps": results["step"],
        "curve": list(zip(log["time_s"], log["valid_forces_mae"], strict=True)),
    }


def _write_xyz(dataset, path: Path) -> None:
    from ase.io import write

    frames = []
    for i in range(len(dataset)):
        atoms = dataset.to_atoms(i)
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        atoms.arrays["REF_forces"] = atoms.get_forces()
        atoms.calc = None
        frames.append(atoms)
    write(path, frames, format="extxyz")


def _mace_torch(molecule: str, args: argparse.Namespace, work: Path) -> dict:
    from mlip.datasets import load

    out = work / f"{molecule}_mace-torch"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    _write_xyz(load(DATA, molecule=molecule, split=1, part="train"), out / "train.xyz")
    _write_xyz(load(DATA, molecule=molecule, split=1, part="test"), out / "test.xyz")
    exe = str(Path(sys.executable).parent / "mace_run_train")
    common = [
        exe,
        "--name=bench",
        f"--work_dir={out}",
        f"--train_file={out / 'train.xyz'}",
        "--valid_fraction=0.05",
        f"--test_file={out / 'test.xyz'}",
        "--E0s=average",
        "--model=MACE",
        f"--hidden_irreps={args.channels}x0e + {args.channels}x1o",
        "--max_ell=3",
        "--correlation=3",
        "--r_max=5.0",
        "--batch_size=5",
        "--valid_batch_size=10",
        "--energy_weight=10",
        "--forces_weight=1000",
        "--lr=0.01",
        "--amsgrad",
        "--ema",
        "--ema_decay=0.99",
        "--default_dtype=float32",
        "--device=cpu",
        "--energy_key=REF_energy",
        "--forces_key=REF_forces",
        "--error_table=PerAtomMAE",
        "--scaling=rms_forces_scaling",
        "--eval_interval=1",
        "--seed=0",
    ]
    start = time.monotonic()
    proc = subprocess.Popen(
        [*common, "--max_num_epochs=100000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        proc.wait(timeout=args.budget)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    wall = time.monotonic() - start
    checkpoints = sorted(
        (out / "checkpoints").glob("*_epoch-*.pt"), key=lambda p: int(re.findall(r"epoch-(\d+)", p.name)[0])
    )
    row = {"wall_s": wall, **_mace_log(out, wall)}
    if not checkpoints:
        row["note"] = "no checkpoint within the budget (not one epoch finished)"
        return row
    epoch = int(re.findall(r"epoch-(\d+)", checkpoints[-1].name)[0])
    final = subprocess.run(
        [*common, "--restart_latest", f"--max_num_epochs={epoch}"], capture_output=True, text=True
    )
    row.update(_mace_test_errors(out, final.stdout + final.stderr))
    row["epochs"] = epoch + 1
    return row


def _mace_log(out: Path, wall: float) -> dict:
    """Optimizer steps, the validation curve (time s, force MAE meV/Å; times spread evenly over the
    run) and the last validation errors, from mace-torch's results log."""
    records = []
    for path in (out / "results").glob("*_train.txt"):
        records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    evals = [r for r in records if r.get("mode") == "eval" and "mae_f" in r and r.get("epoch") is not None]
    row = {
        "steps": sum(r.get("mode") == "opt" for r in records),
        "curve": [(wall * (i + 1) / len(evals), 1000 * r["mae_f"]) for i, r in enumerate(evals)],
    }
    if evals:
        row["valid_forces_mae"] = 1000 * evals[-1]["mae_f"]
        row["valid_energy_mae"] = 1000 * evals[-1].get("mae_e_per_atom", float("nan"))
    return row


def _mace_test_errors(out: Path, text: str) -> dict:
    """Energy (meV/atom) and force (meV/Å) MAE from the first row of mace's last 'Error-table on TEST'."""
    logs = " ".join(p.read_text() for p in (out / "logs").glob("*.log")) + text
    if "Error-table on TEST" not in logs:
        return {"note": "mace-torch printed no test error table"}
    table = logs.rsplit("Error-table on TEST", 1)[1]
    rows = re.findall(r"\|\s*[^|\s]+\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|", table)
    if not rows:
        return {"note": "mace-torch's test error table has no rows"}
    energy, forces = rows[0]
    return {"energy_mae": float(energy), "forces_mae": float(forces)}


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    molecules = sorted({r["molecule"] for r in rows})
    fig, axes = plt.subplots(1, len(molecules), figsize=(5.5 * len(molecules), 4), squeeze=False)
    for ax, molecule in zip(axes[0], molecules, strict=True):
        for r in (r for r in rows if r["molecule"] == molecule and r.get("curve")):
            t, f = zip(*r["curve"], strict=True)
            ax.plot(t, f, marker="o", markersize=3, label=r["model"])
        ax.set(
            title=f"rMD17 {molecule}",
            xlabel="training time (s)",
            ylabel="valid force MAE (meV/Å)",
            yscale="log",
        )
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecules", nargs="+", default=["ethanol", "aspirin"])
    parser.add_argument("--models", nargs="+", default=["mace", "grid", "mace-torch"])
    parser.add_argument("--budget", type=float, default=600.0, help="seconds of training per model")
    parser.add_argument("--channels", type=int, default=32, help="feature channels (all models)")
    parser.add_argument("--valid-every", type=int, default=100, help="our models: steps between validations")
    parser.add_argument("--work", default="/tmp/train_rmd17", help="scratch folder for runs")
    parser.add_argument("--out", default="benchmarks/results/train_rmd17.json")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"rMD17 data not found at {DATA}")
    work = Path(args.work)
    rows = []
    for molecule in args.molecules:
        for model in args.models:
            print(f"== {molecule} / {model}: {args.budget:.0f} s", flush=True)
            if model == "mace-torch":
                if shutil.which("mace_run_train", path=str(Path(sys.executable).parent)) is None:
                    print("mace-torch not installed: skipped")
                    continue
                result = _mace_torch(molecule, args, work)
            else:
                result = _ours(molecule, "gaunt" if model == "grid" else "cg", args, work)
            rows.append({"molecule": molecule, "model": model, **result})
            print_table([{k: v for k, v in rows[-1].items() if k != "curve"}])
    columns = [
        "molecule",
        "model",
        "energy_mae",
        "forces_mae",
        "valid_energy_mae",
        "valid_forces_mae",
        "steps",
        "epochs",
        "note",
    ]
    print_table([{c: r.get(c) for c in columns} for r in rows], columns)
    out = Path(args.out)
    figure = out.with_suffix(".png")
    _plot(rows, figure)
    curves = {f"{r['molecule']}/{r['model']}": r.get("curve") for r in rows}
    table = [{c: r.get(c) for c in columns} for r in rows]
    extra = {"budget_s": args.budget, "channels": args.channels, "figure": figure.name}
    write_json(
        out,
        "train",
        table,
        threads=os.environ.get("OMP_NUM_THREADS", "?"),
        curves=curves,
        **extra,
    )


if __name__ == "__main__":
    main()
