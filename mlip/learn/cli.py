"""``mlip learn CONFIG.yaml [--set key=value ...] [--resume | --overwrite]``: the active-learning loop.

Rounds of committee training, committee MD, selection of the most uncertain distinct frames, PySCF
labelling and retraining (:mod:`mlip.learn.loop`), until the MD stays below the threshold or a budget
(rounds, DFT calls, wall time) is spent. Exit 0 with the stop's name, 1 when a round failed
(:class:`~mlip.errors.RunFailedError`), 2 for bad input.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mlip.train.typed_config import add_run_arguments

    add_run_arguments(
        parser,
        sections="train, md, select, dft, label, stop, output; see the docs",
        override_example="select.frames=5",
        resume_help="continue the run in output.dir from its state.json",
        overwrite_help="replace an earlier run in output.dir (deletes its rounds and labelled frames)",
    )


def main(args: argparse.Namespace) -> int:
    from mlip.learn.config import dump_config, load_config

    config = load_config(args.config, args.overrides)
    if args.print_config:
        print(dump_config(config), end="")
        return 0
    from mlip.learn.loop import Loop

    result = Loop(config, resume=args.resume, overwrite=args.overwrite).run()
    stopped = result["stopped"] or "time_limit (resume with --resume to go on)"
    print(
        f"mlip learn: stopped: {stopped} after round {result['round']}; {result['dft_calls']} DFT calls; "
        f"model {result['model']}"
    )
    return 0
