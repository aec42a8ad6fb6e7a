"""Tensor-product convolution on the standard kernel set: our backends against e3nn (+ index_add).

Question: how fast are ``tp_conv`` (channelwise configs) and ``TensorProduct`` (uvw configs) for forward,
forward+backward and double backward (gradients of the gradients, as in force training), relative to
e3nn measured in the same process, and how close to the roofline?

    python benchmarks/tp.py --quick                      # CPU, small, < 5 min
    python benchmarks/tp.py --device cuda --out benchmarks/results/tp_h100.json --plot tp.png

Graph: ``E`` edges, ``N = E // 16`` nodes, random ``src``/``dst``; our convolution gets one
:class:`~mlip.kernels.ConvGraph` per problem, built outside the timed region, as a model builds one per
neighbour list and shares it between its layers (``--sort-per-call``: a fresh one, i.e. the edges sorted,
in every call). ``uvw`` configs are plain batched products (batch ``E``) with shared weights by default
(``--uvw-weights per-sample`` for one weight vector per sample), e3nn given the same.
Each timing is the median of ``--repeats`` runs after warm-up (CUDA synchronized).
Outputs are checked against e3nn before timing. Roofline fraction is ``max(bytes/bandwidth,
flops/peak) / time`` with *approximate* counts: bytes = each input read once and each output written
once (fused ideal), flops = ``2 * nnz(CG) * U + U * d_out`` per edge and path for the forward, x3 for the
backward pass and x4 more for double backward. Peak numbers per device are in ``PEAKS``.
"""

from __future__ import annotations

import argparse
import math

import torch

from mlip.benchmarking import measure, print_table, write_json
from mlip.kernels import ConvGraph, tp_conv
from mlip.kernels.tensor_product.configs import CHANNELWISE, CONFIGS, config_instructions, make_tp
from mlip.kernels.tensor_product.descriptor import wigner_block

# bytes/s, fp32 FLOP/s, fp64 FLOP/s (non-tensor-core vector peaks)
PEAKS = {"H100": (3.35e12, 67e12, 34e12), "H200": (4.8e12, 67e12, 34e12)}
PASSES = ("fwd", "fwd+bwd", "double")


def e3nn_module(name: str, dtype: torch.dtype, device: torch.device, shared: bool = False):
    from e3nn import o3

    in1, in2, out, instructions = config_instructions(name)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return o3.TensorProduct(
            in1, in2, str(out), instructions, shared_weights=shared, internal_weights=False
        ).to(device)
    finally:
        torch.set_default_dtype(previous)


def problem(name: str, edges: int, dtype: torch.dtype, device: torch.device, shared: bool = False):
    tp = make_tp(name, shared_weights=shared)
    conv = name in CHANNELWISE
    nodes = max(1, edges // 16) if conv else edges
    g = torch.Generator().manual_seed(0)
    x = torch.randn(nodes, tp.irreps_in1.dim, generator=g, dtype=dtype).to(device)
    sh = torch.randn(edges, tp.irreps_in2.dim, generator=g, dtype=dtype).to(device)
    w = torch.randn(*(() if shared else (edges,)), tp.weight_numel, generator=g, dtype=dtype).to(device)
    src = torch.randint(0, nodes, (edges,), generator=g).to(device) if conv else None
    dst = torch.randint(0, nodes, (edges,), generator=g).to(device) if conv else None
    return tp, (x, sh, w, src, dst, nodes)


def forward_fn(name: str, backend: str, module, data, sort_per_call: bool = False):
    x, sh, w, src, dst, nodes = data
    if backend == "e3nn":
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


def timed(fn, data, kind: str, repeats: int) -> float:
    """Median seconds of one pass (after one warm-up call, which also compiles)."""
    return measure(lambda: run_pass(fn, data, kind), repeats=repeats, warmup=1)


def roofline(name: str, data, kind: str, dtype: torch.dtype, device: torch.device) -> float | None:
    """Ideal time (s) ``max(bytes/bandwidth, flops/peak)``, or ``None`` without known peaks."""
    if device.type != "cuda":
        return None
    gpu = torch.cuda.get_device_name(device)
    peaks = next((v for k, v in PEAKS.items() if k in gpu), None)
    if peaks is None:
        return None
    tp = make_tp(name)
    desc = tp.descriptor
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small batch, few configs (CPU, < 5 min)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--configs", nargs="*", default=None)
    parser.add_argument("--dtypes", nargs="*", default=["float32", "float64"])
    parser.add_argument("--passes", nargs="*", default=list(PASSES))
    parser.add_argument("--edges", type=int, default=None, help="batch (edges); default 50k (20k double)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", default=None, help="JSON file")
    parser.add_argument("--plot", default=None, help="PNG of the ratios against e3nn")
    parser.add_argument("--uvw-weights", choices=["shared", "per-sample"], default="shared")
    parser.add_argument("--sort-per-call", action="store_true", help="no ConvGraph reuse across calls")
    args = parser.parse_args()
    device = torch.device(args.device)
    configs = args.configs or (
        ["mace-medium", "nequip-aspirin", "nequip-water"] if args.quick else list(CONFIGS)
    )
    repeats = args.repeats or (3 if args.quick else 10)
    backends = ["triton", "torch"] if device.type == "cuda" else ["torch"]
    rows = []
    for name in configs:
        for dtype_name in args.dtypes:
            dtype = getattr(torch, dtype_name)
            shared = name not in CHANNELWISE and args.uvw_weights == "shared"
            reference = e3nn_module(name, dtype, device, shared)
            for kind in args.passes:
                edges = args.edges or ((1000 if kind == "double" else 2000) if args.quick else
                                       (20000 if kind == "double" else 50000))  # fmt: skip
                tp, data = problem(name, edges, dtype, device, shared)
                fns = {"e3nn": forward_fn(name, "e3nn", reference, data)}
                for backend in backends:
                    module = make_tp(name, backend if name in CHANNELWISE else "torch", shared).to(device)
                    fns[backend] = forward_fn(name, backend, module, data, args.sort_per_call)
                with torch.no_grad():
                    expected = fns["e3nn"](*data[:3])
                    for backend in backends:
                        err = float((fns[backend](*data[:3]) - expected).abs().max() / expected.abs().max())
                        if err > (1e-4 if dtype == torch.float32 else 1e-9):
                            raise AssertionError(f"{name} {backend} {dtype_name}: relative error {err:.2e}")
                times = {b: timed(f, data, kind, repeats) for b, f in fns.items()}
                ideal = roofline(name, data, kind, dtype, device)
                best = min(times[b] for b in backends)
                row = {"config": name, "dtype": dtype_name, "pass": kind, "edges": edges,
                       "weights": "shared" if shared else "per-sample"}  # fmt: skip
                row.update({f"{b}_ms": t * 1e3 for b, t in times.items()})
                row.update({f"{b}_x_vs_e3nn": times["e3nn"] / times[b] for b in backends})
                row["roofline_fraction"] = None if ideal is None else ideal / best
                rows.append(row)
                print(", ".join(f"{k}={_fmt(v)}" for k, v in row.items()), flush=True)
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

    labels = [f"{r['config']}\n{r['dtype'][5:]} {r['pass']}" for r in rows]
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
