"""What the Inductor-compiled CPU kernels of this package share (issue 23): the workaround options every
CPU compile needs, when the fused eager kernels may run, how one is compiled and called, and the fallback
when a compile fails.

Options (:func:`inductor_options`, for the fused kernels, ``EquivariantModel.compile_energies`` and the
AOTInductor packages of :mod:`mlip.compile.package`): with more than one thread, Inductor's C++ turns
scatter-adds (``index_add``) inside loops into atomic vector adds at wrong offsets: wrong results and
writes past the buffer (benchmarks/notes/compile.md). So Inductor's own C++ kernels run on one thread
(``cpp.threads = 1``); the matrix products stay ATen calls and still use every thread. The setting only
concerns generated C++ (CPU) code. The tensor product's fused kernels, which hold no scatter, ask
:func:`compile_kernel` for the call's thread count instead.

The fused eager kernels (the channelwise convolution, :mod:`mlip.kernels.tp_conv.fused`, and the tensor
product formulation :mod:`mlip.kernels.tensor_product.fused`) compile plain torch functions with
:func:`torch.compile` on eager CPU calls only, dynamic in the batch (edges, nodes, samples) so every other
size is a constant of the generated loops. ``MLIP_TP_INDUCTOR`` (:data:`ENV`): ``0`` never, ``1``
whenever a kernel applies, unset (``auto``) when torch runs on few enough threads (measured up to 2;
the convolution's kernels are single-threaded, while the ATen paths use every thread) and the call
holds at least ``MIN_MESSAGES`` elements of work, since the first call of a shape compiles for seconds
per kernel (Inductor caches the C++ on disk, so later processes load it in about a second).
"""

from __future__ import annotations

import logging
import os
import types
from collections.abc import Callable
from typing import Any

import torch

CPU_WORKAROUNDS: dict[str, Any] = {"cpp.threads": 1}

ENV = "MLIP_TP_INDUCTOR"
MIN_MESSAGES = 1 << 16  # coupled product elements per call; fewer: the ATen path (a compile costs seconds)
_log = logging.getLogger(__name__)
_COMPILED = 0  # kernels compiled by this process (names each one's code object)


def inductor_options(mode: str | None = None, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``options`` of ``torch.compile(..., options=)`` for ``mode`` (its Inductor settings, which
    ``torch.compile`` cannot take together with ``options``) with :data:`CPU_WORKAROUNDS`; the caller's
    ``options`` win over both."""
    base = torch._inductor.list_mode_options(mode) if mode is not None else {}
    return {**base, **CPU_WORKAROUNDS, **(options or {})}


def mode() -> str:
    """``"0"``, ``"1"`` or ``"auto"`` (:data:`ENV`)."""
    return os.environ.get(ENV, "auto")


def worth_it(messages: int, minimum: int | None = None, max_threads: int = 1) -> bool:
    """In ``auto`` mode: at most ``max_threads`` torch threads and at least ``minimum`` (default
    ``MIN_MESSAGES``) elements of work (``"1"``: always; ``"0"``: never)."""
    value = mode()
    if value != "auto":
        return value == "1"
    enough = messages >= (MIN_MESSAGES if minimum is None else minimum)
    return torch.get_num_threads() <= max_threads and enough


def plain(*tensors: torch.Tensor | None) -> bool:
    """Eager call on plain CPU tensors with concrete shapes (no trace, no fake or functional tensors)."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    if torch.utils._python_dispatch._get_current_dispatch_mode() is not None:
        return False
    return all(
        t is None or (type(t) is torch.Tensor and t.device.type == "cpu" and
                      not any(isinstance(s, torch.SymInt) for s in t.shape))
        for t in tensors
    )  # fmt: skip


def compile_kernel(base: Callable, what: str, threads: int = 1, **static) -> Callable:
    """``base`` with the keyword arguments ``static`` fixed, compiled. Each kernel gets its own copy of the
    code object: Dynamo keeps compiled graphs per code object, and one shared by every shape would hit its
    recompile limit. Inductor's loops run on ``threads`` threads (``cpp.threads``; one, as
    :data:`CPU_WORKAROUNDS` has it, for any kernel with a scatter-add; the GEMMs are ATen calls on every
    thread). Only the guards on tensors are kept (the
    static arguments never change for one kernel, and checking every guard on them cost about 0.2 ms per
    call). The first compile of a process is logged."""
    global _COMPILED
    if _COMPILED == 0:
        _log.warning(
            "compiling the fused CPU %s kernels (once per shape, seconds each; Inductor caches them on disk "
            "for later runs; %s=0 turns them off)",
            what,
            ENV,
        )
    code = base.__code__.replace(co_name=f"{base.__name__}_{_COMPILED}")
    _COMPILED += 1
    fn = types.FunctionType(code, base.__globals__, code.co_name)
    fn.__kwdefaults__ = {**(base.__kwdefaults__ or {}), **static}
    options = inductor_options(
        options={"guard_filter_fn": torch.compiler.keep_tensor_guards_unsafe, "cpp.threads": threads}
    )
    return torch.compile(fn, fullgraph=True, options=options)


def call_dynamic(kernel: Callable, *tensors, dims: tuple[int | None, ...] | None = None):
    """``kernel(*tensors)`` (items may be lists of tensors or ``None``), detached (the kernels never record
    a graph: guards on ``requires_grad`` would recompile) and dynamic in the batch: dimension ``dims[n]``
    of argument ``n`` (``None``: static; default dimension 0 of all) where it exceeds 1."""
    args = []
    for n, t in enumerate(tensors):
        dim = 0 if dims is None else dims[n]
        items = [None if i is None else i.detach() for i in (t if isinstance(t, list) else [t])]
        for item in items:
            if item is not None and dim is not None and item.dim() > dim and item.shape[dim] > 1:
                torch._dynamo.maybe_mark_dynamic(item, dim)
        args.append(items if isinstance(t, list) else items[0])
    return kernel(*args)


def guarded(failed: set, key, call: Callable, what: str, logger: logging.Logger = _log):
    """``call()``, or ``None`` (logged once, ``key`` added to ``failed``) when it raises for a ``key`` not
    yet in ``failed``: the caller then runs its ATen path, and skips ``key`` from then on."""
    try:
        return call()
    except Exception as error:  # noqa: BLE001 - a compiler that fails: the ATen path, said once
        if key in failed:
            raise
        failed.add(key)
        name = type(error).__name__
        logger.warning("fused CPU %s not compiled (%s: %s); the ATen path runs", what, name, error)
        return None
