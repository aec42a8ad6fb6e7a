"""Gaunt tensor product at L = 1..8: our grid product (Triton, torch) vs our Fourier method vs e3nn's CG.

One input degree L (all degrees 0..L packed, for both inputs), all degrees up to 2L out, channelwise.
e3nn's peer is ``o3.TensorProduct`` in ``"uuu"`` mode over every parity-allowed path ``(l1, l2, l3)``,
``l3 ≤ 2L`` (the same paths the Gaunt product has), without weights, on e3nn's own layout. Times are
medians of forward and forward+backward (gradients of both inputs); ratios are e3nn's time over ours in the
same process. Roofline (forward): ``max(bytes / bandwidth, flops / peak) / measured`` with bytes the
inputs and output once, flops the dense GEMMs our grid algorithm runs (``2(K1+K2)G + 2 G Kout`` per
sample and channel), and nominal H100 SXM figures: 3.35 TB/s, TF32 495 TFLOP/s (÷3 for tf32x3, our fp32
default). ``--quick`` is the CPU setting (small batch, L ≤ 4).

Usage: ``python benchmarks/gaunt.py [--quick] [--out results/gaunt.json] [--plot results/gaunt.png]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mlip.benchmarking import measure, print_table, write_json
from mlip.kernels import gaunt_tp
from mlip.kernels.gaunt import gaunt_tp_reference
from mlip.o3 import grid_for

HERE = Path(__file__).resolve().parent
BANDWIDTH = 3.35e12
PEAK_FP32 = 495e12 / 3  # tf32x3 on the tensor cores


def e3nn_peer(L: int, channels: int):
    """e3nn's channelwise CG product with the Gaunt product's paths, and its input width."""
    from e3nn import o3

    irreps_in = o3.Irreps([(channels, (l, (-1) ** l)) for l in range(L + 1)])
    irreps_out = o3.Irreps([(channels, (l, (-1) ** l)) for l in range(2 * L + 1)])
    instructions = [
        (i1, i2, i3, "uuu", False)
        for i1, (_, ir1) in enumerate(irreps_in)
        for i2, (_, ir2) in enumerate(irreps_in)
        for i3, (_, ir3) in enumerate(irreps_out)
        if ir3 in ir1 * ir2
    ]
    tp = o3.TensorProduct(irreps_in, irreps_in, irreps_out, instructions)
    return tp, irreps_in.dim


def check(device: str) -> None:
    """Every path equals the Gaunt-coefficient definition before anything is timed."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 16, 4, generator=g, dtype=torch.float64).to(device)
    y = torch.randn(8, 16, 4, generator=g, dtype=torch.float64).to(device)
    expected = gaunt_tp_reference(x, y, 6)
    paths = [("grid", "torch"), ("fourier", "torch")] + ([("grid", "triton")] if device == "cuda" else [])
    for method, backend in paths:
        error = float((gaunt_tp(x, y, 6, method=method, backend=backend) - expected).abs().max())
        assert error < 1e-10, (method, backend, error)


def time_pair(fn, inputs, repeats: int) -> tuple[float, float]:
    """Median forward and forward+backward seconds of ``fn(*inputs)``."""
    grad_out = torch.randn_like(fn(*inputs))

    def forward_backward():
        torch.autograd.grad(fn(*inputs), inputs, grad_out)

    with torch.no_grad():
        forward = measure(lambda: fn(*inputs), repeats=repeats, warmup=2)
    return forward, measure(forward_backward, repeats=repeats, warmup=2)


def bench_degree(L: int, batch: int, channels: int, device: str, repeats: int) -> dict:
    g = torch.Generator().manual_seed(L)
    shape = (batch, (L + 1) ** 2, channels)
    x = torch.randn(shape, generator=g).to(device).requires_grad_()
    y = torch.randn(shape, generator=g).to(device).requires_grad_()
    grid = grid_for(4 * L)
    row: dict = {"L": L, "batch": batch, "channels": channels, "grid_points": grid.size}
    paths = {"grid_torch": ("grid", "torch"), "fourier": ("fourier", "torch")}
    if device == "cuda":
        paths = {"grid_triton": ("grid", "triton"), **paths}
    for name, (method, backend) in paths.items():
        try:
            row[f"{name}_fwd_ms"], row[f"{name}_fwdbwd_ms"] = (
                1e3 * t
                for t in time_pair(
                    lambda a, b, m=method, k=backend: gaunt_tp(a, b, 2 * L, method=m, backend=k),
                    (x, y),
                    repeats,
                )
            )
        except torch.OutOfMemoryError:
            row[f"{name}_fwd_ms"] = row[f"{name}_fwdbwd_ms"] = None
            torch.cuda.empty_cache()
    if device == "cuda":  # plain TF32 (10-bit mantissa) instead of the default fp32-accurate tf32x3
        torch.backends.cuda.matmul.allow_tf32 = True
        with torch.no_grad():
            row["grid_triton_tf32_fwd_ms"] = 1e3 * measure(lambda: gaunt_tp(x, y, 2 * L), repeats=repeats)
        torch.backends.cuda.matmul.allow_tf32 = False
    tp, dim = e3nn_peer(L, channels)
    tp = tp.to(device)
    xe = torch.randn(batch, dim, generator=g).to(device).requires_grad_()
    ye = torch.randn(batch, dim, generator=g).to(device).requires_grad_()
    try:
        row["e3nn_fwd_ms"], row["e3nn_fwdbwd_ms"] = (
            1e3 * t for t in time_pair(tp, (xe, ye), max(3, repeats // 2))
        )
    except torch.OutOfMemoryError:
        row["e3nn_fwd_ms"] = row["e3nn_fwdbwd_ms"] = None
        torch.cuda.empty_cache()
    del tp, xe, ye
    ours = "grid_triton" if device == "cuda" else "grid_torch"
    for kind in ("fwd", "fwdbwd"):
        mine = row.get(f"{ours}_{kind}_ms")
        for peer in ("e3nn", "fourier"):
            theirs = row.get(f"{peer}_{kind}_ms")
            row[f"{kind}_x_vs_{peer}"] = theirs / mine if mine and theirs else None
    K, Kout = (L + 1) ** 2, (2 * L + 1) ** 2
    flops = batch * channels * (2 * 2 * K * grid.size + 2 * grid.size * Kout)
    nbytes = 4 * batch * channels * (2 * K + Kout)
    if device == "cuda" and row.get("grid_triton_fwd_ms"):
        roofline = max(nbytes / BANDWIDTH, flops / PEAK_FP32)
        row["roofline_fraction"] = roofline / (1e-3 * row["grid_triton_fwd_ms"])
    row["gflop"] = flops / 1e9
    row["mbytes"] = nbytes / 1e6
    return row


def plot(rows: list[dict], path: Path, device: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Ls = [r["L"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label in [
        ("grid_triton", "grid (Triton, fused)"),
        ("grid_torch", "grid (torch)"),
        ("fourier", "Fourier (torch FFT)"),
        ("e3nn", "e3nn CG (uuu)"),
    ]:
        times = [r.get(f"{key}_fwd_ms") for r in rows]
        if any(times):
            left.plot(Ls, times, "o-", label=label)
    left.set(yscale="log", xlabel="L (inputs 0..L, output 0..2L)", ylabel="forward time (ms)")
    left.set_title(f"Gaunt product, batch {rows[0]['batch']} x {rows[0]['channels']} ch ({device})")
    left.legend()
    for kind, style in (("fwd", "o-"), ("fwdbwd", "s--")):
        for peer in ("e3nn", "fourier"):
            ratios = [r.get(f"{kind}_x_vs_{peer}") for r in rows]
            right.plot(Ls, [v if v else float("nan") for v in ratios], style, label=f"{kind}: {peer} / ours")
    right.axhline(1.0, color="k", lw=0.8)
    right.axhline(10.0, color="gray", lw=0.8, ls=":")
    right.set(yscale="log", xlabel="L", ylabel="speed-up of our grid product")
    right.set_title("crossover: above 1 = ours faster")
    right.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU size: batch 200, 16 channels, L <= 4")
    parser.add_argument("--lmax", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--channels", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    quick = args.quick or device == "cpu"
    lmax = args.lmax or (4 if quick else 8)
    batch = args.batch or (200 if quick else 10_000)
    channels = args.channels or (16 if quick else 128)
    tag = "gpu" if device == "cuda" else "cpu"
    out = args.out or HERE / "results" / f"gaunt_{tag}.json"
    check(device)
    rows = []
    for L in range(1, lmax + 1):
        rows.append(bench_degree(L, batch, channels, device, args.repeats))
        print(rows[-1], flush=True)
    print_table(
        rows,
        [
            "L",
            "grid_triton_fwd_ms",
            "grid_triton_tf32_fwd_ms",
            "grid_torch_fwd_ms",
            "fourier_fwd_ms",
            "e3nn_fwd_ms",
            "fwd_x_vs_e3nn",
            "fwd_x_vs_fourier",
            "fwdbwd_x_vs_e3nn",
            "fwdbwd_x_vs_fourier",
            "roofline_fraction",
        ],
    )
    write_json(out, "gaunt", rows, device=device, dtype="float32")
    plot(rows, args.plot or out.with_suffix(".png"), device)


if __name__ == "__main__":
    main()
