"""Dense float32 matrix products on the CPU through oneDNN where it beats the BLAS (issue 23).

torch's CPU ``mm`` calls MKL, whose float32 GEMM takes its AVX2 code on AMD CPUs even where they have
AVX-512; oneDNN (bundled with torch, ``torch.ops.mkldnn._linear_pointwise``) dispatches on the ISA and
runs the same product in its AVX-512 code (``benchmarks/notes/gemm.md``). Same float32 arithmetic (no
reduced-precision mode), a fixed cost of some 15 us per call. :func:`mm` is ``a @ b`` for 2-D float32 CPU
tensors, through oneDNN when :func:`onednn_faster` holds (a one-time measurement per process, or
``MLIP_CPU_GEMM``) and the product holds at least ``MIN_FLOPS``, through ``torch.mm`` otherwise (other
dtypes: oneDNN has no float64 GEMM on CPUs). Inside traced code (``torch.compile``, export) it is the
custom op ``mlip::cpu_mm`` with a fake kernel, which Inductor calls as an extern kernel; it is meant for
the fused eager kernels compiled in-process, not for exported packages (the op lives in Python).
Autograd of any order: the backward products are :func:`mm` again.
"""

from __future__ import annotations

import functools
import os
import time

import torch

ENV = "MLIP_CPU_GEMM"  # "onednn", "blas", unset: measured once per process
MIN_FLOPS = 1 << 22  # 2 M K N below this: torch.mm (oneDNN's fixed cost per call is larger)
CALIBRATION = (4096, 64, 128)  # M, K, N of the product timed by onednn_faster
MIN_SPEEDUP = 1.2  # oneDNN must be this much faster there to be chosen


def _onednn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a [M, K] @ b [K, N]`` by oneDNN's inner product (its weight is ``b`` transposed, a view)."""
    return torch.ops.mkldnn._linear_pointwise(a, b.t(), None, "none", [None], "")


@torch.library.custom_op("mlip::cpu_mm", mutates_args=())
def cpu_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a [M, K] @ b [K, N]`` (float32, CPU) by oneDNN: ``[M, N]``, contiguous."""
    return _onednn(a, b)


@cpu_mm.register_fake
def _(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.new_empty(a.shape[0], b.shape[1])


def _cpu_mm_backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    a, b = ctx.saved_tensors
    grad_a = mm(grad, b.t()) if ctx.needs_input_grad[0] else None
    grad_b = mm(a.t(), grad) if ctx.needs_input_grad[1] else None
    return grad_a, grad_b


def _cpu_mm_setup(ctx, inputs: tuple, output: torch.Tensor) -> None:
    ctx.save_for_backward(*inputs)


cpu_mm.register_autograd(_cpu_mm_backward, setup_context=_cpu_mm_setup)


def _median_seconds(fn, calls: int = 5) -> float:
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[calls // 2]


@functools.cache
def _measured(threads: int) -> bool:
    """Whether oneDNN ran :data:`CALIBRATION` at least :data:`MIN_SPEEDUP` times faster than ``torch.mm``
    (median of 5 calls each, on ``threads`` torch threads; about 10 ms)."""
    m, k, n = CALIBRATION
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
    try:
        onednn = _median_seconds(lambda: _onednn(a, b))
    except RuntimeError:  # a torch build without oneDNN's inner product
        return False
    return _median_seconds(lambda: torch.mm(a, b)) >= MIN_SPEEDUP * onednn


def onednn_faster() -> bool:
    """``MLIP_CPU_GEMM``: ``onednn`` yes, ``blas`` no; unset: measured once per process and thread count
    (``False`` without oneDNN). Call it eagerly (it times products), outside traced code."""
    value = os.environ.get(ENV, "")
    if value in ("onednn", "blas"):
        return value == "onednn" and torch.backends.mkldnn.is_available()
    return torch.backends.mkldnn.is_available() and _measured(torch.get_num_threads())


def takes_onednn(a: torch.Tensor, b: torch.Tensor, onednn: bool) -> bool:
    """Whether :func:`mm` runs ``a @ b`` on oneDNN: ``onednn`` (:func:`onednn_faster`, decided by the
    caller), float32 CPU operands and at least :data:`MIN_FLOPS`."""
    if not onednn or a.dtype != torch.float32 or b.dtype != torch.float32 or a.device.type != "cpu":
        return False
    flops = 2 * a.shape[0] * a.shape[1] * b.shape[1]
    return isinstance(flops, torch.SymInt) or flops >= MIN_FLOPS  # symbolic: a kernel for large batches


def mm(a: torch.Tensor, b: torch.Tensor, onednn: bool | None = None) -> torch.Tensor:
    """``a [M, K] @ b [K, N]``: ``[M, N]``. ``onednn``: the caller's :func:`onednn_faster` (traced code
    must pass it: the default measures); the product runs on oneDNN where :func:`takes_onednn`."""
    if onednn is None:
        onednn = onednn_faster()
    return cpu_mm(a, b) if takes_onednn(a, b, onednn) else a @ b
