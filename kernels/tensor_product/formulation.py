"""Per-shape choice among equivalent formulations of one fast torch kernel (issue 23).

Every formulation of a *family* computes the same function (tested against the reference); which one is
fastest depends on the descriptor's shape, the dtype and the CPU. :func:`choose` picks one per
``(family, descriptor, dtype, device, weights shared or not, threads)`` and keeps it for the process:

1. ``MLIP_TP_FORMULATION=name`` forces a formulation of that name wherever it applies (benchmarks' A/B).
2. On the CPU, in eager mode, with plain tensors, the first call *tunes*: it times every applicable
   formulation on random inputs of the call's shape (batch clamped to ``TUNE_BATCH``), three interleaved
   rounds of ``CALLS_PER_ROUND`` consecutive calls, best of each: forward + backward when the call
   records a graph (grad mode on and an input that requires grad), also the double backward when the
   weights require grad (``train``: a force-trained step differentiates its backward again), else the
   forward alone (inference takes the fastest forward, which can be another formulation), and stores
   the winner in a JSON file keyed by CPU model, torch version, threads, GEMM library, allocator mode
   (:mod:`mlip.allocator`), family, dtype, weights, pass and descriptor (:func:`cache_path`), so a
   later process on the same CPU model reads it instead (the fastest of this call's candidates, so an
   entry that also timed a formulation not offered here, e.g. a compiled one below its size threshold,
   still answers; one that lacks a candidate, e.g. timed before a formulation was added, is tuned
   again).
   ``MLIP_TP_TUNE=0`` turns tuning off (the test suite does, for reproducible choices).
3. Otherwise (tuning off, CUDA, or inside ``torch.compile`` / ``make_fx`` / ``torch.export`` traces,
   where nothing may be timed) the cost model decides: each formulation estimates its own time from the
   primitives below (:func:`gemm`, :func:`bmm`, :func:`elementwise`), deterministic for a given shape.

The cache file is never required: a missing, unreadable or corrupt file means tune again (or use the
cost model); a file that cannot be written is skipped. The choice changes speed only, never results
beyond rounding. A family is a mapping ``name -> Formulation``; new variants plug in by adding an entry.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from mlip import allocator
from mlip.kernels.gemm import onednn_faster
from mlip.kernels.tensor_product.descriptor import TPDescriptor, descriptor_key

FORCE_ENV = "MLIP_TP_FORMULATION"
TUNE_ENV = "MLIP_TP_TUNE"
CACHE_ENV = "MLIP_TP_TUNE_CACHE"
TUNE_BATCH = (256, 2048)
CALLS_PER_ROUND = 4  # consecutive timed calls of a candidate per round (the best one counts)
WARMUP_CALLS = 2  # untimed calls of each candidate first (a compiled one settles over its first calls)
TRACE_BATCH = 1024
_CHOSEN: dict[tuple, str] = {}  # tuned (or cached) choices of this process
_MODELLED: dict[tuple, str] = {}  # cost-model choices, kept apart so a later eager call may still tune


@dataclass(frozen=True)
class Problem:
    """What a choice depends on besides the descriptor."""

    batch: int
    dtype: torch.dtype
    device: str
    shared: bool | None  # None: no weights
    threads: int
    grad: bool = True  # the call records a graph: tune on forward + backward, else on the forward
    # the weights require grad too: a training step, whose force loss differentiates the backward again,
    # so forward + backward + the backward of the gradients is timed
    train: bool = False

    @property
    def kind(self) -> str:
        """The pass the choice is tuned on (and cached under): ``fwd``, ``fwd+bwd`` or ``train``."""
        return "train" if self.train else "fwd+bwd" if self.grad else "fwd"

    @property
    def item(self) -> int:
        return 8 if self.dtype == torch.float64 else 4


@dataclass(frozen=True)
class Formulation:
    """``run(desc, x, y, weight)`` (the kernel's contract), ``supports(desc)``, and ``cost(desc, problem)``:
    the estimated seconds of one forward (only the ranking between formulations matters). ``offered(desc,
    x, y, weight)``, when given, also decides per call whether it is a candidate (a compiled formulation:
    eager calls of some size only)."""

    name: str
    run: Callable[..., torch.Tensor]
    supports: Callable[[TPDescriptor], bool]
    cost: Callable[[TPDescriptor, Problem], float]
    offered: Callable[..., bool] | None = None


# ------------------------------------------------------------------------------------ cost model
# Rough single-core figures of a current x86 server core (seconds, FLOP/s, bytes/s); only ratios matter.
OP_S = 4e-6  # dispatch and allocation of one ATen op
GEMM_FLOPS = {4: 8e10, 8: 4e10}
BMM_ENTRY_S = 3e-8  # per matrix of a batched GEMM
BMM_EFFICIENCY = 0.3  # of the GEMM rate, for the small matrices of per-sample products
NAIVE_MAC_S = 2e-9  # ATen's scalar batched kernel (product size below 400)
BYTES_S = 2e10


def gemm(m: int, n: int, k: int, item: int) -> float:
    """``[m, k] @ [k, n]``."""
    return OP_S + 2 * m * n * k / GEMM_FLOPS[item]


def bmm(batch: int, m: int, n: int, k: int, item: int) -> float:
    """``batch`` products ``[m, k] @ [k, n]``."""
    if m * n * k < 400:
        return OP_S + batch * m * n * k * NAIVE_MAC_S
    return OP_S + batch * BMM_ENTRY_S + 2 * batch * m * n * k / (GEMM_FLOPS[item] * BMM_EFFICIENCY)


def elementwise(numel: int, item: int, operands: int = 3) -> float:
    """One elementwise op (or copy) touching ``operands`` tensors of ``numel`` elements."""
    return OP_S + operands * numel * item / BYTES_S


# ------------------------------------------------------------------------------------ the choice
def problem_of(x: torch.Tensor, weight: torch.Tensor | None, y: torch.Tensor | None = None) -> Problem:
    """The problem of a call (``y``, the second operand, only for whether it requires grad); a symbolic
    batch (a trace with dynamic shapes) counts as ``TRACE_BATCH`` rows, without reading its value
    (``int()`` would specialize the traced graph to one size)."""
    shared = None if weight is None else weight.dim() == 1
    batch = TRACE_BATCH if isinstance(x.shape[0], torch.SymInt) else int(x.shape[0])
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, y, weight))
    train = grad and weight is not None and weight.requires_grad
    return Problem(batch, x.dtype, x.device.type, shared, torch.get_num_threads(), grad, train)


def _tunable(x: torch.Tensor, weight: torch.Tensor | None) -> bool:
    """Eager CPU call on plain tensors with a concrete batch, tuning not turned off."""
    if os.environ.get(TUNE_ENV, "1") == "0" or x.device.type != "cpu":
        return False
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    tensors = [x] if weight is None else [x, weight]
    return all(type(t) is torch.Tensor for t in tensors) and not isinstance(x.shape[0], torch.SymInt)


def choose(
    family: str,
    formulations: Mapping[str, Formulation],
    desc: TPDescriptor,
    x: torch.Tensor,
    weight: torch.Tensor | None,
    y: torch.Tensor | None = None,
) -> Formulation:
    """The formulation of ``family`` for ``desc`` on inputs like ``x``, ``weight`` and ``y`` (see the
    module)."""
    candidates = {
        n: f
        for n, f in formulations.items()
        if f.supports(desc) and (f.offered is None or f.offered(desc, x, y, weight))
    }
    if not candidates:
        raise ValueError(f"no {family} formulation supports this descriptor")
    forced = os.environ.get(FORCE_ENV)
    if forced in candidates:
        return candidates[forced]
    if len(candidates) == 1:
        return next(iter(candidates.values()))
    prob = problem_of(x, weight, y)
    key = (family, desc, prob.dtype, prob.device, prob.shared, prob.threads, prob.kind, tuple(candidates))
    if key in _CHOSEN:
        return candidates[_CHOSEN[key]]
    if _tunable(x, weight):
        _CHOSEN[key] = _tuned(family, candidates, desc, prob)
        return candidates[_CHOSEN[key]]
    if key not in _MODELLED:
        _MODELLED[key] = min(candidates.values(), key=lambda f: f.cost(desc, prob)).name
    return candidates[_MODELLED[key]]


# ------------------------------------------------------------------------------------ the tuner
def cache_path() -> Path:
    """``$MLIP_TP_TUNE_CACHE``, else ``$XDG_CACHE_HOME/mlip/tp_formulations.json`` (``~/.cache`` default)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlip" / "tp_formulations.json"


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux, else ``platform``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cache_key(family: str, desc: TPDescriptor, prob: Problem) -> str:
    weights = {None: "none", True: "shared", False: "per-sample"}[prob.shared]
    blas = "gemm onednn" if onednn_faster() else "gemm blas"  # the float32 products the times had
    malloc = f"malloc {allocator.mode()}"  # freed memory kept or faulted in again: the times differ
    return "|".join(
        [cpu_model(), f"torch {torch.__version__}", f"threads {prob.threads}", blas, malloc, family,
         str(prob.dtype), weights, prob.kind, descriptor_key(desc)]
    )  # fmt: skip


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _tuned(family: str, candidates: Mapping[str, Formulation], desc: TPDescriptor, prob: Problem) -> str:
    """The cached or freshly measured fastest candidate (written to the cache file when possible)."""
    path, key = cache_path(), cache_key(family, desc, prob)
    entry = _read_cache(path).get(key)
    # an entry timed over every candidate (and maybe more: one not offered to this call) answers; one
    # that lacks a candidate (a formulation added since) is tuned again
    timed = entry.get("ms") if isinstance(entry, dict) else None
    if isinstance(timed, dict) and set(candidates) <= set(timed):
        return entry["choice"] if entry.get("choice") in candidates else min(candidates, key=timed.get)
    times = time_candidates(candidates, desc, prob)
    choice = min(times, key=times.get)
    data = _read_cache(path)
    data[key] = {"choice": choice, "ms": {n: round(t * 1e3, 4) for n, t in times.items()}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass
    return choice


def time_candidates(
    candidates: Mapping[str, Formulation], desc: TPDescriptor, prob: Problem, rounds: int = 3
) -> dict[str, float]:
    """Best seconds of the pass ``prob.kind`` (``fwd``; ``fwd+bwd``: gradients of every input; ``train``:
    those with a graph, then the gradients of their squares) per candidate over ``rounds`` rounds of
    ``CALLS_PER_ROUND`` consecutive calls each, rounds interleaved so a busy machine slows every candidate
    alike; random inputs of the problem's shape. Measures CPU time with one thread (waits for a core left
    out), wall time with more."""
    with torch.inference_mode(False):
        return _time_candidates(candidates, desc, prob, rounds)


def _time_candidates(
    candidates: Mapping[str, Formulation], desc: TPDescriptor, prob: Problem, rounds: int
) -> dict[str, float]:
    batch = min(max(prob.batch, TUNE_BATCH[0]), TUNE_BATCH[1])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, desc.irreps_in1.dim, generator=g, dtype=prob.dtype).requires_grad_()
    y = torch.randn(batch, desc.irreps_in2.dim, generator=g, dtype=prob.dtype).requires_grad_()
    weight = None
    if prob.shared is not None:
        shape = (desc.weight_numel,) if prob.shared else (batch, desc.weight_numel)
        weight = torch.randn(*shape, generator=g, dtype=prob.dtype).requires_grad_()
    leaves = [t for t in (x, y, weight) if t is not None]

    # one thread: CPU time, which leaves out the waits for a core on a shared machine; more: wall time
    clock = time.process_time if prob.threads == 1 else time.perf_counter

    def once(f: Formulation) -> float:
        start = clock()
        if prob.train:
            out = f.run(desc, x, y, weight)
            grads = torch.autograd.grad(out.square().sum(), leaves, create_graph=True)
            torch.autograd.grad(sum(g.square().sum() for g in grads), leaves)
        elif prob.grad:
            out = f.run(desc, x, y, weight)
            torch.autograd.grad(out.square().sum(), leaves)
        else:
            with torch.no_grad():
                f.run(desc, x, y, weight)
        return clock() - start

    best = {n: float("inf") for n in candidates}
    with torch.enable_grad():  # the caller may be under no_grad
        for f in candidates.values():
            for _ in range(WARMUP_CALLS):  # coefficient tables, compiles, the allocator's first faults
                once(f)
        for _ in range(rounds):
            for n, f in candidates.items():
                for _ in range(CALLS_PER_ROUND):  # back to back: the later calls run warm, as in a loop
                    best[n] = min(best[n], once(f))
    return best
