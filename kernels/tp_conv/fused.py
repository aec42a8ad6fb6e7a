"""Fused CPU convolution: Inductor-generated C++ for the gather, the per-path contraction, the weights and
the scatter of a channelwise ``tp_conv``, forward and backward (issue 23).

The ATen formulation (:mod:`mlip.kernels.tp_conv.torch_fast`) writes every intermediate to memory: the
gathered node features ``[E, D1, U]``, the messages ``[E, K, U]``, their weighted copy, and in the backward
the gathered output gradient and its products, each one ATen op with its own pass over memory; its
per-sample ``bmm`` has inner dimension ``D1`` = 1-16, where no BLAS gets near peak. Here the convolution is
written per path, in the channels-last layout of the fast path (``U`` innermost):

    A = sh @ G                                   [E, Σ_p d_p * d1_p]  (one GEMM, every path's block)
    t_p[e, m, u] = Σ_i A_p[e, m, i] x_b(p)[src[e], i, u]              (only the path's own in1 block)
    out_o(p)[dst[e], m, u] += w[e, p, u] t_p[e, m, u]

and :func:`torch.compile` (Inductor, C++) turns each path's gather, contraction over ``i`` (unrolled),
weight multiply and scatter-add into one loop nest vectorized over ``u``, without the intermediates. The
backward is written the same way by hand (:func:`_backward`): per path the weight gradient
``Σ_m go[dst] t``, the coupling gradient ``Σ_u go[dst] w x[src]`` (then one GEMM against ``G^T``) and the
node gradient ``Σ_m A w go[dst]`` scattered over ``src``.

:class:`_Convolution` and :class:`_ConvolutionBackward` are custom autograd functions: ``T(x, sh, w)`` is
linear in ``x`` and ``sh`` and affine in ``w``, so the gradient of its adjoints is again ``T`` and its
adjoints with one operand replaced (see :class:`_ConvolutionBackward`): derivatives of every order (force
training's double backward included) run the compiled kernels, one compiled backward per set of wanted
gradients.

When it runs (:func:`applies`): channelwise descriptors with per-sample or no weights, eager CPU calls on
plain tensors (never under ``torch.compile``, ``make_fx`` or ``torch.export``: their traces see the ATen
path and fuse it themselves; the traced chunk loop of the compiled step runs the same per-path
formulation, :class:`TracedBlocks`, which AOTInductor compiles inside its package), and
``MLIP_TP_INDUCTOR``: ``0`` never, ``1`` whenever it applies, unset (``auto``) when torch runs on at most
``MAX_THREADS`` threads (the kernels are single-threaded and the ATen path uses every thread; at one
thread the kernels are several times faster than the ATen path, so a second thread does not make up for
it, while on a many-core machine the ATen path may win) and the messages hold at least ``MIN_MESSAGES``
elements, since the first call of a descriptor and dtype compiles for seconds per kernel (shapes dynamic
in ``E`` and ``N``; Inductor caches the C++ on disk, so later processes load it in about a second). The
first compile of a process says so in one logged line. A failed first compile is logged once and that
descriptor and dtype run the ATen path from then on.
"""

from __future__ import annotations

import functools
import logging
import os
import types
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from mlip.kernels.inductor import inductor_options
from mlip.kernels.tensor_product.descriptor import TPDescriptor, wigner_block
from mlip.o3 import cached_constant

ENV = "MLIP_TP_INDUCTOR"
MIN_MESSAGES = 1 << 16  # E * Σ_p d_p * U; below it the ATen path (a compile costs seconds)
# torch threads at most for ``auto``: more were never measured (benchmarks/notes/tp_cpu_profile.md)
MAX_THREADS = 2
# the inference mode's chunks at most: each chunk's kernels write node-sized outputs that are then summed
# (a cost of atoms x chunks); the fused kernels keep no per-edge messages, so only the chunk's edge
# weights grow with its size
MAX_CHUNKS = 16
_log = logging.getLogger(__name__)
_FAILED: set[tuple] = set()


@dataclass(frozen=True)
class Path:
    """One instruction of a channelwise descriptor: ``in1`` block, output block, their dimensions, the
    multiplicity, the first weight column (``-1``: unweighted) and the first column of ``A = sh @ G``."""

    i_in1: int
    i_out: int
    d1: int
    dim: int
    mul: int
    weight: int
    column: int


@dataclass(frozen=True)
class Plan:
    """A channelwise descriptor's paths, and the ``in1`` / output blocks they read and write (in order)."""

    paths: tuple[Path, ...]
    in_blocks: tuple[int, ...]
    out_blocks: tuple[int, ...]
    weighted_only: bool = False  # unweighted paths left out: the derivative in ``w`` (``T`` is affine in it)

    def runs(self, p: Path) -> bool:
        return p.weight >= 0 or not self.weighted_only


@functools.cache
def plan(desc: TPDescriptor, weighted_only: bool = False) -> Plan:
    """The paths of ``desc``; ``weighted_only``: the weighted ones run, the others count as zero (the
    same plan when every path is weighted)."""
    if weighted_only and all(ins.has_weight for ins in desc.instructions):
        return plan(desc)
    paths, column = [], 0
    for ins in desc.instructions:
        mul, ir1 = desc.irreps_in1[ins.i_in1]
        dim = desc.irreps_out[ins.i_out].ir.dim
        weight = ins.weight_offset if ins.has_weight else -1
        paths.append(Path(ins.i_in1, ins.i_out, ir1.dim, dim, mul, weight, column))
        column += dim * ir1.dim
    return Plan(
        tuple(paths),
        tuple(sorted({p.i_in1 for p in paths})),
        tuple(sorted({p.i_out for p in paths})),
        weighted_only,
    )


def coupling(desc: TPDescriptor) -> torch.Tensor:
    """``G [dim2, Σ_p d_p * d1_p]`` (float64): path ``p``'s block holds ``coef * wigner_3j`` as
    ``G[j, column + m * d1 + i] = cg[i, j, m]``."""
    s2 = desc.irreps_in2.slices()
    blocks = []
    for ins, p in zip(desc.instructions, plan(desc).paths, strict=True):
        cg = wigner_block(ins, desc, torch.float64, torch.device("cpu"))  # [d1, d2, d]
        block = torch.zeros(desc.irreps_in2.dim, p.dim, p.d1, dtype=torch.float64)
        block[s2[ins.i_in2]] = cg.permute(1, 2, 0)
        blocks.append(block.reshape(desc.irreps_in2.dim, -1))
    return torch.cat(blocks, dim=1)


def to_blocks(t: torch.Tensor, irreps, blocks: tuple[int, ...]) -> list[torch.Tensor]:
    """Blocks of an e3nn-layout ``[B, irreps.dim]`` tensor as contiguous channels-last ``[B, d, U]`` (one
    ATen copy each, outside the compiled code: Inductor would inline them as strided scalar loads)."""
    slices = irreps.slices()
    return [
        t[:, slices[b]].view(t.shape[0], irreps[b].mul, irreps[b].ir.dim).transpose(1, 2).contiguous()
        for b in blocks
    ]


def from_blocks(
    parts: list[torch.Tensor], irreps, blocks: tuple[int, ...], like: torch.Tensor
) -> torch.Tensor:
    """Channels-last blocks ``[B, d, U]`` -> e3nn layout ``[B, irreps.dim]`` (zeros where missing)."""
    rows, given = like.shape[0], dict(zip(blocks, parts, strict=True))
    return torch.cat(
        [
            given[b].transpose(1, 2).reshape(rows, mi.dim) if b in given else like.new_zeros(rows, mi.dim)
            for b, mi in enumerate(irreps)
        ],
        dim=1,
    )


def _contract(coef: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """``[E, d, d1] x [E, d1, U] -> [E, d, U]`` unrolled over ``d1`` (fused by Inductor, no bmm)."""
    return sum(coef[:, :, i, None] * xs[:, None, i, :] for i in range(coef.shape[2]))


def _coef(a: torch.Tensor, p: Path) -> torch.Tensor:
    """Path ``p``'s coupling per edge ``[E, d, d1]`` from ``A = sh @ G``."""
    return a[:, p.column : p.column + p.dim * p.d1].view(-1, p.dim, p.d1)


def _message(p: Path, a: torch.Tensor, xs: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    """Path ``p``'s weighted messages ``[E, d, U]`` from its gathered ``in1`` block ``xs [E, d1, U]``."""
    t = _contract(_coef(a, p), xs)
    return t * w[:, None, p.weight : p.weight + p.mul] if p.weight >= 0 else t


def _forward(xcs, sh, w, src, dst, g, *, plan: Plan):
    """Per output block ``[N, d, U]`` (see the module docstring) from the ``in1`` blocks ``xcs``
    (:func:`to_blocks`); traced by Dynamo, never run eagerly."""
    a = sh @ g
    xc = dict(zip(plan.in_blocks, xcs, strict=True))
    num_nodes = xcs[0].shape[0]
    sums: dict[int, torch.Tensor] = {}
    for p in filter(plan.runs, plan.paths):
        t = _message(p, a, xc[p.i_in1][src], w)
        total = sums.get(p.i_out)
        total = t.new_zeros(num_nodes, p.dim, p.mul) if total is None else total
        sums[p.i_out] = total.index_add(0, dst, t)
    return [_or_zeros(sums, o, num_nodes, xcs[0], plan, "i_out") for o in plan.out_blocks]


def _or_zeros(values: dict, block: int, rows: int, like: torch.Tensor, plan: Plan, side: str) -> torch.Tensor:
    """``values[block]``, or zeros ``[rows, d, U]`` for a block no running path touches."""
    if block in values:
        return values[block]
    p = next(p for p in plan.paths if getattr(p, side) == block)
    return like.new_zeros(rows, p.dim if side == "i_out" else p.d1, p.mul)


def _path_grads(p: Path, a, xs, gm, w, want_x: bool, want_sh: bool, want_w: bool):
    """Path ``p``'s per-edge adjoints for its gathered ``in1`` block ``xs [E, d1, U]`` and gathered output
    gradient ``gm [E, d, U]``: ``(grad_w [E, U], grad_a [E, d * d1], grad_xs [E, d1, U])``, ``None`` where
    not wanted (``grad_w`` also for an unweighted path)."""
    coef = _coef(a, p)
    grad_w = None
    if p.weight >= 0:
        if want_w:
            grad_w = (gm * _contract(coef, xs)).sum(1)
        gm = gm * w[:, None, p.weight : p.weight + p.mul]
    grad_a = (gm[:, :, None, :] * xs[:, None, :, :]).sum(-1).reshape(-1, p.dim * p.d1) if want_sh else None
    grad_xs = sum(coef[:, m, :, None] * gm[:, m, None, :] for m in range(p.dim)) if want_x else None
    return grad_w, grad_a, grad_xs


def _weight_columns(grad_w: dict[int, torch.Tensor], w: torch.Tensor) -> torch.Tensor:
    """The weight gradient ``[E, numel]`` from the paths' ``{first column: [E, U]}`` (zeros elsewhere)."""
    columns, col = [], 0
    for start in sorted(grad_w):
        if start > col:
            columns.append(w.new_zeros(w.shape[0], start - col))
        columns.append(grad_w[start])
        col = start + grad_w[start].shape[1]
    if col < w.shape[1]:
        columns.append(w.new_zeros(w.shape[0], w.shape[1] - col))
    return torch.cat(columns, dim=1)


def _backward(xcs, sh, w, src, dst, g, gos, *, plan: Plan, want: tuple[bool, bool, bool]):
    """``(grad_xcs, grad_sh, grad_w)`` of :func:`_forward` for the output block gradients ``gos``; only
    those ``want`` asks for (the others ``None``)."""
    want_x, want_sh, want_w = want[0], want[1], want[2] and w is not None
    a = sh @ g
    xc = dict(zip(plan.in_blocks, xcs, strict=True))
    go = dict(zip(plan.out_blocks, gos, strict=True))
    num_nodes = xcs[0].shape[0]
    grad_xc: dict[int, torch.Tensor] = {}
    grad_a, grad_w = [], {}
    for p in plan.paths:
        if not plan.runs(p):
            grad_a.append(sh.new_zeros(sh.shape[0], p.dim * p.d1))
            continue
        gw, ga, gxs = _path_grads(p, a, xc[p.i_in1][src], go[p.i_out][dst], w, want_x, want_sh, want_w)
        if gw is not None:
            grad_w[p.weight] = gw
        if want_sh:
            grad_a.append(ga)
        if want_x:
            total = grad_xc.get(p.i_in1)
            total = gxs.new_zeros(num_nodes, p.d1, p.mul) if total is None else total
            grad_xc[p.i_in1] = total.index_add(0, src, gxs)
    grad_x = (
        [_or_zeros(grad_xc, b, num_nodes, xcs[0], plan, "i_in1") for b in plan.in_blocks] if want_x else None
    )
    grad_sh = torch.cat(grad_a, dim=1) @ g.t() if want_sh else None
    return grad_x, grad_sh, _weight_columns(grad_w, w) if want_w else None


@functools.cache
def _compiled(plan: Plan, want: tuple[bool, bool, bool] | None):
    """The compiled forward (``want`` None) or backward of ``plan``, one per ``want``. Each gets its own
    copy of the code object: Dynamo keeps compiled graphs per code object, and one shared by every plan
    would hit its recompile limit. Inductor's loops run on one thread (``cpp.threads``; the GEMMs are ATen
    calls on every thread): a scatter on several turns into atomic adds, whose summation order varies,
    and torch 2.13 miscompiles some of those (benchmarks/notes/compile.md)."""
    if _compiled.cache_info().currsize == 0:
        _log.warning(
            "compiling the fused CPU convolution kernels (once per model shape, about a minute; Inductor "
            "caches them on disk for later runs; %s=0 turns them off)",
            ENV,
        )
    base = _forward if want is None else _backward
    code = base.__code__.replace(co_name=f"{base.__name__}_{_compiled.cache_info().currsize}")
    fn = types.FunctionType(code, base.__globals__, code.co_name)
    fn.__kwdefaults__ = {"plan": plan} if want is None else {"plan": plan, "want": want}
    return torch.compile(fn, fullgraph=True, options=inductor_options())


def _run(plan: Plan, want, *tensors):
    """The compiled kernel on ``tensors``, dynamic in the edge and node counts only (every other size is
    the descriptor's: static, so loops over ``d1``, ``d`` and ``U`` are unrolled and vectorized)."""
    args = []
    for t in tensors:  # detached: the kernels never record a graph (guards on requires_grad would recompile)
        items = [None if i is None else i.detach() for i in (t if isinstance(t, list) else [t])]
        for item in items:
            if item is not None and item.shape[0] > 1:
                torch._dynamo.maybe_mark_dynamic(item, 0)
        args.append(items if isinstance(t, list) else items[0])
    return _compiled(plan, want)(*args)


def _plain(*tensors: torch.Tensor | None) -> bool:
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


def applies(desc, node_feats, edge_sh, weight, edge_src) -> bool:
    """Whether :func:`tp_conv_fused` runs this call (see the module docstring)."""
    mode = os.environ.get(ENV, "auto")
    if mode == "0" or not desc.channelwise:
        return False
    if weight is not None and weight.dim() != 2:
        return False
    if (desc, node_feats.dtype) in _FAILED:
        return False
    if edge_src.numel() == 0 or not _plain(node_feats, edge_sh, weight, edge_src):
        return False
    if mode == "1":
        return True
    if torch.get_num_threads() > MAX_THREADS:
        return False
    messages = edge_src.numel() * sum(p.dim * p.mul for p in plan(desc).paths)
    return messages >= MIN_MESSAGES


def tp_conv_fused(
    desc: TPDescriptor,
    node_feats: torch.Tensor,
    edge_sh: torch.Tensor,
    edge_weights: torch.Tensor | None,
    edge_src: torch.Tensor,
    edge_dst: torch.Tensor,
) -> torch.Tensor | None:
    """:func:`~mlip.kernels.tp_conv.torch_fast.tp_conv_fast` (same contract; ``N`` = ``node_feats``' rows)
    on the compiled kernels, or ``None`` when the first compile of ``desc`` and the dtype failed (logged
    once; the caller runs the ATen path)."""
    graph = _graph(desc, edge_src, edge_dst, node_feats)
    return _guarded(
        desc, node_feats, lambda: _Convolution.apply(graph, plan(desc), node_feats, edge_sh, edge_weights)
    )


def tp_conv_fused_chunked(
    desc: TPDescriptor,
    node_feats: torch.Tensor,
    edge_sh: torch.Tensor,
    weight_fn: torch.nn.Module,
    weight_inputs: torch.Tensor,
    edge_src: torch.Tensor,
    edge_dst: torch.Tensor,
    slices: list[slice],
) -> torch.Tensor | None:
    """:func:`~mlip.kernels.tp_conv.torch_fast.tp_conv_chunked` (same contract, edge chunks ``slices``) on
    the compiled kernels, or ``None`` as :func:`tp_conv_fused`: the weights are made per chunk and
    recomputed in the backward (first derivatives only)."""
    graph = _graph(desc, edge_src, edge_dst, node_feats)
    params = list(weight_fn.parameters())
    return _guarded(
        desc,
        node_feats,
        lambda: _ChunkedConvolution.apply(
            graph, weight_fn, slices, node_feats, edge_sh, weight_inputs, *params
        ),
    )


def _graph(desc: TPDescriptor, src: torch.Tensor, dst: torch.Tensor, like: torch.Tensor) -> _Graph:
    g = cached_constant(("tp_conv_fused", desc), lambda: coupling(desc), like.dtype, like.device)
    return _Graph(desc, src, dst, g)


def _guarded(desc: TPDescriptor, like: torch.Tensor, call):
    """``call()``, or ``None`` (logged) when the first compile for ``desc`` and the dtype fails."""
    try:
        return call()
    except Exception as error:  # noqa: BLE001 - a compiler that fails: the ATen path, said once
        key = (desc, like.dtype)
        if key in _FAILED:
            raise
        _FAILED.add(key)
        _log.warning(
            "fused CPU convolution not compiled (%s: %s); the ATen path runs", type(error).__name__, error
        )
        return None


@dataclass(frozen=True, eq=False)
class _Graph:
    """What every call of one convolution shares besides its operands: edges and coupling matrix."""

    desc: TPDescriptor
    src: torch.Tensor
    dst: torch.Tensor
    g: torch.Tensor


class _Convolution(torch.autograd.Function):
    """``T(x, sh, w)`` over the paths of ``plan``: linear in ``x`` and ``sh``, affine in ``w`` (linear with
    ``plan.weighted_only``). Its backward is :class:`_ConvolutionBackward`, whose own backward is again
    ``T`` and ``T``'s adjoints, so derivatives of every order run the compiled kernels."""

    @staticmethod
    def forward(ctx, graph, plan, x, sh, w):  # type: ignore[override]
        ctx.graph, ctx.plan = graph, plan
        ctx.save_for_backward(x, sh, w)
        desc = graph.desc
        xcs = to_blocks(x, desc.irreps_in1, plan.in_blocks)
        outs = _run(plan, None, xcs, sh, w, graph.src, graph.dst, graph.g)
        return from_blocks(outs, desc.irreps_out, plan.out_blocks, x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, sh, w = ctx.saved_tensors
        want = tuple(ctx.needs_input_grad[2:5])
        return (None, None, *_ConvolutionBackward.apply(ctx.graph, ctx.plan, want, x, sh, w, grad))


def _adjoints(graph: _Graph, plan: Plan, want, x, sh, w, grad):
    """``(T_x^*, T_sh^*, T_w^*)`` at ``(x, sh, w)`` for the output gradient ``grad``, those ``want`` asks
    for (compiled; ``None`` for the others)."""
    desc = graph.desc
    xcs = to_blocks(x, desc.irreps_in1, plan.in_blocks)
    gos = to_blocks(grad, desc.irreps_out, plan.out_blocks)
    gxcs, gsh, gw = _run(plan, want, xcs, sh, w, graph.src, graph.dst, graph.g, gos)
    gx = None if gxcs is None else from_blocks(gxcs, desc.irreps_in1, plan.in_blocks, x)
    return gx, gsh, gw


class _ConvolutionBackward(torch.autograd.Function):
    """``(T_x^*, T_sh^*, T_w^*)(x, sh, w, grad)``, the adjoints of :class:`_Convolution`.

    Its backward: ``<gg_x, T_x^*(sh, w, grad)> = <T(gg_x, sh, w), grad>`` (``T`` linear in ``x``) has the
    gradients ``T_sh^*(gg_x, w, grad)`` in ``sh``, ``T_w^*(gg_x, sh, grad)`` in ``w`` and ``T(gg_x, sh,
    w)`` in ``grad``; likewise for ``gg_sh``. ``T`` is only affine in ``w`` (unweighted paths do not read
    it), so the ``gg_w`` term runs on the weighted paths alone (``plan(desc, weighted_only=True)``)."""

    @staticmethod
    def forward(ctx, graph, plan, want, x, sh, w, grad):  # type: ignore[override]
        ctx.graph, ctx.plan = graph, plan
        ctx.save_for_backward(x, sh, w, grad)
        if not any(want):
            return None, None, None
        return _adjoints(graph, plan, want, x, sh, w, grad)

    @staticmethod
    def backward(ctx, gg_x, gg_sh, gg_w):  # type: ignore[override]
        x, sh, w, grad = ctx.saved_tensors
        graph, full = ctx.graph, ctx.plan
        need = dict(zip(("x", "sh", "w", "grad"), ctx.needs_input_grad[3:7], strict=True))
        need["w"] = need["w"] and w is not None
        total: dict[str, torch.Tensor | None] = {"x": None, "sh": None, "w": None, "grad": None}
        terms = (  # (gg, the operands with gg in its slot, the plan, the adjoints the term gives)
            (gg_x, lambda v: (v, sh, w), full, ("sh", "w")),
            (gg_sh, lambda v: (x, v, w), full, ("x", "w")),
            (gg_w, lambda v: (x, sh, v), plan(graph.desc, weighted_only=True), ("x", "sh")),
        )
        for gg, operands, term_plan, names in terms:
            if gg is None:
                continue
            xa, sa, wa = operands(gg)
            values = {}
            if need["grad"]:
                values["grad"] = _Convolution.apply(graph, term_plan, xa, sa, wa)
            want = tuple(name in names and need[name] for name in ("x", "sh", "w"))
            if any(want):
                adjoints = _ConvolutionBackward.apply(graph, term_plan, want, xa, sa, wa, grad)
                values.update(zip(("x", "sh", "w"), adjoints, strict=True))
            for name, value in values.items():
                if value is not None:
                    total[name] = value if total[name] is None else total[name] + value
        return None, None, None, total["x"], total["sh"], total["w"], total["grad"]


class _ChunkedConvolution(torch.autograd.Function):
    """The memory-bounded inference mode on the compiled kernels: per chunk of edges the weights
    ``weight_fn(radial)`` and one compiled forward, summed into the output blocks; the backward makes each
    chunk's weights again (with autograd, to reach ``radial`` and ``weight_fn``'s parameters) and runs the
    compiled backward on them. First derivatives only."""

    @staticmethod
    def forward(ctx, graph, weight_fn, slices, x, sh, radial, *params):  # type: ignore[override]
        ctx.graph, ctx.weight_fn, ctx.slices = graph, weight_fn, slices
        ctx.save_for_backward(x, sh, radial)
        desc, full = graph.desc, plan(graph.desc)
        xcs = to_blocks(x, desc.irreps_in1, full.in_blocks)
        sums = None
        for s in slices:
            outs = _run(full, None, xcs, sh[s], weight_fn(radial[s]), graph.src[s], graph.dst[s], graph.g)
            sums = outs if sums is None else [a + b for a, b in zip(sums, outs, strict=True)]
        return from_blocks(sums, desc.irreps_out, full.out_blocks, x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        x, sh, radial = ctx.saved_tensors
        graph = ctx.graph
        desc, full = graph.desc, plan(graph.desc)
        want_x, want_sh, want_radial = ctx.needs_input_grad[3:6]
        wanted = ctx.needs_input_grad[6:]
        live = [p for p, w in zip(ctx.weight_fn.parameters(), wanted, strict=True) if w]
        want = (want_x, want_sh, want_radial or bool(live))
        xcs = to_blocks(x, desc.irreps_in1, full.in_blocks)
        gos = to_blocks(grad, desc.irreps_out, full.out_blocks)
        grad_xcs = None
        grad_sh = torch.zeros_like(sh) if want_sh else None
        grad_radial = torch.zeros_like(radial) if want_radial else None
        grad_params = [torch.zeros_like(p) for p in live]
        for s in ctx.slices:
            with torch.enable_grad():
                rd = radial[s].detach().requires_grad_(want_radial)
                w = ctx.weight_fn(rd)
            gx, gs, gw = _run(full, want, xcs, sh[s], w, graph.src[s], graph.dst[s], graph.g, gos)
            if want_x:
                grad_xcs = gx if grad_xcs is None else [a + b for a, b in zip(grad_xcs, gx, strict=True)]
            if want_sh:
                grad_sh[s] = gs
            if want[2]:
                inputs = ([rd] if want_radial else []) + live
                grads = list(torch.autograd.grad(w, inputs, gw, allow_unused=True))
                if want_radial:
                    grad_radial[s] = grads.pop(0)
                for total, g in zip(grad_params, grads, strict=True):
                    if g is not None:
                        total += g
        grad_x = from_blocks(grad_xcs, desc.irreps_in1, full.in_blocks, x) if want_x else None
        merged = iter(grad_params)
        return (
            None,
            None,
            None,
            grad_x,
            grad_sh,
            grad_radial,
            *(next(merged) if w else None for w in wanted),
        )


class TracedBlocks:
    """The per-path formulation for the traced chunk loops (``tp_conv_blocked``, the compiled step on the
    CPU): the operations of one block of edges, as plain torch ops that AOTInductor compiles like the
    eager kernels above (one loop nest per output block: gather, contraction, weights, the paths' sum
    and one scatter-add into the loop's carried sum, which ``blocks.inplace_loop_carries`` updates in
    place). Per-path operands are the channels-last blocks of :func:`to_blocks`: node features and
    output gradients are converted once, outside the loops."""

    def __init__(self, desc: TPDescriptor, like: torch.Tensor) -> None:
        self.desc, self.plan = desc, plan(desc)
        self.g = cached_constant(("tp_conv_fused", desc), lambda: coupling(desc), like.dtype, like.device)

    def nodes(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Node features ``[N, dim1]`` -> the ``in1`` blocks ``[N, d1, U]``."""
        return to_blocks(x, self.desc.irreps_in1, self.plan.in_blocks)

    def zeros(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Zero output sums ``[N, d, U]``, one per output block."""
        return [_or_zeros({}, o, x.shape[0], x, self.plan, "i_out") for o in self.plan.out_blocks]

    def accumulate(self, sums, nodes, sh, w, src, dst) -> list[torch.Tensor]:
        """``sums`` plus one block's messages (edges ``src -> dst``, harmonics ``sh``, weights ``w``)."""
        a = sh @ self.g
        xc = dict(zip(self.plan.in_blocks, nodes, strict=True))
        msgs: dict[int, torch.Tensor] = {}
        for p in self.plan.paths:
            t = _message(p, a, xc[p.i_in1].index_select(0, src), w)
            msgs[p.i_out] = t if p.i_out not in msgs else msgs[p.i_out] + t
        return [s.index_add(0, dst, msgs[o]) for s, o in zip(sums, self.plan.out_blocks, strict=True)]

    def output(self, sums: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return from_blocks(sums, self.desc.irreps_out, self.plan.out_blocks, x)

    def grad_outputs(self, grad: torch.Tensor) -> list[torch.Tensor]:
        return to_blocks(grad, self.desc.irreps_out, self.plan.out_blocks)

    def adjoints(self, nodes, gos, sh, w, src, dst, want: tuple[bool, bool, bool]):
        """One block's ``(grad_sh [E, dim2], grad_w [E, numel], per in1 block grad_xs [E, d1, U])`` for
        the output gradients ``gos`` (:meth:`grad_outputs`); ``None`` where ``want`` (x, sh, w) says no."""
        want_x, want_sh, want_w = want
        a = sh @ self.g
        xc = dict(zip(self.plan.in_blocks, nodes, strict=True))
        go = dict(zip(self.plan.out_blocks, gos, strict=True))
        grad_xs: dict[int, torch.Tensor] = {}
        grad_a, grad_w = [], {}
        for p in self.plan.paths:
            xs, gm = xc[p.i_in1].index_select(0, src), go[p.i_out].index_select(0, dst)
            gw, ga, gx = _path_grads(p, a, xs, gm, w, want_x, want_sh, want_w)
            if gw is not None:
                grad_w[p.weight] = gw
            grad_a.append(ga)
            if gx is not None:
                grad_xs[p.i_in1] = gx if p.i_in1 not in grad_xs else grad_xs[p.i_in1] + gx
        grad_sh = torch.cat(grad_a, dim=1) @ self.g.t() if want_sh else None
        grad_x = [grad_xs[b] for b in self.plan.in_blocks] if want_x else None
        return grad_sh, _weight_columns(grad_w, w) if want_w else None, grad_x

    def grad_input(self, grads: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return from_blocks(grads, self.desc.irreps_in1, self.plan.in_blocks, x)
