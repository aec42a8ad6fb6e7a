"""MD step time of a compiled model on a fixed-shape (padded) edge list, and of its CUDA-graph replay.

Routes, all ``mlip.md`` NVE (velocity Verlet, 0.5 fs, ``ForceField`` with a 1 Å skin) of one system in
one process, for our ``mace`` with ``benchmarks/model.py``'s hyperparameters (random weights, species
H C N O, r_max 5 Å):

* ``eager``: the eager model on the pairs within the cutoff (``ForceField`` default);
* ``compiled``: its ``mlip compile`` package (compiled here, ``compile_s``) on the same filtered list,
  whose edge count changes every step (``ForceField(fixed_shape=False)``);
* ``compiled-padded``: the package on the whole skin list padded to a fixed capacity
  (``SkinNeighborList.padded``; the default for a package on CUDA, ``mlip md --fixed-shape``): constant
  shapes between rebuilds, at the price of the skin pairs and the padding (``edges`` / ``padded_edges``);
* CUDA only: ``graph-eager`` and ``graph-compiled``, the eager step (``ForceStep``) and the package's
  single-threaded runner captured as CUDA graphs (``mlip.compile.graphs.cuda_graph``) on the padded
  list, replayed every step (recaptured when the capacity grows).

Before timing, every route runs ``--check-steps`` steps from the same start as ``eager``; the largest
position and force differences are printed and a route off by more than the tolerance of the dtype
(float64 1e-8, float32 1e-3 Å and eV/Å) fails the run (exit 1, no table). Timing: ``--rounds`` rounds,
each timing ``--steps`` steps of every route back to back (after a warm-up round), so the
``paired_vs_*`` ratios (median over rounds of the peer's time over the route's) share the machine's
load; ``ms_per_step`` is the median of a route's own rounds.

    python benchmarks/md_fixed_shape.py [--systems aspirin,box-1000] [--device cuda] [--dtype float32]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from mlip import md
from mlip.benchmarking import print_table, write_json

RESULTS = Path(__file__).resolve().parent / "results"


def model_benchmark():
    """``benchmarks/model.py`` as a module (its systems and model hyperparameters)."""
    spec = importlib.util.spec_from_file_location("model_benchmark", Path(__file__).with_name("model.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def potentials(device: str, dtype: torch.dtype, folder: Path) -> tuple[dict, float]:
    """Route name -> (potential, fixed_shape) and the package's compile time (s)."""
    from mlip.compile import CompiledModel, compile_package
    from mlip.compile.graphs import cuda_graph

    bench = model_benchmark()
    eager = bench.ours("mace", dtype, device).eval().requires_grad_(False)
    path = folder / "mace.pt2"
    seconds = compile_package(eager, path, device=device)
    package = CompiledModel(path, device=device)
    routes = {"eager": (eager, False), "compiled": (package, False), "compiled-padded": (package, True)}
    if torch.device(device).type == "cuda":
        routes["graph-eager"] = (cuda_graph(eager), True)
        routes["graph-compiled"] = (cuda_graph(package), True)
    return routes, seconds


def start_state(atoms, device: str) -> md.MDState:
    state = md.from_atoms([atoms], seed=0, device=device)
    md.maxwell_boltzmann(state, 300.0)
    return state


def force_field(route: tuple, state: md.MDState) -> md.ForceField:
    potential, fixed_shape = route
    ff = md.ForceField(potential, skin=1.0, fixed_shape=fixed_shape)
    md.nve.init(state, ff)
    return ff


def check(routes: dict, atoms, device: str, steps: int, tolerance: float) -> dict[str, float]:
    """Largest position / force difference (Å, eV/Å) of each route from ``eager`` after ``steps``
    steps from the same state; raises ``SystemExit(1)`` above ``tolerance``."""
    finals = {}
    for name, route in routes.items():
        state = start_state(atoms, device)
        ff = force_field(route, state)
        for _ in range(steps):
            md.nve.step(state, ff, 0.5)
        finals[name] = (state.positions, state.forces)
    ref = finals["eager"]
    worst = {}
    for name, (x, f) in finals.items():
        worst[name] = max(float((x - ref[0]).abs().max()), float((f - ref[1]).abs().max()))
        print(f"  {name}: max |Δx|, |ΔF| vs eager after {steps} steps = {worst[name]:.3g}")
    bad = [name for name, value in worst.items() if not value <= tolerance]
    if bad:
        print(f"FAILED: {', '.join(bad)} differ from eager by more than {tolerance:g}", file=sys.stderr)
        raise SystemExit(1)
    return worst


def timed(routes: dict, atoms, device: str, steps: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per step of each route in each round (a warm-up round first, not kept)."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    states = {name: start_state(atoms, device) for name in routes}
    fields = {name: force_field(route, states[name]) for name, route in routes.items()}
    times: dict[str, list[float]] = {name: [] for name in routes}
    for r in range(rounds + 1):
        for name in routes:
            sync()
            start = time.perf_counter()
            for _ in range(steps):
                md.nve.step(states[name], fields[name], 0.5)
            sync()
            if r:
                times[name].append((time.perf_counter() - start) / steps)
    for name, ff in fields.items():
        times[name + ":edges"] = [float(ff.neighbors(*_lists(states[name]))[0].shape[1])]
        times[name + ":capacity"] = [float(ff.neighbors.capacity if ff.fixed_shape else 0)]
        times[name + ":builds"] = [float(ff.neighbors.builds)]
    return times


def _lists(state: md.MDState) -> tuple:
    return state.positions, state.cell, state.pbc, state.batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="aspirin,box-1000", help="of benchmarks/model.py")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5, help="steps per route and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--check-steps", type=int, default=5)
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON (default: results/md_fixed_shape_DEVICE.json)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    tolerance = 1e-8 if dtype == torch.float64 else 1e-3
    bench = model_benchmark()
    everything = bench.systems(quick=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mlip-md-fixed-") as folder:
        routes, compile_s = potentials(args.device, dtype, Path(folder))
        print(f"compiled the package in {compile_s:.0f} s")
        for system in args.systems.split(","):
            atoms = everything[system]
            print(f"{system} ({len(atoms)} atoms): checking every route against eager")
            worst = check(routes, atoms, args.device, args.check_steps, tolerance)
            times = timed(routes, atoms, args.device, args.steps, args.rounds)
            for name in routes:
                own = times[name]
                row = {
                    "system": system,
                    "atoms": len(atoms),
                    "route": name,
                    "ms_per_step": 1e3 * statistics.median(own),
                    "steps_per_s": 1.0 / statistics.median(own),
                    "edges": int(times[name + ":edges"][0]),
                    "padded_edges": int(times[name + ":capacity"][0]),
                    "builds": int(times[name + ":builds"][0]),
                    "max_diff_vs_eager": worst[name],
                }
                for peer in ("eager", "compiled"):
                    ratios = [p / o for p, o in zip(times[peer], own, strict=True)]
                    row[f"paired_vs_{peer}"] = statistics.median(ratios)
                rows.append(row)
    print_table(rows)
    out = args.out or RESULTS / f"md_fixed_shape_{torch.device(args.device).type}.json"
    write_json(out, "md_fixed_shape", rows, device=args.device, compile_s=compile_s, dtype=args.dtype)


if __name__ == "__main__":
    main()
