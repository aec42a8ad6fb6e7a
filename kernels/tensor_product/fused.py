"""The ``fused`` formulation of a tensor product whose ``in2`` blocks all have multiplicity 1 and whose
weights are shared (issue 23): the per-sample couplings as Inductor-generated C++, the weights as one ATen
GEMM per output block.

The ``sides`` formulation (:mod:`~mlip.kernels.tensor_product.sides`) runs every path's coupling as its
own ATen ops (tiny per-sample ``bmm`` or broadcast products, inner dimensions 1-7) with layout copies
around them; their count, not any one op, limits it. Here the same function is written per path with the
batch last: ``x`` and ``y`` transposed once (``xt [dim1, B]``, ``yt [dim2, B]``: each ``in1`` block a view
``[U, d1, B]``), so every coupling is a loop vectorized over the batch with contiguous loads, and
:func:`torch.compile` (Inductor, C++, on the call's threads) fuses the couplings, leaving the weight
GEMMs to a library.
Path ``p`` (``in1`` block ``x_p``, ``in2`` block ``y_p``, output block ``o`` of dimension ``d``) couples
``v [C, d1, B]`` as ``c_p(v)[c, m, b] = Σ_i A_p[m, i, b] v[c, i, b]`` with ``A_p = G_p^T y_p`` (the path's
``coef * wigner_3j``; every general path's ``A`` from one GEMM ``G^T yt``), unrolled over ``i``; paths
with an ``l = 0`` side take the scaled identity, outer or dot product instead (:func:`sides.side_plan`):

- *output side* (``d <= d1``): the ``c_p(x_p)`` of one output block stacked, ``t_o [Σ_p U, d * B]``, and
  ONE GEMM ``W_o^T [W, Σ_p U] @ t_o`` against the paths' stacked weights gives the block transposed,
  ``[W, d, B]``: already e3nn's row order, so the output needs one 2-D transpose at the end;
- *input side* (``d1 < d``): per ``in1`` block one GEMM ``[Σ_p W, U] @ x_i [U, d1 * B]`` against its
  input-side paths' weights side by side, then ``c_p`` of each path's rows, added into its block;
- ``uvu`` paths: ``c_p(x_p)`` times the path's weights (per channel), added into its block.

The GEMMs run in the orientation that is fast for float64 on the CPUs measured (long ``N``). The
transposes in and out are compiled kernels of their own (inside the product's, Inductor would inline them
as strided loads). The backward (:func:`adjoints`) is written by hand in the same layout (the GEMMs'
transposes, each coupling's adjoints; the compiled vector-Jacobian product of :func:`product` spent twice
as long outside its GEMMs), one kernel per set of wanted gradients; :mod:`mlip.kernels.trilinear` gives
every derivative order on these kernels (the product is linear in ``x`` and ``y``, affine in the
weights), the double backward of a training step in one kernel (:func:`second_order`). When it runs:
:func:`applies` (eager CPU calls, :func:`mlip.kernels.inductor.worth_it`: at most ``MAX_THREADS[dtype]``
torch threads and enough work, ``MLIP_TP_INDUCTOR``); per-sample weights run ``sides`` (read with the
batch last they would be strided); a failed compile is logged once and the caller's fallback runs. Its
GEMMs are :func:`mlip.kernels.gemm.matmul` (oneDNN in float32 where that is faster).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mlip.kernels import gemm, inductor
from mlip.kernels.tensor_product import blocks as per_block
from mlip.kernels.tensor_product import formulation, sides
from mlip.kernels.tensor_product.descriptor import TPDescriptor
from mlip.kernels.tensor_product.formulation import Problem
from mlip.kernels.trilinear import Trilinear
from mlip.o3 import cached_constant

CHUNK_BYTES = 1 << 24  # batch chunks whose input or output takes at most about this (bounded temporaries)
# offered (to the tuner) on at most this many torch threads (measured up to 2): in float32, where its
# GEMMs run on oneDNN, 2; in float64 (MKL's GEMMs, as the ATen formulations') 1, since at 2 threads its
# double backward fell behind e3nn's (benchmarks/notes/tp_cpu_profile.md)
MAX_THREADS = {torch.float32: 2, torch.float64: 1}
_log = logging.getLogger(__name__)
_FAILED: set[tuple] = set()  # (descriptor, dtype) whose first compile failed: sides runs


@dataclass(frozen=True)
class FusedPath:
    """One path: its blocks and dimensions, coupling kind and scale (:data:`sides.KINDS`), weight side,
    and the first column of ``A = y @ G`` (``general`` paths; ``-1`` otherwise)."""

    path: int
    i_in1: int
    i_in2: int
    i_out: int
    d1: int
    dim: int
    mode: str
    kind: str
    scale: float
    input_side: bool
    column: int


@functools.cache
def fused_plan(desc: TPDescriptor, weighted_only: bool = False) -> tuple[FusedPath, ...]:
    """The paths of ``desc`` (which satisfies :func:`sides.supports`); ``weighted_only``: those with
    weights (the product minus its weight-free part, linear in the weights)."""
    out, column = [], 0
    for sp in sides.side_plan(desc):
        ins = desc.instructions[sp.path]
        if weighted_only and not ins.has_weight:
            continue
        d1, dim = desc.irreps_in1[ins.i_in1].ir.dim, desc.irreps_out[ins.i_out].ir.dim
        col = column if sp.kind == "general" else -1
        out.append(FusedPath(sp.path, ins.i_in1, ins.i_in2, ins.i_out, d1, dim, ins.mode, sp.kind,
                             sp.scale, sp.input_side, col))  # fmt: skip
        column += dim * d1 if sp.kind == "general" else 0
    return tuple(out)


def coupling(desc: TPDescriptor) -> torch.Tensor:
    """``G [dim2, Σ_p d_p * d1_p]`` (float64) over the ``general`` paths: ``G[j, column + m * d1 + i] =
    coef * C[i, j, m]`` in the rows of the path's ``in2`` block (zero elsewhere)."""
    s2 = desc.irreps_in2.slices()
    blocks = [torch.zeros(desc.irreps_in2.dim, 0, dtype=torch.float64)]
    for p in fused_plan(desc):
        if p.kind == "general":
            block = torch.zeros(desc.irreps_in2.dim, p.dim * p.d1, dtype=torch.float64)
            block[s2[p.i_in2]] = sides._coupling(desc, p.path)
            blocks.append(block)
    return torch.cat(blocks, dim=1)


def _cat(parts: list[torch.Tensor], dim: int = 0) -> torch.Tensor:
    """``torch.cat`` that leaves a single part as it is (no copy)."""
    return torch.cat(parts, dim) if len(parts) > 1 else parts[0]


def _block_views(t: torch.Tensor, irreps) -> list[torch.Tensor]:
    """The blocks of a batch-last ``[irreps.dim, B]`` tensor as views ``[mul, d, B]``."""
    batch = t.shape[1]
    return [v.view(mi.mul, mi.ir.dim, batch) for v, mi in zip(t.split([mi.dim for mi in irreps]), irreps,
                                                              strict=True)]  # fmt: skip


def _gemm_paths(plan: tuple[FusedPath, ...], k: int) -> list[FusedPath]:
    """The output-side ``uvw`` paths into output block ``k``: their couplings share one weight GEMM."""
    return [p for p in plan if p.i_out == k and p.mode == "uvw" and not p.input_side]


def _input_groups(plan: tuple[FusedPath, ...]) -> list[tuple[int, list[FusedPath]]]:
    """``(in1 block, its input-side paths)`` per ``in1`` block with any: one weight GEMM each."""
    blocks = sorted({p.i_in1 for p in plan if p.input_side})
    return [(i, [p for p in plan if p.input_side and p.i_in1 == i]) for i in blocks]


def _input_products(
    v: torch.Tensor, ws: list[torch.Tensor], onednn: bool
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One ``in1`` block ``v [U, d1, B]`` times its input-side paths' weights ``ws`` (``[U, W_p]`` each):
    the weights side by side ``[U, Σ W_p]`` and each path's product ``w_p^T v`` ``[W_p, d1, B]``."""
    wcat = _cat(ws, dim=1)
    full = gemm.matmul(wcat.t(), v, onednn)
    return wcat, full.view(-1, v.shape[1], v.shape[2]).split([w.shape[1] for w in ws])


def _couple(p: FusedPath, v: torch.Tensor, y2: torch.Tensor, at: torch.Tensor | None) -> torch.Tensor:
    """``c_p(v)``: ``v [C, d1, B]`` coupled with the path's ``in2`` block ``y2 [d2, B]`` (``at = G^T y``
    for ``general`` paths): ``[C, d, B]``, unrolled over ``d1`` (fused by Inductor, vectorized over B)."""
    if p.kind == "x":  # l2 = 0
        return v * (p.scale * y2)[None]
    if p.kind == "y":  # l1 = 0
        return (p.scale * y2)[None] * v
    if p.kind == "dot":  # l_out = 0
        return sum(v[:, i : i + 1] * (p.scale * y2[i]) for i in range(p.d1))
    coef = at[p.column : p.column + p.dim * p.d1].view(p.dim, p.d1, -1)
    return sum(coef[None, :, i] * v[:, None, i] for i in range(p.d1))


def product(
    xt: torch.Tensor,
    yt: torch.Tensor,
    weight: torch.Tensor | None,
    g: torch.Tensor,
    *,
    desc: TPDescriptor,
    plan: tuple[FusedPath, ...],
    onednn: bool,
) -> torch.Tensor:
    """The product over the paths ``plan`` (module docstring) as the kernels compile it, batch last:
    ``xt [dim1, B]`` and ``yt [dim2, B]`` (the inputs transposed), shared ``weight [weight_numel]`` (or
    ``None``), ``g`` :func:`coupling` in the dtype; returns the output transposed, ``[dim_out, B]``. The
    GEMMs are :func:`mlip.kernels.gemm.matmul` (oneDNN in float32 where ``onednn``)."""
    batch = xt.shape[1]
    xs = _block_views(xt, desc.irreps_in1)
    ys = yt.split([mi.dim for mi in desc.irreps_in2])
    weights = per_block.path_weights(desc, weight)  # uvw [U, W], uvu [U, 1]
    at = gemm.matmul(g.t(), yt, onednn) if g.shape[1] else None

    products: dict[int, torch.Tensor] = {}  # input-side path -> w^T x [W, d1, B]
    for i, paths in _input_groups(plan):
        _, parts = _input_products(xs[i], [weights[p.path] for p in paths], onednn)
        products.update(zip((p.path for p in paths), parts, strict=True))

    out = []
    for k, (mul_out, ir) in enumerate(desc.irreps_out):
        total = None
        stacked = _gemm_paths(plan, k)
        if stacked:  # the paths' couplings side by side, one GEMM against their stacked weights
            t = _cat([_couple(p, xs[p.i_in1], ys[p.i_in2], at) for p in stacked])
            w = _cat([weights[p.path] for p in stacked])
            total = gemm.matmul(w.t(), t, onednn).view(mul_out, ir.dim, batch)
        for p in plan:
            if p.i_out != k or p in stacked:
                continue
            if p.input_side:
                term = _couple(p, products[p.path], ys[p.i_in2], at)
            else:  # uvu: weights [U, 1] per channel
                term = _couple(p, xs[p.i_in1], ys[p.i_in2], at)
                if weights[p.path] is not None:
                    term = term * weights[p.path].view(-1, 1, 1)
            total = term if total is None else total + term
        out.append(yt.new_zeros(mul_out * ir.dim, batch) if total is None else total.view(-1, batch))
    return _cat(out)


def _couple_adjoints(
    p: FusedPath, v: torch.Tensor, y2: torch.Tensor, at: torch.Tensor | None, g: torch.Tensor, want_v: bool
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The adjoints of :func:`_couple` for its output gradient ``g [C, d, B]``: in ``v`` (``[C, d1, B]``,
    when ``want_v``) and in ``y2`` (``[d2, B]``; for ``general`` paths in ``A_p``, ``[d * d1, B]``)."""
    if p.kind == "x":
        gv = g * (p.scale * y2)[None] if want_v else None
        return gv, p.scale * (g * v).sum((0, 1))[None]
    if p.kind == "y":
        gv = sum(g[:, m : m + 1] * (p.scale * y2[m]) for m in range(p.dim)) if want_v else None
        return gv, p.scale * (g * v).sum(0)
    if p.kind == "dot":
        gv = g * (p.scale * y2)[None] if want_v else None
        return gv, p.scale * (g * v).sum(0)
    coef = at[p.column : p.column + p.dim * p.d1].view(p.dim, p.d1, -1)
    gv = sum(coef[None, m] * g[:, m : m + 1] for m in range(p.dim)) if want_v else None
    ga = torch.stack([(g[:, m : m + 1] * v).sum(0) for m in range(p.dim)])  # [d, d1, B]
    return gv, ga.view(p.dim * p.d1, -1)


def adjoints(
    xt: torch.Tensor,
    yt: torch.Tensor,
    weight: torch.Tensor | None,
    g: torch.Tensor,
    gradt: torch.Tensor,
    *,
    desc: TPDescriptor,
    plan: tuple[FusedPath, ...],
    want: tuple[bool, bool, bool],
    onednn: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """``(grad_xt, grad_yt, grad_weight)`` of :func:`product` for the transposed output gradient
    ``gradt [dim_out, B]``, those ``want`` asks for (``None`` for the others), written by hand in the same
    layout: the GEMMs' transposes and each coupling's adjoints (:func:`_couple_adjoints`)."""
    want_x, want_y, want_w = want[0], want[1], want[2] and weight is not None
    batch = xt.shape[1]
    xs = _block_views(xt, desc.irreps_in1)
    ys = yt.split([mi.dim for mi in desc.irreps_in2])
    gs = _block_views(gradt, desc.irreps_out)
    weights = per_block.path_weights(desc, weight)
    at = gemm.matmul(g.t(), yt, onednn) if g.shape[1] else None
    gx: dict[int, torch.Tensor] = {}
    gy: dict[int, torch.Tensor] = {}
    ga: dict[int, torch.Tensor] = {}  # general path -> its A's gradient [d * d1, B]
    gw: dict[int, torch.Tensor] = {}

    def add(store: dict, key: int, value: torch.Tensor | None) -> None:
        if value is not None:
            store[key] = value if key not in store else store[key] + value

    def into_y(p: FusedPath, value: torch.Tensor) -> None:
        if p.kind == "general":
            ga[p.path] = value
        else:
            add(gy, p.i_in2, value)

    for k, (_, ir) in enumerate(desc.irreps_out):
        gk = gs[k]
        stacked = _gemm_paths(plan, k)
        if stacked:
            w = _cat([weights[p.path] for p in stacked])
            gt = (
                gemm.matmul(w, gk, onednn)
                .view(w.shape[0], ir.dim, batch)
                .split([desc.irreps_in1[p.i_in1].mul for p in stacked])
            )
            if want_w:
                ts = [_couple(p, xs[p.i_in1], ys[p.i_in2], at) for p in stacked]
                t = _cat(ts)
                full = gemm.matmul(t, gk, onednn, transpose_b=True)
                gw.update(zip((p.path for p in stacked), full.split([len(tp) for tp in ts]), strict=True))
            for p, gtp in zip(stacked, gt, strict=True):
                gv, g2 = _couple_adjoints(p, xs[p.i_in1], ys[p.i_in2], at, gtp, want_x)
                add(gx, p.i_in1, gv)
                into_y(p, g2)
        for p in plan:
            if p.i_out != k or p in stacked or p.input_side:
                continue
            v, wp = xs[p.i_in1], weights[p.path]  # uvu: weights [U, 1] per channel
            gtp = gk if wp is None else gk * wp.view(-1, 1, 1)
            if want_w and wp is not None:
                gw[p.path] = (gk * _couple(p, v, ys[p.i_in2], at)).sum((1, 2))[:, None]
            gv, g2 = _couple_adjoints(p, v, ys[p.i_in2], at, gtp, want_x)
            add(gx, p.i_in1, gv)
            into_y(p, g2)

    for i, paths in _input_groups(plan):  # input side: x_i @ [w_p ...]
        ws = [weights[p.path] for p in paths]
        v = xs[i]
        wcat, products = _input_products(v, ws, onednn)
        gps = []
        for p, product_p in zip(paths, products, strict=True):
            gp, g2 = _couple_adjoints(p, product_p, ys[p.i_in2], at, gs[p.i_out], want_x or want_w)
            gps.append(gp)
            into_y(p, g2)
        if want_x or want_w:
            gp = _cat(gps)  # [Σ W, d1, B]
            if want_x:
                add(gx, i, gemm.matmul(wcat, gp, onednn).view(v.shape))
            if want_w:
                full = gemm.matmul(v, gp, onednn, transpose_b=True)  # [U, Σ W]
                gw.update(
                    zip((p.path for p in paths), full.split([w.shape[1] for w in ws], dim=1), strict=True)
                )

    grad_x = grad_y = grad_w = None
    if want_x:
        grad_x = torch.cat([gx[i].reshape(-1, batch) if i in gx else xt.new_zeros(mi.dim, batch)
                            for i, mi in enumerate(desc.irreps_in1)])  # fmt: skip
    if want_y:
        grad_y = torch.cat([gy[j] if j in gy else yt.new_zeros(mi.dim, batch)
                            for j, mi in enumerate(desc.irreps_in2)])  # fmt: skip
        if ga:  # the general paths' A = G^T y: one GEMM back to every in2 block
            grad_y = grad_y + gemm.matmul(
                g, torch.cat([ga[p.path] for p in plan if p.kind == "general"]), onednn
            )
    if want_w:
        pieces = [gw[n].reshape(-1) if n in gw else weight.new_zeros(ins.weight_numel)
                  for n, ins in enumerate(desc.instructions) if ins.has_weight]  # fmt: skip
        grad_w = torch.cat(pieces)
    return grad_x, grad_y, grad_w


def second_order(
    xt: torch.Tensor,
    yt: torch.Tensor,
    weight: torch.Tensor | None,
    g: torch.Tensor,
    gradt: torch.Tensor,
    ggxt: torch.Tensor | None,
    ggyt: torch.Tensor | None,
    gg_weight: torch.Tensor | None,
    *,
    desc: TPDescriptor,
    plan: tuple[FusedPath, ...],
    weighted_plan: tuple[FusedPath, ...],
    need: tuple[bool, bool, bool, bool],
    onednn: bool,
) -> list[torch.Tensor | None]:
    """The backward of :func:`adjoints` (:mod:`mlip.kernels.trilinear`'s terms) in one kernel, batch last:
    for the incoming gradients ``ggxt [dim1, B]``, ``ggyt [dim2, B]``, ``gg_weight [weight_numel]`` (each
    may be ``None``) of ``(grad_xt, grad_yt, grad_weight)`` at ``(xt, yt, weight, gradt)``, the gradients
    ``[x [dim1, B], y [dim2, B], weight, grad [dim_out, B]]`` that ``need`` asks for (``None`` for the
    others and where no term contributes): the product with one operand replaced by its ``gg`` (into
    ``grad``) and its adjoints in the other two (the ``gg_weight`` term over the weighted paths,
    ``weighted_plan``)."""
    need_x, need_y, need_w, need_grad = need
    totals: list[torch.Tensor | None] = [None, None, None, None]

    def add(i: int, value: torch.Tensor | None) -> None:
        if value is not None:
            totals[i] = value if totals[i] is None else totals[i] + value

    # (gg, the operands with gg in its slot, their paths, the adjoints the term gives; need_w is False
    # without weights, as trilinear passes it)
    terms = (
        (ggxt, (ggxt, yt, weight), plan, (False, need_y, need_w)),
        (ggyt, (xt, ggyt, weight), plan, (need_x, False, need_w)),
        (gg_weight, (xt, yt, gg_weight), weighted_plan, (need_x, need_y, False)),
    )
    for gg, (a, b, c), paths, want in terms:
        if gg is None:
            continue
        if need_grad:
            add(3, product(a, b, c, g, desc=desc, plan=paths, onednn=onednn))
        if any(want):
            for i, value in enumerate(
                adjoints(a, b, c, g, gradt, desc=desc, plan=paths, want=want, onednn=onednn)
            ):
                add(i, value)
    return totals


def _transposed(*tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    """Each 2-D tensor transposed into a contiguous copy (``None`` kept): Inductor's tiled transposes,
    compiled on their own (inside the product's kernels they would be inlined as strided loads)."""
    return [None if t is None else t.t().contiguous() for t in tensors]


@functools.cache
def _kernel(name: str, key: tuple):
    """The compiled kernel ``name`` for ``key``: ``"transposed"`` for the arguments' ``None`` pattern
    (``count`` booleans), the batch dimension and the thread count, ``"product"`` for ``(desc,
    weighted_only, onednn, threads)``, ``"adjoints"`` for ``(desc, weighted_only, onednn, threads,
    want)``, ``"second_order"`` for ``(desc, weighted_only, onednn, threads, need, the None pattern of
    the three incoming gradients)``. Its loops run on ``threads`` threads (no scatter here: the 2-thread
    miscompile that keeps the convolution's loops on one thread concerns scatter-adds). Each has one
    fixed structure: its compiled graphs keep guards on tensors only (argument counts and ``None`` are not
    checked), so one kernel never serves two structures."""
    if name == "transposed":
        return inductor.compile_kernel(_transposed, "tensor product", threads=key[-1])
    desc, weighted_only, onednn, threads = key[:4]
    static = {"desc": desc, "plan": fused_plan(desc, weighted_only), "onednn": onednn}
    if name == "product":
        return inductor.compile_kernel(product, "tensor product", threads=threads, **static)
    if name == "second_order":
        return inductor.compile_kernel(
            second_order, "tensor product", threads=threads, **static, weighted_plan=fused_plan(desc, True),
            need=key[4],
        )  # fmt: skip
    return inductor.compile_kernel(adjoints, "tensor product", threads=threads, **static, want=key[4])


def _run(name: str, key: tuple, *tensors, dims: tuple):
    """:func:`_kernel` on ``tensors``, dynamic in the batch (dimension ``dims[n]`` of argument ``n``;
    tests wrap this to see which kernels ran)."""
    return inductor.call_dynamic(_kernel(name, key), *tensors, dims=dims)


def _transpose(*tensors: torch.Tensor | None, batch_dim: int, threads: int) -> list[torch.Tensor | None]:
    """:func:`_transposed` of ``tensors`` whose batch is dimension ``batch_dim``, on ``threads`` threads."""
    key = (*(t is None for t in tensors), batch_dim, threads)
    return _run("transposed", key, *tensors, dims=(batch_dim,) * len(tensors))


@dataclass(frozen=True)
class _Operator:
    """The product of ``desc`` (over its weighted paths with ``weighted_only``) as
    :mod:`mlip.kernels.trilinear`'s operator: linear in ``x`` and ``y``, affine in the weights; its GEMMs
    on oneDNN where ``onednn`` (:func:`mlip.kernels.gemm.onednn_faster`), its loops on ``threads``."""

    desc: TPDescriptor
    onednn: bool
    threads: int = 1
    weighted_only: bool = False

    def _g(self, like: torch.Tensor) -> torch.Tensor:
        return cached_constant(("tp_fused", self.desc), lambda: coupling(self.desc), like.dtype, like.device)

    def forward(self, x, y, w):
        xt, yt = _transpose(x, y, batch_dim=0, threads=self.threads)
        key = (self.desc, self.weighted_only, self.onednn, self.threads)
        out = _run("product", key, xt, yt, w, self._g(x), dims=(1, 1, None, None))
        return _transpose(out, batch_dim=1, threads=self.threads)[0]

    def adjoints(self, want, x, y, w, grad):
        want = (want[0], want[1], want[2] and w is not None)
        xt, yt, gradt = _transpose(x, y, grad, batch_dim=0, threads=self.threads)
        key = (self.desc, self.weighted_only, self.onednn, self.threads, want)
        gxt, gyt, gw = _run("adjoints", key, xt, yt, w, self._g(x), gradt, dims=(1, 1, None, None, 1))
        gx, gy = _transpose(gxt, gyt, batch_dim=1, threads=self.threads)
        return gx, gy, gw

    def second_order(self, need, x, y, w, grad, gg_x, gg_y, gg_w):
        xt, yt, gradt, ggxt, ggyt = _transpose(x, y, grad, gg_x, gg_y, batch_dim=0, threads=self.threads)
        key = (self.desc, self.weighted_only, self.onednn, self.threads, need,
               (gg_x is None, gg_y is None, gg_w is None))  # fmt: skip
        dims = (1, 1, None, None, 1, 1, 1, None)
        tx, ty, tw, tgrad = _run(
            "second_order", key, xt, yt, w, self._g(x), gradt, ggxt, ggyt, gg_w, dims=dims
        )
        tx, ty, tgrad = _transpose(tx, ty, tgrad, batch_dim=1, threads=self.threads)
        return tx, ty, tw, tgrad

    def weighted(self):
        return _Operator(self.desc, self.onednn, self.threads, weighted_only=True)


def messages(desc: TPDescriptor, batch: int) -> int:
    """Elements of the coupled products of one call (what :func:`mlip.kernels.inductor.worth_it` weighs)."""
    return batch * sum(p.dim * desc.irreps_in1[p.i_in1].mul for p in fused_plan(desc))


def applies(desc: TPDescriptor, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None) -> bool:
    """Whether :func:`tensor_product_fused` runs the compiled kernels for this call: eager, plain CPU
    tensors, shared weights (or none), at least two samples, no failed compile for the descriptor and
    dtype, and :func:`mlip.kernels.inductor.worth_it`."""
    if inductor.mode() == "0" or x.shape[0] < 2 or (desc, x.dtype) in _FAILED:
        return False
    if weight is not None and weight.dim() != 1:
        return False
    return inductor.plain(x, y, weight) and inductor.worth_it(
        messages(desc, x.shape[0]), max_threads=MAX_THREADS.get(x.dtype, 1)
    )


def tensor_product_fused(
    desc: TPDescriptor,
    x: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor | None,
    fallback: Callable[..., torch.Tensor] = sides.tensor_product_sides,
) -> torch.Tensor:
    """The tensor product (contract of
    :func:`~mlip.kernels.tensor_product.reference.tensor_product_reference`) on the compiled kernels where
    :func:`applies` (over batch chunks of about ``CHUNK_BYTES`` inputs or outputs), else (and after a
    failed first compile, logged once) ``fallback``."""
    if applies(desc, x, y, weight):
        width = max(desc.irreps_in1.dim, desc.irreps_out.dim) * x.element_size()
        rows = max(256, CHUNK_BYTES // width)

        def call():
            op = _Operator(desc, gemm.onednn_faster(), torch.get_num_threads())
            if x.shape[0] <= rows:  # one chunk: unsplit (a split's backward copies the gradients)
                return Trilinear.apply(op, x, y, weight)
            parts = [
                Trilinear.apply(op, a, b, weight) for a, b in zip(x.split(rows), y.split(rows), strict=True)
            ]
            return _cat(parts)

        out = inductor.guarded(_FAILED, (desc, x.dtype), call, "tensor product", _log)
        if out is not None:
            return out
    return fallback(desc, x, y, weight)


KERNEL_S = 3e-5  # one call of a compiled kernel (wrapper, guards)


def cost(desc: TPDescriptor, prob: Problem) -> float:
    """Estimated forward seconds (:mod:`formulation`'s primitives): three compiled calls and the layout
    copies, the GEMMs, and one pass over each path's coupled product (vectorized, ``d1`` multiply-adds per
    element)."""
    b, item, plan = prob.batch, prob.item, fused_plan(desc)
    total = 3 * KERNEL_S + formulation.elementwise(b * (desc.irreps_in1.dim + desc.irreps_out.dim), item, 2)
    for i, paths in _input_groups(plan):
        mul, ir = desc.irreps_in1[i]
        widths = [desc.irreps_out[p.i_out].mul for p in paths]
        if prob.shared:
            total += formulation.gemm(b * ir.dim, sum(widths), mul, item)
        else:
            total += sum(formulation.bmm(b, ir.dim, w, mul, item) for w in widths)
    for k, (mul_out, ir) in enumerate(desc.irreps_out):
        stacked = [desc.irreps_in1[p.i_in1].mul for p in _gemm_paths(plan, k)]
        if stacked and prob.shared:
            total += formulation.gemm(b * ir.dim, mul_out, sum(stacked), item)
        else:
            total += sum(formulation.bmm(b, ir.dim, mul_out, u, item) for u in stacked)
    for p in plan:
        channels = desc.irreps_out[p.i_out].mul if p.input_side else desc.irreps_in1[p.i_in1].mul
        inner = 1 if p.kind in ("x", "y") else p.d1
        total += (b * p.dim * channels * item * (1 + inner / 4)) / formulation.BYTES_S
    return total
