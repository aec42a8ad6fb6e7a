"""``mlip data``: convert a dataset to the HDF5 cache, print statistics.

mlip data convert SRC OUT.h5 [--format F] [--cutoff 5.0 ...] [--option molecule=aspirin ...]
mlip data stats PATH [--format F] [--cutoff 5.0] [--e0 e0.json] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from mlip.data import DataError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Sub-commands ``convert`` and ``stats``."""
    sub = parser.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    for name, help_text in (
        ("convert", "convert a dataset to an HDF5 cache"),
        ("stats", "dataset statistics"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("source", help="dataset file or folder (any format mlip.datasets.load reads)")
        if name == "convert":
            p.add_argument("output", help="HDF5 cache to write (.h5)")
            p.add_argument("--compression", default="gzip", choices=["gzip", "lzf", "none"])
            p.add_argument(
                "--cutoff", type=float, action="append", default=[], help="store a neighbour list (Å)"
            )
        else:
            p.add_argument(
                "--cutoff", type=float, default=None, help="neighbour cutoff (Å) for avg neighbours"
            )
            p.add_argument("--e0", default=None, help="JSON file {Z: eV}, least_squares (default) or average")
            p.add_argument("--json", default=None, help="also write the statistics to this JSON file")
        p.add_argument("--format", default=None, help="source format (detected when omitted)")
        p.add_argument("--option", action="append", default=[], help="loader option key=value (repeatable)")


def main(args: argparse.Namespace) -> int:
    """Run ``mlip data convert`` or ``mlip data stats``; returns the exit status."""
    from mlip.datasets import load, write_cache
    from mlip.datasets.api import parse_options

    dataset = load(args.source, format=args.format, **parse_options(args.option))
    if args.data_command == "convert":
        compression = None if args.compression == "none" else args.compression
        path = write_cache(dataset, args.output, cutoffs=args.cutoff, compression=compression, progress=True)
        print(f"wrote {len(dataset)} structures to {path}")
        return 0
    from mlip.datasets.statistics import E0_METHODS, compute_statistics

    e0: Any = "least_squares"
    if args.e0 in E0_METHODS:
        e0 = args.e0
    elif args.e0:
        try:
            with open(args.e0) as f:
                e0 = {int(z): float(v) for z, v in json.load(f).items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise DataError(f"{args.e0}: expected a JSON object {{Z: eV}} ({exc})") from exc
    stats = compute_statistics(dataset, e0=e0, cutoff=args.cutoff).to_dict()
    width = max(len(k) for k in stats)
    for key, value in stats.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(stats, f, indent=2)
    return 0
