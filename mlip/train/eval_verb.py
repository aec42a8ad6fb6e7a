"""``mlip eval MODEL DATA``: energy/force/stress errors of a trained model, as a table and JSON."""

from __future__ import annotations

import argparse

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


def format_table(metrics: dict[str, float]) -> str:
    """A plain-text table of MAE and RMSE per quantity."""
    lines = [f"{'quantity':<16}{'MAE':>12}{'RMSE':>12}  unit"]
    for mae, rmse, name, unit in _ROWS:
        if mae in metrics:
            lines.append(f"{name:<16}{metrics[mae]:>12.3f}{metrics[rmse]:>12.3f}  {unit}")
    return "\n".join(lines)


def evaluate_model(
    model, dataset, batch_size: int, device, stress: bool = False, keep=None
) -> dict[str, float]:
    """Errors of ``model`` on every record of ``dataset`` (neighbour lists at the model's cutoff)."""
    from mlip.train import data as D
    from mlip.train.metrics import ErrorSums, predict

    records = D.with_neighbors(dataset, float(model.cutoff))
    errors = ErrorSums()
    for batch, pred in predict(model.eval(), D.batches(records, batch_size, device), stress):
        errors.update(pred, batch)
        if keep is not None:
            keep.update(pred, batch)
    return errors.result()


def main(args: argparse.Namespace) -> int:
    import json

    from mlip.datasets import load
    from mlip.datasets.api import parse_options
    from mlip.train.distributed import choose_device
    from mlip.train.metrics import Predictions
    from mlip.train.model_setup import load_trained

    device = choose_device(args.device, 0)
    model = load_trained(args.model, device=device)
    dataset = load(args.data, format=args.format, **parse_options(args.option))
    keep = Predictions() if args.parity else None
    metrics = evaluate_model(model, dataset, args.batch_size, device, args.stress, keep)
    print(f"{args.model} on {args.data} ({int(metrics['num_structures'])} structures)")
    print(format_table(metrics))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "data": args.data, **metrics}, f, indent=2)
    if keep is not None:
        from mlip.train.plots import parity

        parity(keep.arrays(), args.parity, title="")
    return 0
