"""Registers, spills and compile time of our generated Triton TP kernels, on a machine without a GPU.

Triton compiles for a named GPU target without a driver (its bundled ``ptxas`` makes the cubin), and
``cuobjdump --dump-resource-usage`` reads registers per thread and stack (spill) bytes from it. Spills and
register counts decide occupancy, so this is how the block-size candidates of
:func:`mlip.kernels.tensor_product.triton._tuning.block_configs` and the section size ``MAX_LIVE`` were chosen
without a GPU; timings still need one (``tp.py``). Kernels: those one force-training step of a
convolution compiles: ``o`` (forward), ``xyw`` (fused backward), ``xyw2`` (fused double backward, two
forms per slot) and ``o3`` (double backward's output slot, three forms); ``--kernels x y w`` adds the
single-slot kernels (plain tensor products, third order). Compile times are this machine's (the lent GPU
machines compile about twice as fast); results can differ between Triton versions.

    python benchmarks/kernel_resources.py --configs mace-large mace-medium --dtypes fp32 fp64 \
        --blocks 8,32,4 8,32,8 --out benchmarks/results/kernel_resources.json
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from mlip.benchmarking import print_table, write_json
from mlip.kernels.tensor_product.configs import CHANNELWISE, make_tp
from mlip.kernels.tensor_product.triton import _codegen, _launch, _tuning

INDEX_POINTERS = ("SRC", "DST", "ROWPTR", "PERM")


def sources(desc, kernels: list[str]) -> dict[str, str]:
    """Source (untuned) of each named kernel, with the form structures the autograd functions build."""
    x, y, w, o, gx, gy, gw = (torch.empty(0, 0) for _ in range(7))  # placeholders: identity only
    single = {"x": {"y": y, "w": w, "o": o}, "y": {"x": x, "w": w, "o": o}, "w": {"x": x, "y": y, "o": o}}
    double = {
        "x": [{"y": gy, "w": w, "o": o}, {"y": y, "w": gw, "o": o}],
        "y": [{"x": gx, "w": w, "o": o}, {"x": x, "w": gw, "o": o}],
        "w": [{"x": gx, "y": y, "o": o}, {"x": x, "y": gy, "o": o}],
    }
    three = [{"x": gx, "y": y, "w": w}, {"x": x, "y": gy, "w": w}, {"x": x, "y": y, "w": gw}]
    fused_chunks = _tuning.fused_chunks(desc)

    def one_slot(role: str, forms: list[dict]) -> str:
        structure = _launch.number_operands({role: forms})[0][role]
        chunks = tuple(_tuning.path_chunks(desc, role))
        return _codegen.kernel_source(desc, role, structure, chunks, True, False)

    def fused(forms: dict[str, list[dict]]) -> str:
        return _codegen.fused_grad_source(desc, _launch.number_operands(forms)[0], fused_chunks, False)

    build = {
        "o": lambda: one_slot("o", [{"x": x, "y": y, "w": w}]),
        "xyw": lambda: fused({r: [f] for r, f in single.items()}),
        "xyw2": lambda: fused(double),
        "o3": lambda: one_slot("o", three),
        **{r: (lambda r=r: one_slot(r, [single[r]])) for r in "xyw"},
    }
    return {name: build[name]() for name in kernels}


def load_jit(source: str, folder: Path, name: str):
    path = folder / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"resources_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.kernel.fn  # the @triton.jit function under the autotuner


def resources(fn, dtype: str, block: tuple[int, int, int], arch: int) -> dict:
    """Compile ``fn`` for ``sm_{arch}`` and read its resource usage from the cubin."""
    import triton
    from triton.backends.compiler import GPUTarget

    be, bu, warps = block
    signature = {}
    for arg in fn.arg_names:
        if arg in ("BE", "BU"):
            signature[arg] = "constexpr"
        elif arg[0].isupper():
            signature[arg] = "*i64" if arg in INDEX_POINTERS else f"*{dtype}"
        else:
            signature[arg] = "i64"
    started = time.perf_counter()
    source = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs={"BE": be, "BU": bu})
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})
    seconds = time.perf_counter() - started
    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        usage = subprocess.run(
            [str(cuobjdump), "--dump-resource-usage", cubin.name], capture_output=True, text=True, check=True
        ).stdout
    lines = usage.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Function kernel:")
    line = next(line for line in lines[start:] if "REG:" in line)  # the kernel's, not a callee's
    fields = dict(word.split(":", 1) for word in line.split() if ":" in word)
    return {"registers": int(fields["REG"]), "spill_bytes": int(fields["STACK"]), "compile_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="*", default=["mace-large", "mace-medium"])
    parser.add_argument("--dtypes", nargs="*", default=["fp32", "fp64"])
    parser.add_argument("--kernels", nargs="*", default=["o", "xyw", "xyw2", "o3"])
    parser.add_argument("--blocks", nargs="*", default=None, help="BE,BU,warps; default: the tuner's")
    parser.add_argument("--arch", type=int, default=90, help="compute capability (90: H100/H200)")
    parser.add_argument("--out", default=None, help="JSON file")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRITON_CACHE_DIR"] = tmp  # compile every kernel afresh, so compile_s is honest
        for name in args.configs:
            if name not in CHANNELWISE:
                raise SystemExit(f"{name}: the Triton kernels are channelwise (uvu) only")
            desc = make_tp(name, "triton").descriptor
            for kernel, source in sources(desc, args.kernels).items():
                fn = load_jit(source, Path(tmp), f"{name.replace('-', '_')}_{kernel}")
                if args.blocks:
                    blocks = [tuple(int(v) for v in b.split(",")) for b in args.blocks]
                elif kernel.startswith("xyw"):
                    bu = _tuning.fused_tile(desc)
                    blocks = [(be, bu, warps) for be, warps in _tuning.fused_block_configs(True)]
                else:
                    blocks = _tuning.block_configs(desc, True)
                for block in blocks:
                    for dtype in args.dtypes:
                        row = {"config": name, "kernel": kernel, "dtype": dtype, "BE": block[0],
                               "BU": block[1], "warps": block[2], "lines": source.count("\n")}  # fmt: skip
                        row.update(resources(fn, dtype, block, args.arch))
                        rows.append(row)
                        print(
                            ", ".join(
                                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                            )
                        )
    print()
    print_table(rows)
    if args.out:
        write_json(args.out, "kernel_resources", rows, f"cpu (compiled for sm_{args.arch})")


if __name__ == "__main__":
    main()
