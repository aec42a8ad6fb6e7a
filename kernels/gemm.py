"""Dense float32 matrix products on the CPU through oneDNN where it beats the BLAS (issue 23).

torch's CPU ``mm`` calls MKL, whose float32 GEMM takes its AVX2 code on AMD CPUs even where they have
AVX-512; oneDNN (bundled with torch, ``torch.ops.mkldnn._linear_pointwise``) dispatches on the ISA and
runs the same product in its AVX-512 code (``benchmarks/notes/gemm.md``): the same float32 arithmetic
(no reduced-precision mode), with a fixed cost of some 15 us per call.

:func:`matmul` is ``a @ b`` (or ``a @ bᵀ``) with the operands' trailing dimensions flattened. It
takes oneDNN for float32 CPU operands holding at least ``MIN_FLOPS`` when :func:`onednn_faster` holds
(measured once per process, or ``MLIP_CPU_GEMM``), and ``torch.mm`` otherwise: other dtypes (oneDNN has
no float64 GEMM on CPUs), and traced calls, unless the caller chooses oneDNN itself. The fused eager
kernels do, inside the code they compile in-process: there it is the custom op ``mlip::cpu_mm`` (with a
fake kernel), which Inductor calls as an extern kernel. Exported packages never hold it (the op lives
in Python). Autograd of any order: the backward products are :func:`matmul` again.
"""

from __future__ import annotations

import functools
import math
import os
import time

import torch

from mlip.kernels import inductor

ENV = "MLIP_CPU_GEMM"  # "onednn", "blas", unset: measured once per process
MIN_FLOPS = 1 << 22  # 2 M K N below this: torch.mm (oneDNN's fixed cost per call is larger)
CALIBRATION = (4096, 64, 128)  # M, K, N of the product timed by onednn_faster
MIN_SPEEDUP = 1.2  # oneDNN must be this much faster there to be chosen


def _onednn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a [M, K] @ b [K, N]`` by oneDNN's inner product (its weight is ``b`` transposed, a view)."""
    return torch.ops.mkldnn._linear_pointwise(a, b.t(), None, "none", [None], "")


def _operands(a: torch.Tensor, b: torch.Tensor, transpose_b: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``a`` as ``[M, K]`` and ``b`` as ``[K, N]`` (:func:`matmul`'s flattening; a view where it can be)."""
    a2, b2 = a.flatten(1), b.flatten(1)
    return a2, (b2.t() if transpose_b else b2)


@torch.library.custom_op("mlip::cpu_mm", mutates_args=())
def cpu_mm(a: torch.Tensor, b: torch.Tensor, transpose_b: bool) -> torch.Tensor:
    """:func:`matmul`'s product (float32, CPU) by oneDNN: ``[M, N]``, contiguous. The operands come whole
    and are flattened here, so that code compiled around the op writes them in their own shapes (given
    as flattened views, Inductor merged their dimensions into loops it no longer vectorized)."""
    return _onednn(*_operands(a, b, transpose_b))


@cpu_mm.register_fake
def _(a: torch.Tensor, b: torch.Tensor, transpose_b: bool) -> torch.Tensor:
    return a.new_empty(a.shape[0], b.shape[0] if transpose_b else math.prod(b.shape[1:]))


def _cpu_mm_backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
    a, b = ctx.saved_tensors
    a2, b2 = _operands(a, b, ctx.transpose_b)
    grad_a = matmul(grad, b2.t()).view(a.shape) if ctx.needs_input_grad[0] else None
    grad_b = None
    if ctx.needs_input_grad[1]:
        grad_b = (matmul(grad.t(), a2) if ctx.transpose_b else matmul(a2.t(), grad)).view(b.shape)
    return grad_a, grad_b, None


def _cpu_mm_setup(ctx, inputs: tuple, output: torch.Tensor) -> None:
    ctx.save_for_backward(inputs[0], inputs[1])
    ctx.transpose_b = inputs[2]


cpu_mm.register_autograd(_cpu_mm_backward, setup_context=_cpu_mm_setup)


def _best_seconds(fns: list, rounds: int = 7) -> list[float]:
    """The best time of each function over ``rounds`` interleaved calls (after one warm-up call each):
    a neighbour's burst on a shared machine slows one round, not the minimum."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


@functools.cache
def _measured(threads: int) -> bool:
    """Whether oneDNN ran :data:`CALIBRATION` at least :data:`MIN_SPEEDUP` times faster than ``torch.mm``
    (:func:`_best_seconds`, on ``threads`` torch threads; about 10 ms)."""
    m, k, n = CALIBRATION
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
    try:
        _onednn(a, b)
    except RuntimeError:  # a torch build without oneDNN's inner product
        return False
    blas, onednn = _best_seconds([lambda: torch.mm(a, b), lambda: _onednn(a, b)])
    return blas >= MIN_SPEEDUP * onednn


def onednn_faster() -> bool:
    """``MLIP_CPU_GEMM``: ``onednn`` yes, ``blas`` no; unset: measured once per process and thread count
    (``False`` without oneDNN). Call it eagerly (it times products), outside traced code."""
    value = os.environ.get(ENV, "")
    if value in ("onednn", "blas"):
        return value == "onednn" and torch.backends.mkldnn.is_available()
    return torch.backends.mkldnn.is_available() and _measured(torch.get_num_threads())


def takes_onednn(a: torch.Tensor, b: torch.Tensor, onednn: bool) -> bool:
    """Whether :func:`matmul` runs ``a @ b`` (2-D, as :func:`matmul` flattens them) on oneDNN: ``onednn``
    (:func:`onednn_faster`, decided by the caller), float32 CPU operands and at least :data:`MIN_FLOPS`."""
    if not onednn or a.dtype != torch.float32 or b.dtype != torch.float32 or a.device.type != "cpu":
        return False
    flops = 2 * a.shape[0] * a.shape[1] * b.shape[1]
    return isinstance(flops, torch.SymInt) or flops >= MIN_FLOPS  # symbolic: a kernel for large batches


def matmul(
    a: torch.Tensor, b: torch.Tensor, onednn: bool | None = None, transpose_b: bool = False
) -> torch.Tensor:
    """``a [M, ...] @ b [K, ...]`` with the trailing dimensions flattened (``[M, K] @ [K, N]``), or with
    ``transpose_b`` ``a @ bᵀ`` for ``b [N, ...]``: ``[M, N]``, on oneDNN where :func:`takes_onednn`.
    ``onednn``: the caller's choice (the fused kernels pass theirs into the code they compile); ``None``:
    eager calls on plain CPU tensors ask :func:`onednn_faster`, traced ones (export, ``torch.compile``,
    ``make_fx``) run ``torch.mm``, so that a traced graph holds ATen ops only."""
    a2, b2 = _operands(a, b, transpose_b)
    if not takes_onednn(a2, b2, True if onednn is None else onednn):  # the cheap tests first
        return a2 @ b2
    if onednn is None and not (inductor.plain(a, b) and onednn_faster()):
        return a2 @ b2
    return cpu_mm(a, b, transpose_b)
