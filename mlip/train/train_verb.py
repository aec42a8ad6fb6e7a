"""``mlip train CONFIG.yaml [--set key=value ...] [--resume]`` (also under ``torchrun --no-python``)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config", help="YAML config (sections: data, model, loss, optim, schedule, train, output)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set optim.lr=1e-3 (repeatable)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from output.dir/checkpoint_last.pt (model and data fields of the config must match)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier run in output.dir (deletes its outputs)"
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def main(args: argparse.Namespace) -> int:
    import json

    from mlip.train.config import dump_config, load_config

    config = load_config(args.config, args.overrides)  # ConfigError: one line, exit 2 (mlip.cli)
    if args.print_config:
        print(dump_config(config), end="")
        return 0
    from mlip.train.trainer import train

    results = train(config, resume=args.resume, overwrite=args.overwrite)
    print(json.dumps(results, indent=2))
    return 0
