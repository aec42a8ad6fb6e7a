"""``mlip compile MODEL -o model.pt2``: one AOTInductor package of the energy+forces+virial step."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mlip.errors import UserInputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file (model.save) or training checkpoint")
    parser.add_argument("-o", "--output", required=True, help="package to write (must end in .pt2)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device the package runs on")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")


def main(args: argparse.Namespace) -> int:
    import torch

    from mlip.compile.package import compile_package, sha256
    from mlip.train.model_setup import load_trained

    output = Path(args.output)
    if output.suffix != ".pt2":
        raise UserInputError(f"{output}: the output of mlip compile must end in .pt2")
    if output.exists() and not args.overwrite:
        raise UserInputError(f"{output} exists: pass --overwrite to replace it")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserInputError("--device cuda: no CUDA device on this machine (compile where the package runs)")
    model = load_trained(args.model, device=args.device).to(dtype=getattr(torch, args.dtype))
    if model.name == "committee":
        raise UserInputError(
            f"{args.model}: a committee cannot be compiled; compile its members (member<i>/best.model)"
        )
    partial = output.with_name(f".{output.stem}.partial.pt2")  # a failed compile leaves no OUTPUT
    try:
        seconds = compile_package(model, partial, device=args.device, model_sha256=sha256(args.model))
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    print(
        f"wrote {output}: {model.name}, {args.dtype}, {args.device}, species {model.species}, "
        f"r_max {model.cutoff} Å; compiled in {seconds:.1f} s"
    )
    return 0
