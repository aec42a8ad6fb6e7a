"""Should the fast torch convolution be an opaque custom op on the CPU? Measured, not assumed.

The fast torch path (``mlip.kernels.tp_conv`` on the CPU) is plain ATen ops, which ``torch.compile`` /
``torch.export`` + AOTInductor trace and fuse with the ops around them. This script times one
energy+forces-shaped step (convolution forward, then the gradient with respect to node features, edge
harmonics and edge weights) on the CPU three ways in one process: eager, compiled with the path as
plain ATen, and compiled with the path hidden from the compiler (the same eager code run between
compiled regions: a stand-in for an opaque ``torch.library`` custom op, whose body would also run
eagerly). Ratios are printed against the compiled ATen step.

    python benchmarks/custom_op_cpu.py --config nequip-aspirin --nodes 21 --edges 400 \
        --out benchmarks/results/custom_op_cpu.json
"""

from __future__ import annotations

import argparse
import time

import torch

from mlip.benchmarking import print_table, write_json
from mlip.kernels.tensor_product.configs import CHANNELWISE, make_tp
from mlip.kernels.tp_conv.torch_fast import tp_conv_fast


def opaque_convolution(desc):  # noqa: ANN001, ANN201
    """``tp_conv_fast`` of ``desc``, hidden from the compiler: it runs eagerly (forward and its autograd
    backward) between compiled regions, as the body of an opaque op would."""
    return torch.compiler.disable(lambda *a: tp_conv_fast(desc, *a, a[0].shape[0]))


def make_step(conv):  # noqa: ANN001, ANN201
    def step(x, sh, w, src, dst):  # noqa: ANN001, ANN202
        x, sh, w = (t.requires_grad_() for t in (x.detach(), sh.detach(), w.detach()))
        out = conv(torch.tanh(x), sh * 1.5, torch.nn.functional.silu(w), src, dst)
        energy = (out * out).sum()
        return (energy, *torch.autograd.grad(energy, (x, sh, w)))

    return step


def timed(fn, args, repeats: int) -> float:  # noqa: ANN001
    for _ in range(3):
        fn(*args)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="nequip-aspirin", choices=sorted(CHANNELWISE))
    parser.add_argument("--nodes", type=int, default=21)
    parser.add_argument("--edges", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/results/custom_op_cpu.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    desc = make_tp(args.config, "torch").descriptor
    x = torch.randn(args.nodes, desc.irreps_in1.dim)
    sh = torch.randn(args.edges, desc.irreps_in2.dim)
    w = torch.randn(args.edges, desc.weight_numel)
    src, dst = torch.randint(0, args.nodes, (2, args.edges))
    inputs = (x, sh, w, src, dst)
    aten = make_step(lambda *a: tp_conv_fast(desc, *a, a[0].shape[0]))
    opaque = make_step(opaque_convolution(desc))
    steps = {
        "eager": aten,
        "compiled ATen": torch.compile(aten),
        "compiled, conv opaque": torch.compile(opaque),
    }
    reference = aten(*inputs)
    rows = []
    for name, fn in steps.items():
        start = time.perf_counter()
        got = fn(*inputs)
        first = time.perf_counter() - start
        for a, b in zip(got, reference, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        rows.append({"step": name, "first_call_s": first, "best_ms": 1e3 * timed(fn, inputs, args.repeats)})
    base = next(r["best_ms"] for r in rows if r["step"] == "compiled ATen")
    for row in rows:
        row["vs_compiled_aten"] = row["best_ms"] / base
    threads = torch.get_num_threads()
    print(f"{args.config}, {args.nodes} nodes, {args.edges} edges, float32, CPU, {threads} threads")
    print_table(rows)
    write_json(args.out, "custom_op_cpu", rows, config=args.config, nodes=args.nodes, edges=args.edges)


if __name__ == "__main__":
    main()
