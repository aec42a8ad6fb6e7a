"""Question: on this CPU, how fast is a float32 product through oneDNN (``mlip.kernels.gemm``) against
``torch.mm`` (MKL), on the shapes the package's hot paths run, at 1 and 2 threads?

Shapes: a square reference, the fused uvw tensor product's weight GEMMs (``W^T [W, Σ U] @ t [Σ U, d B]``,
their transposes in the backward, the long-K weight gradient), the symmetric contraction's basis change
(``[61, 494] @ [494, N C]``) and a Linear layer on 1k atoms; plus the small products where the fixed
cost decides (:data:`mlip.kernels.gemm.MIN_FLOPS`). Each row checks the two results agree, then times
them interleaved (best of ``--rounds`` rounds of the median of ``--repeats`` calls) and prints GFLOP/s
and the ratio. Also prints :func:`mlip.kernels.gemm.onednn_faster` as the package decides it here.
Writes benchmarks/results/gemm_cpu.json (``--out``).
"""

from __future__ import annotations

import argparse

import torch

from mlip.benchmarking import measure, print_table, write_json
from mlip.kernels import gemm

SHAPES = {  # name: (M, K, N) of [M, K] @ [K, N]
    "square-1024": (1024, 1024, 1024),
    "uvw-c64-l2 fwd W^T t": (64, 128, 10000),
    "uvw-c64-l2 bwd W g": (128, 64, 10000),
    "uvw-c64-l2 grad W (long K)": (128, 10000, 64),
    "uvw-c32-l1 fwd": (32, 64, 6000),
    "contraction basis, 21 atoms": (61, 494, 2688),
    "Linear 128x1o, 1k atoms": (3000, 128, 128),
    "radial MLP, 30k edges": (30000, 64, 64),
    "small 256x64x64": (256, 64, 64),
    "small 64x64x64": (64, 64, 64),
}


def row(name: str, shape: tuple[int, int, int], threads: int, rounds: int, repeats: int) -> dict:
    torch.set_num_threads(threads)
    m, k, n = shape
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
    ours, peer = gemm._onednn(a, b), torch.mm(a, b)
    err = float((ours - peer).abs().max() / peer.abs().max())
    if err > 1e-5:
        raise AssertionError(f"{name}: oneDNN and torch.mm differ by {err:.2e} (relative)")
    best = {"onednn": float("inf"), "mm": float("inf")}
    for _ in range(rounds):
        best["onednn"] = min(best["onednn"], measure(lambda: gemm._onednn(a, b), repeats=repeats, warmup=1))
        best["mm"] = min(best["mm"], measure(lambda: torch.mm(a, b), repeats=repeats, warmup=1))
    flops = 2 * m * k * n
    return {
        "shape": name, "M": m, "K": k, "N": n, "threads": threads,
        "mm_gflops": flops / best["mm"] / 1e9, "onednn_gflops": flops / best["onednn"] / 1e9,
        "onednn_x_vs_mm": best["mm"] / best["onednn"], "rel_diff": err,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/gemm_cpu.json")
    args = parser.parse_args()
    rows = [
        row(name, shape, threads, args.rounds, args.repeats)
        for threads in args.threads
        for name, shape in SHAPES.items()
    ]
    print_table(rows)
    chosen = {t: (torch.set_num_threads(t), gemm.onednn_faster())[1] for t in args.threads}
    print("mlip.kernels.gemm.onednn_faster() here, per thread count:", chosen)
    write_json(args.out, "gemm", rows, onednn_chosen=chosen)


if __name__ == "__main__":
    main()
