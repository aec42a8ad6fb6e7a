"""``mlip convert MACE_MODEL -o OURS.model``: a mace-torch model file to our pickle-free model format."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlip.errors import UserInputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="mace-torch model file (a pickled MACE / ScaleShiftMACE)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="model file to write (safetensors)")
    parser.add_argument(
        "--trust",
        action="store_true",
        help="allow unpickling SOURCE: this runs code named by the file, so only for files you trust",
    )
    parser.add_argument("--head", default=None, help="head to convert, for multi-head models")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")


def main(args: argparse.Namespace) -> int:
    from mlip.interop.mace import from_mace, load_mace_file

    if args.output.exists() and not args.overwrite:
        raise UserInputError(f"{args.output}: exists; pass --overwrite to replace it")
    module = load_mace_file(args.source, trust=args.trust)
    model = from_mace(module, head=args.head)
    tmp = args.output.with_name(args.output.name + ".tmp")
    model.save(tmp)
    tmp.replace(args.output)
    c = model.config
    print(
        f"wrote {args.output}: mace, species {c.species}, {c.num_interactions} interactions, "
        f"{c.hidden_irreps}, max_ell {c.max_ell}, correlation {c.correlation}, r_max {c.r_max} Å, "
        f"ZBL {'on' if c.pair_repulsion else 'off'}, {model.num_parameters()} parameters (float64)"
    )
    return 0
