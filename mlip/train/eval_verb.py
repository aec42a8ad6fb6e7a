"""``mlip eval MODEL DATA``: energy/force/stress errors of a trained model, as a table and JSON, and
with ``--output`` the per-structure predictions beside the references in an extxyz file."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlip.errors import UserInputError

_ROWS = (
    ("energy_mae", "energy_rmse", "energy per atom", "meV/atom"),
    ("energy_total_mae", "energy_total_rmse", "energy", "meV"),
    ("forces_mae", "forces_rmse", "forces", "meV/Å"),
    ("stress_mae", "stress_rmse", "stress", "meV/Å³"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file (best.model) or training checkpoint (checkpoint_best.pt)")
    parser.add_argument("data", help="labelled structures (any format mlip.datasets.load reads)")
    parser.add_argument("--format", default=None, help="loader name (default: detected)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="loader option")
    parser.add_argument("--batch-size", type=int, default=32, help="structures per batch (default 32)")
    parser.add_argument("--stress", action="store_true", help="also evaluate stress (periodic cells)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default auto)")
    parser.add_argument("--json", default=None, help="write the metrics to this JSON file")
    parser.add_argument("--parity", default=None, help="write parity plots to this PNG file")
    parser.add_argument(
        "--output",
        default=None,
        help="write per-structure predictions (MLIP_energy, MLIP_forces, MLIP_stress) beside the references "
        "(REF_energy, REF_forces, REF_stress) to this extxyz file",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output file")


# unit of each metric in the JSON file
UNITS = {"num_structures": "count"} | {m: u for mae, rmse, _, u in _ROWS for m in (mae, rmse)}


def format_table(metrics: dict[str, float]) -> str:
    """A plain-text table of MAE and RMSE per quantity."""
    lines = [f"{'quantity':<16}{'MAE':>12}{'RMSE':>12}  unit"]
    for mae, rmse, name, unit in _ROWS:
        if mae in metrics:
            lines.append(f"{name:<16}{metrics[mae]:>12.3f}{metrics[rmse]:>12.3f}  {unit}")
    return "\n".join(lines)


def evaluate_model(
    model, dataset, batch_size: int, device, stress: bool = False, keep=None, rows=None
) -> dict[str, float]:
    """Errors of ``model`` on every record of ``dataset`` (neighbour lists at the model's cutoff);
    ``keep`` (:class:`~mlip.train.metrics.Predictions`) and ``rows`` (:class:`PerStructure`) collect
    the predictions too."""
    from mlip.train import data as D
    from mlip.train.metrics import ErrorSums, predict

    records = D.with_neighbors(dataset, float(model.cutoff))
    errors = ErrorSums()
    for batch, pred in predict(model.eval(), D.batches(records, batch_size, device), stress):
        errors.update(pred, batch)
        for collector in (keep, rows):
            if collector is not None:
                collector.update(pred, batch)
    return errors.result()


class PerStructure:
    """Predictions of every structure, in dataset order: energy (eV), forces ``[n_i, 3]`` (eV/Å), stress
    ``[3, 3]`` (eV/Å^3, when computed)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def update(self, pred: dict, batch) -> None:
        from mlip.data import keys as K

        counts = batch[K.NUM_ATOMS].tolist()
        forces = pred["forces"].detach().cpu().double().split(counts)
        for b in range(len(counts)):
            row = {"energy": float(pred["energy"][b]), "forces": forces[b].numpy()}
            if "stress" in pred:
                row["stress"] = pred["stress"][b].detach().cpu().double().numpy()
            self.rows.append(row)


def write_predictions(path: str | Path, dataset, rows: list[dict]) -> None:
    """Each record of ``dataset`` as extxyz with its labels as ``REF_energy`` (eV), ``REF_forces`` (eV/Å),
    ``REF_stress`` (3x3, eV/Å^3) and the predictions of ``rows`` as ``MLIP_energy``, ``MLIP_forces``,
    ``MLIP_stress``."""
    from ase.io import write

    frames = []
    for i, row in enumerate(rows):
        atoms = dataset.to_atoms(i)
        reference = dict(atoms.calc.results) if atoms.calc is not None else {}
        atoms.calc = None
        if "energy" in reference:
            atoms.info["REF_energy"] = float(reference["energy"])
        if "forces" in reference:
            atoms.arrays["REF_forces"] = reference["forces"]
        if "stress" in reference:
            atoms.info["REF_stress"] = _matrix(reference["stress"])
        atoms.info["MLIP_energy"] = row["energy"]
        atoms.arrays["MLIP_forces"] = row["forces"]
        if "stress" in row:
            atoms.info["MLIP_stress"] = row["stress"]
        frames.append(atoms)
    write(path, frames, format="extxyz")


def _matrix(stress):
    """ASE stress (Voigt ``[6]`` or ``[3, 3]``) as a ``[3, 3]`` array."""
    import numpy as np
    from ase.stress import voigt_6_to_full_3x3_stress

    stress = np.asarray(stress, dtype=float)
    return voigt_6_to_full_3x3_stress(stress) if stress.shape == (6,) else stress.reshape(3, 3)


def main(args: argparse.Namespace) -> int:
    import json

    from mlip.datasets import load
    from mlip.datasets.api import parse_options
    from mlip.train.distributed import choose_device
    from mlip.train.metrics import Predictions
    from mlip.train.model_setup import load_trained

    if args.output is not None and Path(args.output).exists() and not args.overwrite:
        raise UserInputError(f"{args.output}: exists; pass --overwrite to replace it")
    device = choose_device(args.device, 0)
    model = load_trained(args.model, device=device)
    dataset = load(args.data, format=args.format, **parse_options(args.option))
    keep = Predictions() if args.parity else None
    rows = PerStructure() if args.output else None
    metrics = evaluate_model(model, dataset, args.batch_size, device, args.stress, keep, rows)
    print(f"{args.model} on {args.data} ({int(metrics['num_structures'])} structures)")
    print(format_table(metrics))
    if args.json:
        with open(args.json, "w") as f:
            units = {k: UNITS[k] for k in metrics}
            json.dump({"model": args.model, "data": args.data, "units": units, **metrics}, f, indent=2)
    if rows is not None:
        write_predictions(args.output, dataset, rows.rows)
        print(f"predictions of {len(rows.rows)} structures written to {args.output}")
    if keep is not None:
        from mlip.train.plots import parity

        parity(keep.arrays(), args.parity, title="")
    return 0
