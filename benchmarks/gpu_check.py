"""The GPU check of the fixed-shape MD step and its CUDA graphs, in stages, for a lent H100/H200.

Not yet run on a GPU. On the device machine, from the repository root (``benchmarks/device/README.md``
for the setup)::

    source benchmarks/device/env.sh && python3 benchmarks/gpu_check.py [--stage tests|bench|all]

Stages (each prints what it runs; the script exits 1 at the first failing stage):

1. ``tests``: ``tests/compile/test_graphs.py`` on CUDA, whose ``test_captured_graph_md_equals_eager_on_cuda``
   captures a tiny eager model's step, replays it through 30 NVE steps with neighbour-list rebuilds and
   a forced capacity growth (a recapture), and compares every frame with the eager run (float64, 1e-9).
2. ``bench``: ``benchmarks/md_fixed_shape.py --device cuda`` on aspirin and the 1k box (float32): eager,
   compiled, compiled on the padded list, and the CUDA-graph replays of the eager step and of the
   package, each first checked against eager, then ms per step and paired ratios; JSON in
   ``benchmarks/results/md_fixed_shape_cuda.json``.

``MLIP_TP_AUTOTUNE=0`` (one Triton configuration per kernel) keeps the first-call compilation short; the
benchmark stage leaves tuning on unless ``--no-tune``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stages(args: argparse.Namespace) -> dict[str, tuple[list[str], dict[str, str]]]:
    python = sys.executable
    bench = [python, "benchmarks/md_fixed_shape.py", "--device", "cuda", "--dtype", "float32"]
    bench += ["--systems", "aspirin,box-1000", "--steps", str(args.steps), "--rounds", str(args.rounds)]
    return {
        "tests": (
            [python, "-m", "pytest", "-q", "-x", "tests/compile/test_graphs.py"],
            {"MLIP_TP_AUTOTUNE": "0"},
        ),
        "bench": (bench, {"MLIP_TP_AUTOTUNE": "0"} if args.no_tune else {}),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=("tests", "bench", "all"), default="all")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per route and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-tune", action="store_true", help="MLIP_TP_AUTOTUNE=0 in the bench stage too")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here", file=sys.stderr)
        return 2
    print(f"gpu_check on {torch.cuda.get_device_name()} (torch {torch.__version__})", flush=True)
    for name, (command, env) in stages(args).items():
        if args.stage not in (name, "all"):
            continue
        print(f"== stage {name}: {' '.join(command)}", flush=True)
        if subprocess.run(command, cwd=ROOT, env={**os.environ, **env}).returncode:
            print(f"gpu_check: stage {name} FAILED", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
