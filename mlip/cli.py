"""The ``mlip`` console script: ``mlip <verb> ...``.

Each verb lives in its own module exposing ``add_arguments(parser)`` and ``main(args) -> int``; the module
is imported when the parser is built: keep heavy imports inside ``main``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from mlip import allocator
from mlip.errors import EXIT_RUN_FAILED, EXIT_USER_INPUT, RunFailedError, UserInputError

# verb -> (module, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "bench": (
        "mlip.benchmarking",
        "run a benchmark suite from benchmarks/ (tp, kernel_resources, gaunt, model, md, data, train, "
        "neighbors, custom_op_cpu)",
    ),
    "train": (
        "mlip.train.train_verb",
        "train a potential from a YAML config (torchrun for several processes)",
    ),
    "compile": ("mlip.compile.cli", "compile a model to an AOTInductor .pt2 package (C++/LAMMPS, faster MD)"),
    "eval": ("mlip.train.eval_verb", "energy/force/stress errors of a trained model on labelled data"),
    "demo": ("mlip.demo", "train on the embedded ethanol DFT data, report test errors, run NVE MD"),
    "label": ("mlip.label", "sample molecular configurations and label them with PySCF DFT (extra 'dft')"),
    "data": ("mlip.datasets.cli", "convert datasets to the HDF5 cache, show statistics"),
    "md": ("mlip.md.cli", "run molecular dynamics with a trained potential"),
    "learn": (
        "mlip.learn.cli",
        "active learning: train a committee, run MD, label the most uncertain frames with PySCF, repeat",
    ),
    "convert": (
        "mlip.interop.convert_verb",
        "convert a mace-torch model file (MACE / ScaleShiftMACE) to an mlip model file (needs --trust)",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlip", description="Equivariant interatomic potentials.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks (or MLIP_DEBUG=1)")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, (module_name, help_text) in sorted(VERBS.items()):
        p = sub.add_parser(verb, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        importlib.import_module(module_name).add_arguments(p)
    return parser


def _one_line(error: Exception) -> str:
    """The message of a user error on one line; a missing or unreadable path is named with the reason."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    return " ".join(str(error).split())


def main(argv: list[str] | None = None) -> int:
    """Run one verb (with :func:`mlip.allocator.keep_freed_memory`). :class:`~mlip.errors.UserInputError`
    (and a missing, unreadable or misplaced path: ``FileNotFoundError``, ``PermissionError``, ...) -> one
    line, exit 2; :class:`~mlip.errors.RunFailedError` -> one line, exit 1; ``--debug`` (or
    ``MLIP_DEBUG=1``) re-raises with the traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 2
    debug = args.debug or os.environ.get("MLIP_DEBUG", "") not in ("", "0")
    allocator.keep_freed_memory()  # training and MD steps reuse their freed memory (MLIP_MALLOC=default: not)
    try:
        return int(importlib.import_module(args._module).main(args) or 0)
    except (
        UserInputError,
        FileNotFoundError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
    ) as error:
        if debug:
            raise
        print(f"mlip {args.verb}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USER_INPUT
    except RunFailedError as error:
        if debug:
            raise
        print(f"mlip {args.verb}: failed: {_one_line(error)}", file=sys.stderr)
        return EXIT_RUN_FAILED


if __name__ == "__main__":
    sys.exit(main())
