"""``mlip train CONFIG.yaml [--set key=value ...] [--resume]`` (also under ``torchrun --no-python``)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mlip.train.typed_config import add_run_arguments

    add_run_arguments(
        parser,
        sections="data, model, loss, optim, schedule, train, output",
        override_example="optim.lr=1e-3",
        resume_help=(
            "continue from output.dir/checkpoint_last.pt (model and data fields of the config must match)"
        ),
        overwrite_help="replace an earlier run in output.dir (deletes its outputs)",
    )


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
