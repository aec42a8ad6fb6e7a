"""Tensor-product convolution on the standard kernel set: our backends against e3nn (+ index_add).

Question: how fast are ``tp_conv`` (channelwise configs) and ``TensorProduct`` (uvw configs) for forward,
forward+backward and double backward (gradients of the gradients, as in force training), relative to
e3nn measured in the same process, and how close to the roofline?

    python benchmarks/tp.py --quick                      # CPU, small, < 5 min
    python benchmarks/tp.py --device cuda --out benchmarks/results/tp_h100.json --plot tp.png
    python benchmarks/tp.py --sweep [--quick]           # the shape grid SWEEP (issue 23), or its subset

``--sweep`` replaces the named configs by generated shapes (:func:`sweep_points`): channels, lmax and output
lmax, edges per node, uvu/uvw, dtype and thread count per point; ``--profile N`` also prints a
``torch.profiler`` table per row. Every record names the CPU model and its ISA flags (``environment``).

cuEquivariance (when ``cuequivariance_ops_torch`` imports, i.e. its CUDA kernels are there) is timed on
the channelwise configs in two forms, as mace-torch uses it: ``cueq`` = ``ChannelWiseTensorProduct`` on
gathered node features + ``index_add`` (``mul_ir`` layout), and ``cueq-fused`` = its ``uniform_1d``
segmented polynomial with the gather and scatter fused (``ir_mul`` layout, so the node features are given
in that layout; the check transposes).

Graph: ``E`` edges, ``N = E // 16`` nodes, random ``src``/``dst``; our convolution gets one
:class:`~mlip.kernels.ConvGraph` per problem, built outside the timed region, as a model builds one per
neighbour list and shares it between its layers (``--sort-per-call``: a fresh one, i.e. the edges sorted,
in every call). ``uvw`` configs are plain batched products (batch ``E``) with shared weights by default
(``--uvw-weights per-sample`` for one weight vector per sample), e3nn given the same.
Each timing is the median of ``--repeats`` runs after warm-up (CUDA synchronized), the best of ``--rounds``
rounds that alternate the candidates (3 with ``--sweep``: on a shared machine a neighbour's burst then
slows every candidate of a round alike; ``torch_x_range`` gives the per-round ratios); ``row_wall_s`` is the
whole row's wall time (building, checks, compiling, all timings), to see where a suite's minutes go.
Outputs are checked against e3nn before timing. Roofline fraction is ``max(bytes/bandwidth,
flops/peak) / time`` with *approximate* counts: bytes = each input read once and each output written
once (fused ideal), flops = ``2 * nnz(CG) * U + U * d_out`` per edge and path for the forward, x3 for the
backward pass and x4 more for double backward. Peak numbers per device are in ``PEAKS``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import torch

from mlip.benchmarking import measure, print_table, write_json
from mlip.kernels import ConvGraph, TensorProduct, tp_conv
from mlip.kernels.tensor_product import torch_fast
from mlip.kernels.tensor_product.configs import CHANNELWISE, CONFIGS, shape_instructions
from mlip.kernels.tensor_product.descriptor import wigner_block
from mlip.kernels.tensor_product.formulation import choose

# bytes/s, fp32 FLOP/s, fp64 FLOP/s (non-tensor-core vector peaks)
PEAKS = {"H100": (3.35e12, 67e12, 34e12), "H200": (4.8e12, 67e12, 34e12)}
PASSES = ("fwd", "fwd+bwd", "double")
# the --sweep grid (issue 23); --sweep --quick times the subset SWEEP_QUICK
SWEEP = {
    "channels": (16, 32, 64, 128, 256),
    "lmax": ((1, 1), (2, 1), (2, 2), (3, 1), (3, 2), (3, 3)),  # (lmax of in1 and of the SH, output lmax)
    "edges_per_node": (8, 16, 40),
    "mode": ("uvu", "uvw"),
    "dtype": ("float32", "float64"),
    "threads": (1, 2),
}
SWEEP_QUICK = {**SWEEP, "channels": (32, 128), "lmax": ((1, 1), (3, 2)), "edges_per_node": (8, 40)}
UVW_MAX_CHANNELS_QUICK = 32  # uvw cost grows as channels^2: the quick subset keeps its smallest width


def shape_of(name: str) -> tuple[str, str, str | None, bool]:
    """``(irreps_in1, irreps_in2, output irreps, channelwise)`` of a named configuration."""
    return (*CONFIGS[name], name in CHANNELWISE)


def natural_irreps(channels: int, lmax: int) -> str:
    """``channels x 0e + channels x 1o + ...`` up to ``lmax`` (``1x`` omitted when ``channels`` is 1)."""
    mul = "" if channels == 1 else f"{channels}x"
    return "+".join(f"{mul}{l}{'eo'[l % 2]}" for l in range(lmax + 1))


def sweep_points(quick: bool = False) -> list[dict]:
    """The sweep's points: dicts with ``name``, ``shape`` (as :func:`shape_of`), ``channels``, ``lmax``,
    ``lmax_out``, ``mode``, ``edges_per_node`` (``None`` for ``uvw``, a plain batched product),
    ``dtype`` and ``threads``. ``uvu`` points are MACE-style convolutions (target irreps up to the output
    lmax), ``uvw`` points connect every path into ``channels`` copies of each output irrep."""
    grid = SWEEP_QUICK if quick else SWEEP
    points = []
    for channels, (lmax, lmax_out), mode in itertools.product(grid["channels"], grid["lmax"], grid["mode"]):
        if mode == "uvw" and quick and channels > UVW_MAX_CHANNELS_QUICK:
            channels = UVW_MAX_CHANNELS_QUICK
        in1, sh = natural_irreps(channels, lmax), natural_irreps(1, lmax)
        if mode == "uvu":
            shape, per_node = (in1, sh, natural_irreps(1, lmax_out), True), grid["edges_per_node"]
        else:
            shape, per_node = (in1, sh, natural_irreps(channels, lmax_out), False), (None,)
        for epn, dtype, threads in itertools.product(per_node, grid["dtype"], grid["threads"]):
            point = {"name": f"{mode}-c{channels}-l{lmax}-o{lmax_out}" + (f"-e{epn}" if epn else ""),
                     "shape": shape, "channels": channels, "lmax": lmax, "lmax_out": lmax_out,
                     "mode": mode, "edges_per_node": epn, "dtype": dtype, "threads": threads}  # fmt: skip
            if point not in points:  # the quick uvw clamp makes repeats
                points.append(point)
    return points


def build_tp(shape, backend: str = "auto", shared: bool = False) -> TensorProduct:
    return TensorProduct(*shape_instructions(*shape), shared_weights=shared, backend=backend)


def e3nn_module(shape, dtype: torch.dtype, device: torch.device, shared: bool = False):
    from e3nn import o3

    in1, in2, out, instructions = shape_instructions(*shape)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return o3.TensorProduct(
            in1, in2, str(out), instructions, shared_weights=shared, internal_weights=False
        ).to(device)
    finally:
        torch.set_default_dtype(previous)


def problem(
    shape,
    edges: int,
    dtype: torch.dtype,
    device: torch.device,
    shared: bool = False,
    edges_per_node: int = 16,
):
    tp = build_tp(shape, shared=shared)
    conv = shape[3]
    nodes = max(1, edges // edges_per_node) if conv else edges
    g = torch.Generator().manual_seed(0)
    x = torch.randn(nodes, tp.irreps_in1.dim, generator=g, dtype=dtype).to(device)
    sh = torch.randn(edges, tp.irreps_in2.dim, generator=g, dtype=dtype).to(device)
    w = torch.randn(*(() if shared else (edges,)), tp.weight_numel, generator=g, dtype=dtype).to(device)
    src = torch.randint(0, nodes, (edges,), generator=g).to(device) if conv else None
    dst = torch.randint(0, nodes, (edges,), generator=g).to(device) if conv else None
    return tp, (x, sh, w, src, dst, nodes)


def cueq_available() -> bool:
    """cuEquivariance with its CUDA kernels (without them it falls back to a slow naive path)."""
    try:
        import cuequivariance_ops_torch  # noqa: F401
        import cuequivariance_torch  # noqa: F401
    except ImportError as error:
        print(f"cuEquivariance not timed: {error}")
        return False
    return True


def cueq_module(shape, fused: bool, dtype: torch.dtype, device: torch.device):
    """The cuEquivariance form of a channelwise config (e3nn's O3 conventions, same weight order)."""
    import cuequivariance as cue
    import cuequivariance_torch as cuet
    from mace.tools.cg import O3_e3nn

    in1, in2, out = (cue.Irreps(O3_e3nn, str(i)) for i in shape_instructions(*shape)[:3])
    if not fused:
        return cuet.ChannelWiseTensorProduct(
            in1, in2, out, layout=cue.mul_ir, shared_weights=False, internal_weights=False,
            dtype=dtype, math_dtype=dtype, device=device,
        )  # fmt: skip
    poly = cue.descriptors.channelwise_tensor_product(in1, in2, out).flatten_coefficient_modes()
    module = cuet.SegmentedPolynomial(poly.squeeze_modes().polynomial, method="uniform_1d", math_dtype=dtype)
    module.to_ir_mul = cuet.TransposeIrrepsLayout(in1, source=cue.mul_ir, target=cue.ir_mul, device=device)
    module.to_mul_ir = cuet.TransposeIrrepsLayout(out, source=cue.ir_mul, target=cue.mul_ir, device=device)
    return module.to(device)


def cueq_check(fn, module, data) -> torch.Tensor:
    """Output of the fused cuEquivariance form in e3nn's layout (its inputs transposed to ``ir_mul``)."""
    x, sh, w = data[:3]
    return module.to_mul_ir(fn(module.to_ir_mul(x), sh, w))


def forward_fn(backend: str, module, data, sort_per_call: bool = False):
    x, sh, w, src, dst, nodes = data
    if backend == "cueq-fused":
        shape = x.new_empty(nodes, 0)
        return lambda a, b, c: module([c, a, b], {1: src}, {0: shape}, {0: dst})[0]
    if backend in ("e3nn", "cueq"):
        if src is None:
            return lambda a, b, c: module(a, b, c)
        return lambda a, b, c: a.new_zeros(nodes, module.irreps_out.dim).index_add(
            0, dst, module(a[src], b, c)
        )
    if src is None:
        return lambda a, b, c: module(a, b, c)
    graph = None if sort_per_call else ConvGraph(src, dst, nodes)
    return lambda a, b, c: tp_conv(a, b, c, src, dst, nodes, module, backend=backend, graph=graph)


def run_pass(fn, data, kind: str) -> None:
    x, sh, w = data[:3]
    if kind == "fwd":
        with torch.no_grad():
            fn(x, sh, w)
        return
    leaves = [t.detach().requires_grad_() for t in (x, sh, w)]
    out = fn(*leaves)
    if kind == "fwd+bwd":
        torch.autograd.grad(out.square().sum(), leaves)
        return
    grads = torch.autograd.grad(out.square().sum(), leaves, create_graph=True)
    torch.autograd.grad(sum(g.square().sum() for g in grads), leaves)


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def timed(fn, data, kind: str, repeats: int, min_time: float = 0.0, clock: str = "wall") -> float:
    """Median seconds of one pass (after one warm-up call, which also compiles), over at least ``repeats``
    calls and ``min_time`` seconds; ``clock`` ``"wall"`` or ``"cpu"`` (process CPU time)."""
    timer = time.process_time if clock == "cpu" else time.perf_counter
    return measure(
        lambda: run_pass(fn, data, kind), repeats=repeats, warmup=1, min_time=min_time, clock=timer
    )


def profile(fn, data, kind: str, calls: int, rows: int = 14) -> None:
    """Print the ATen ops taking the most self CPU time over ``calls`` passes (with input shapes)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    run_pass(fn, data, kind)  # warm-up
    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(calls):
            run_pass(fn, data, kind)
    table = prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=rows)
    print(table, flush=True)


def roofline(shape, data, kind: str, dtype: torch.dtype, device: torch.device) -> float | None:
    """Ideal time (s) ``max(bytes/bandwidth, flops/peak)``, or ``None`` without known peaks."""
    if device.type != "cuda":
        return None
    gpu = torch.cuda.get_device_name(device)
    peaks = next((v for k, v in PEAKS.items() if k in gpu), None)
    if peaks is None:
        return None
    desc = build_tp(shape).descriptor
    x, sh, w, src, dst, nodes = data
    item = x.element_size()
    edges = sh.shape[0]
    io = (x.numel() + sh.numel() + w.numel() + nodes * desc.irreps_out.dim) * item
    flops = 0
    for ins in desc.instructions:
        nnz = int((wigner_block(ins, desc, torch.float64, torch.device("cpu")).abs() > 1e-12).sum())
        mul_out = desc.irreps_out[ins.i_out].mul
        flops += edges * (
            2 * nnz * math.prod(ins.path_shape[:1]) * max(1, mul_out if ins.mode == "uvw" else 1)
        )
        flops += edges * mul_out * desc.irreps_out[ins.i_out].ir.dim
    factor = {"fwd": 1, "fwd+bwd": 4, "double": 8}[kind]
    peak = peaks[1] if dtype == torch.float32 else peaks[2]
    return max(io * min(factor, 3) / peaks[0], flops * factor / peak)


def time_row(shape, dtype_name: str, kind: str, edges: int, args, backends, peers, edges_per_node: int = 16):
    """One row: e3nn, cuEquivariance (channelwise, when there) and our backends on one shape and pass,
    outputs checked against e3nn first."""
    device = torch.device(args.device)
    dtype = getattr(torch, dtype_name)
    started = time.perf_counter()
    shared = not shape[3] and args.uvw_weights == "shared"
    tp, data = problem(shape, edges, dtype, device, shared, edges_per_node)
    fns = {"e3nn": forward_fn("e3nn", e3nn_module(shape, dtype, device, shared), data)}
    cueq = {p: cueq_module(shape, p == "cueq-fused", dtype, device) for p in (peers if shape[3] else [])}
    fns.update({p: forward_fn(p, m, data) for p, m in cueq.items()})
    for backend in backends:
        module = build_tp(shape, backend if shape[3] else "torch", shared).to(device)
        fns[backend] = forward_fn(backend, module, data, args.sort_per_call)
    with torch.no_grad():
        expected = fns["e3nn"](*data[:3])
        for backend in [*backends, *cueq]:
            out = (
                cueq_check(fns[backend], cueq[backend], data)
                if backend == "cueq-fused"
                else fns[backend](*data[:3])
            )
            err = float((out - expected).abs().max() / expected.abs().max())
            # cuEquivariance's fp64 coefficients agree with e3nn's to ~1e-8 only
            if err > (1e-4 if dtype == torch.float32 else 1e-9 if backend in backends else 1e-7):
                raise AssertionError(f"{shape} {backend} {dtype_name}: relative error {err:.2e}")
    # rounds interleave the candidates, so a neighbour's burst on a shared machine slows all of them alike;
    # each time is the best round's, and the per-round ratios give the spread
    rounds: list[dict[str, float]] = []
    for _ in range(args.rounds):
        rounds.append(
            {b: timed(f, data, kind, args.repeats, args.min_time, args.clock) for b, f in fns.items()}
        )
    times = {b: min(r[b] for r in rounds) for b in fns}
    if args.profile:
        for backend, fn in fns.items():
            print(f"--- profile: {backend} {dtype_name} {kind}, {edges} edges (self CPU time per op)")
            profile(fn, data, kind, args.profile)
    ideal = roofline(shape, data, kind, dtype, device)
    best = min(times[b] for b in backends)
    row = {"dtype": dtype_name, "pass": kind, "edges": edges, "weights": "shared" if shared else "per-sample"}
    if args.clock != "wall":
        row["clock"] = args.clock
    if not shape[3]:  # the general path's formulation (tuned or cost model) for this pass, as timed
        x, w = (t.detach().requires_grad_(kind != "fwd") for t in (data[0], data[2]))
        desc = build_tp(shape, shared=shared).descriptor
        row["formulation"] = choose("general", torch_fast.GENERAL_FORMULATIONS, desc, x, w).name
    row.update({f"{b}_ms": t * 1e3 for b, t in times.items()})
    row.update({f"{b}_x_vs_e3nn": times["e3nn"] / times[b] for b in backends})
    if args.rounds > 1:
        for b in backends:
            ratios = [r["e3nn"] / r[b] for r in rounds]
            row[f"{b}_x_range"] = f"{min(ratios):.2f}-{max(ratios):.2f}"
    if cueq:
        row["ours_x_vs_cueq"] = min(times[p] for p in cueq) / best
    row["roofline_fraction"] = None if ideal is None else ideal / best
    row["row_wall_s"] = time.perf_counter() - started  # incl. building, checks, compiling
    return row


def default_edges(args, kind: str) -> int:
    if args.edges:
        return args.edges
    if args.quick:
        return 1000 if kind == "double" else 2000
    return 20000 if kind == "double" else 50000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small batch, few configs (CPU, < 5 min)")
    parser.add_argument(
        "--sweep", action="store_true", help="the shape grid SWEEP (with --quick: SWEEP_QUICK)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--configs", nargs="*", default=None)
    parser.add_argument(
        "--points", nargs="*", default=None, help="with --sweep: names containing one of these"
    )
    parser.add_argument("--dtypes", nargs="*", default=["float32", "float64"])
    parser.add_argument("--threads", type=int, nargs="*", default=None, help="with --sweep: only these")
    parser.add_argument("--passes", nargs="*", default=list(PASSES))
    parser.add_argument("--edges", type=int, default=None, help="batch (edges); default 50k (20k double)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="interleaved timing rounds, best kept; default 3 with --sweep",
    )
    parser.add_argument("--min-time", type=float, default=None, help="s per timing; default 0.1 with --sweep")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall time, or process CPU time (CPU: a shared machine's waits left out; threads summed)",
    )
    parser.add_argument("--out", default=None, help="JSON file")
    parser.add_argument("--plot", default=None, help="PNG of the ratios against e3nn")
    parser.add_argument("--uvw-weights", choices=["shared", "per-sample"], default="shared")
    parser.add_argument(
        "--profile", type=int, default=0, help="also print a torch.profiler table over N calls"
    )
    parser.add_argument("--sort-per-call", action="store_true", help="no ConvGraph reuse across calls")
    args = parser.parse_args()
    device = torch.device(args.device)
    args.repeats = args.repeats or (3 if args.quick else 10)
    args.rounds = args.rounds or (3 if args.sweep else 1)
    args.min_time = args.min_time if args.min_time is not None else (0.1 if args.sweep else 0.0)
    backends = ["triton", "torch"] if device.type == "cuda" else ["torch"]
    peers = ["cueq", "cueq-fused"] if device.type == "cuda" and cueq_available() else []
    if args.sweep:
        jobs = [(p, {k: p[k] for k in ("name", "channels", "lmax", "lmax_out", "mode", "edges_per_node",
                                       "threads")}) for p in sweep_points(args.quick)
                if not args.points or any(s in p["name"] for s in args.points)]  # fmt: skip
    else:
        names = args.configs or (
            ["mace-medium", "nequip-aspirin", "nequip-water"] if args.quick else list(CONFIGS)
        )
        jobs = [({"shape": shape_of(n), "dtype": d, "threads": None}, {"config": n})
                for n in names for d in args.dtypes]  # fmt: skip
    rows = []
    for point, label in jobs:
        if args.sweep and (
            point["dtype"] not in args.dtypes or args.threads and point["threads"] not in args.threads
        ):
            continue
        threads = torch.get_num_threads()
        if point["threads"]:
            torch.set_num_threads(point["threads"])
        try:
            for kind in args.passes:
                row = time_row(point["shape"], point["dtype"], kind, default_edges(args, kind), args,
                               backends, peers, point.get("edges_per_node") or 16)  # fmt: skip
                rows.append({**label, **row})
                print(", ".join(f"{k}={_fmt(v)}" for k, v in rows[-1].items()), flush=True)
                if args.out:  # kept if the run is stopped before the end
                    write_json(args.out, "tp", rows, str(device), partial=True, peaks=str(PEAKS))
        finally:
            torch.set_num_threads(threads)
    print()
    print_table(rows)
    if args.out:
        write_json(args.out, "tp", rows, str(device), sort_per_call=args.sort_per_call, peaks=str(PEAKS))
    if args.plot:
        plot(rows, backends, args.plot)


def plot(rows: list[dict], backends: list[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.get('config', r.get('name'))}\n{r['dtype'][5:]} {r['pass']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(rows)), 4))
    for n, b in enumerate(backends):
        xs = [i + n * 0.8 / len(backends) for i in range(len(rows))]
        ax.bar(xs, [r[f"{b}_x_vs_e3nn"] for r in rows], width=0.8 / len(backends), label=b)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(len(rows)), labels, rotation=90, fontsize=6)
    ax.set_ylabel("speed-up vs e3nn")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
