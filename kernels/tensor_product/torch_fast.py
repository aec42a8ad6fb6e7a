"""Fast pure-torch tensor product: a grouped formulation for channelwise descriptors and a GEMM one for
the rest (``uvw``, ``uvu`` with ``mul2 > 1``, mixtures).

Channelwise (``uvu``, ``mul2 == 1``) formulation, per group of ``in1`` blocks sharing a multiplicity
``U``, in a channels-last layout: features are ``[B, D1, U]`` (``D1`` the group's summed ``in1``
dimensions; ``U`` innermost, so every elementwise op and every GEMM's N dimension runs over the
channels). A group's paths are cut into *runs* (:class:`Run`): consecutive paths of one output dimension
``d`` whose weights are consecutive in the weight vector (``P`` paths, ``K = P * d`` message rows).
Per run:

1. ``A = y @ G``: one dense GEMM of ``y [B, dim2]`` against a precomputed coupling matrix
   ``G [dim2, K * D1]`` holding ``coef * wigner_3j`` of the run's paths: ``A [B, K, D1]``.
2. ``t = bmm(A, x [B, D1, U])``: ``[B, K, U]``, the channels as the GEMM's N.
3. ``t.view(B, P, d, U) * w.view(B, P, 1, U)``: the run's weights are a *view* of the weight vector
   (a path's ``U`` weights are contiguous, the run's paths consecutive) broadcast over ``d``. The
   weights are never expanded to the messages' size, and their gradient is a reduction over ``d``
   written in the weight layout (no scatter).

Messages stay per run ``[B, K, U]`` (the convolution sums them over edges in this layout) and return to
e3nn's layout once, at the end (:func:`from_channels`).

General formulation (:func:`tensor_product_general`), per pair ``(in1[i], in2[j])`` used by some path:

1. ``A = y_j @ G`` with the coupling matrix of every path of the pair ``G [d2, d1 * K]``, then
   ``t = bmm(x_i [B, U, d1], A [B, d1, V * K])``: ``t [B, U * V, K]`` (``U, V`` the multiplicities), the
   outer product of the inputs never materialized.
2. Per output block, with shared weights the ``uvw`` paths are concatenated along ``U * V`` and contracted
   with their stacked weights in one GEMM ``[B * d_out, P] @ [P, W]``; with per-sample weights each path
   is one ``bmm`` ``[B, d_out, U * V] @ [B, U * V, W]`` (the large weight tensor is read in place, never
   copied). ``uvu`` paths multiply by ``w [.., U, V]`` and sum over ``V``.

Gradients and double gradients come from autograd. Work is chunked over the batch to bound temporaries
(about ``CHUNK_ELEMENTS`` elements of ``t``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from mlip.kernels.tensor_product import blocks as per_block
from mlip.kernels.tensor_product import formulation, fused, sides
from mlip.kernels.tensor_product.descriptor import TPDescriptor, wigner_block
from mlip.kernels.tensor_product.formulation import Formulation, Problem
from mlip.o3 import Irreps, cached_constant

CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class Run:
    """Consecutive paths of a group with one output dimension ``dim`` and consecutive weights: ``P``
    paths, ``P * dim`` message rows ordered ``(m, p)`` (component ``m`` of path ``p`` is row
    ``m * P + p``); ``weight_start`` is the first weight column (``-1``: unweighted paths)."""

    dim: int
    paths: tuple[int, ...]  # instruction indices in row order
    weight_start: int

    @property
    def width(self) -> int:
        return self.dim * len(self.paths)


@dataclass(frozen=True)
class Group:
    """Paths whose ``in1`` blocks share multiplicity ``mul``, as runs."""

    mul: int
    in1_blocks: tuple[int, ...]
    runs: tuple[Run, ...]
    bmms: tuple[int, ...]  # runs per bmm, in order (see _bmm_sizes)

    @property
    def width(self) -> int:  # K: summed output dimensions of the paths
        return sum(r.width for r in self.runs)


def _runs(desc: TPDescriptor, paths: list[int], mul: int) -> tuple[Run, ...]:
    """Paths sorted by (output dimension, weighted first, weight offset), cut where the dimension, the
    weighting or the weight contiguity changes."""

    def key(n: int) -> tuple:
        ins = desc.instructions[n]
        return (desc.irreps_out[ins.i_out].ir.dim, not ins.has_weight, ins.weight_offset, n)

    runs: list[list[int]] = []
    for n in sorted(paths, key=key):
        if runs:
            last = desc.instructions[runs[-1][-1]]
            ins = desc.instructions[n]
            same_dim = desc.irreps_out[last.i_out].ir.dim == desc.irreps_out[ins.i_out].ir.dim
            weights_follow = (
                ins.weight_offset == last.weight_offset + mul if ins.has_weight else not last.has_weight
            )
            if same_dim and last.has_weight == ins.has_weight and weights_follow:
                runs[-1].append(n)
                continue
        runs.append([n])
    return tuple(
        Run(
            desc.irreps_out[desc.instructions[r[0]].i_out].ir.dim,
            tuple(r),
            desc.instructions[r[0]].weight_offset if desc.instructions[r[0]].has_weight else -1,
        )
        for r in runs
    )


@functools.cache
def plan(desc: TPDescriptor) -> tuple[Group, ...]:  # channelwise descriptors
    """Split a channelwise descriptor into groups of equal ``in1`` multiplicity, each into runs."""
    if not desc.channelwise:
        raise ValueError("the fast torch path handles channelwise (uvu, mul2 == 1) descriptors only")
    groups = []
    for mul in sorted({desc.irreps_in1[ins.i_in1].mul for ins in desc.instructions}):
        paths = [n for n, ins in enumerate(desc.instructions) if desc.irreps_in1[ins.i_in1].mul == mul]
        in1 = sorted({desc.instructions[n].i_in1 for n in paths})
        runs = _runs(desc, paths, mul)
        dim1 = sum(desc.irreps_in1[b].ir.dim for b in in1)
        groups.append(Group(mul, tuple(in1), runs, _bmm_sizes(runs, dim1 * mul)))
    return tuple(groups)


SMALL_BMM = 400  # ATen's CPU bmm takes an unvectorized loop below this many multiply-adds per sample


def _bmm_sizes(runs: tuple[Run, ...], per_row: int) -> tuple[int, ...]:
    """Runs per ``bmm``: one each (separate outputs: no split, whose backward is a slow ``cat`` along
    the rows), except that consecutive runs are merged until a ``bmm`` has ``SMALL_BMM`` multiply-adds
    per sample (``per_row = D1 * U`` per message row)."""
    sizes, rows = [], SMALL_BMM
    for run in runs:
        if rows >= SMALL_BMM:
            sizes.append(0)
            rows = 0
        sizes[-1] += 1
        rows += run.width * per_row
    if len(sizes) > 1 and rows < SMALL_BMM:  # a small last one joins the one before
        sizes[-2] += sizes.pop()
    return tuple(sizes)


def _coupling(desc: TPDescriptor, g: Group, runs: tuple[Run, ...]) -> torch.Tensor:
    """``G [dim2, K * D1]`` (float64): ``coef * wigner_3j`` of the paths of ``runs`` (of group ``g``),
    ``(k, i)`` row-major; within a run, row ``m * P + p`` is component ``m`` of its path ``p``."""
    in1_dims = [desc.irreps_in1[b].ir.dim for b in g.in1_blocks]
    row0 = [sum(in1_dims[:n]) for n in range(len(in1_dims))]
    s2 = desc.irreps_in2.slices()
    table = torch.zeros(desc.irreps_in2.dim, sum(r.width for r in runs), sum(in1_dims), dtype=torch.float64)
    start = 0
    for run in runs:
        for p, n in enumerate(run.paths):
            ins = desc.instructions[n]
            cg = wigner_block(ins, desc, torch.float64, torch.device("cpu"))  # [d1, d2, do]
            r = row0[g.in1_blocks.index(ins.i_in1)]
            rows = slice(start + p, start + run.width, len(run.paths))
            table[s2[ins.i_in2], rows, r : r + cg.shape[0]] = cg.permute(1, 2, 0)
        start += run.width
    return table.reshape(desc.irreps_in2.dim, -1)


def _weight_pieces(desc: TPDescriptor) -> tuple[list[int], dict[int, int]]:
    """Split sizes of the weight vector into the runs' column ranges (and the gaps between them) and the
    piece of each weighted run's first column: one ``split``, whose backward writes the weight gradient
    in one pass (a slice per run would zero-fill a whole-size gradient each)."""
    starts = sorted(
        (r.weight_start, len(r.paths) * g.mul) for g in plan(desc) for r in g.runs if r.weight_start >= 0
    )
    sizes, piece, col = [], {}, 0
    for start, numel in starts:
        if start > col:
            sizes.append(start - col)
        piece[start] = len(sizes)
        sizes.append(numel)
        col = start + numel
    if desc.weight_numel > col:
        sizes.append(desc.weight_numel - col)
    return sizes, piece


def group_weights(desc: TPDescriptor, weight: torch.Tensor | None) -> list[list[torch.Tensor | None]]:
    """Per group and run, the run's weights as a view ``[B, P, U]`` (per sample) or ``[P, U]`` (shared)
    of ``weight`` (``[B, numel]`` or ``[numel]``); ``None`` for unweighted runs."""
    groups = plan(desc)
    if weight is None:
        return [[None] * len(g.runs) for g in groups]
    sizes, piece = _weight_pieces(desc)
    parts = weight.split(sizes, dim=-1)
    lead = weight.shape[:-1]
    return [
        [
            parts[piece[r.weight_start]].view(*lead, len(r.paths), g.mul) if r.weight_start >= 0 else None
            for r in g.runs
        ]
        for g in groups
    ]


def to_channels(x: torch.Tensor, desc: TPDescriptor, g: Group) -> torch.Tensor:
    """e3nn layout ``[B, dim1]`` -> channels-last ``[B, D1, U]`` for the group's ``in1`` blocks."""
    # one split, not a slice per block: a slice's backward zero-fills a gradient of the whole of x
    columns = x.split([mi.dim for mi in desc.irreps_in1], dim=1)
    parts = [
        columns[b].view(x.shape[0], g.mul, desc.irreps_in1[b].ir.dim).transpose(1, 2) for b in g.in1_blocks
    ]
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0].contiguous()


def from_channels(
    zs: list[torch.Tensor], desc: TPDescriptor, g: Group, blocks: dict[int, torch.Tensor]
) -> None:
    """Add the group's per-run outputs ``[B, K, U]`` (rows ``(m, p)``) into the e3nn-layout output
    blocks ``{i_out: [B, U * d]}`` (paths sharing a block are summed)."""
    for run, z in zip(g.runs, zs, strict=True):
        batch, paths = z.shape[0], len(run.paths)
        z = z.view(batch, run.dim, paths, g.mul).permute(0, 2, 3, 1).reshape(batch, paths, g.mul * run.dim)
        for n, piece in zip(run.paths, z.unbind(1), strict=True):
            o = desc.instructions[n].i_out
            blocks[o] = piece if o not in blocks else blocks[o] + piece


def to_out_channels(z: torch.Tensor, desc: TPDescriptor, g: Group) -> list[torch.Tensor]:
    """An e3nn-layout output gradient ``[B, dim_out]`` -> per run ``[B, K, U]`` (the adjoint of
    :func:`from_channels`)."""
    columns = z.split([mi.dim for mi in desc.irreps_out], dim=1)
    out = []
    for run in g.runs:
        parts = [columns[desc.instructions[n].i_out].view(z.shape[0], g.mul, run.dim) for n in run.paths]
        out.append(torch.stack(parts, dim=1).permute(0, 3, 1, 2).reshape(z.shape[0], run.width, g.mul))
    return out


def from_in_channels(xcs: list[torch.Tensor], desc: TPDescriptor, groups: tuple[Group, ...]) -> torch.Tensor:
    """Per-group ``[B, D1, U]`` tensors -> e3nn-layout ``[B, dim1]`` (the inverse of :func:`to_channels`
    over all groups; ``in1`` blocks no group reads are zero)."""
    blocks: dict[int, torch.Tensor] = {}
    batch = xcs[0].shape[0]
    for g, xc in zip(groups, xcs, strict=True):
        pieces = xc.split([desc.irreps_in1[b].ir.dim for b in g.in1_blocks], dim=1)
        for b, piece in zip(g.in1_blocks, pieces, strict=True):
            blocks[b] = piece.transpose(1, 2).reshape(batch, -1)
    return _concat_blocks(desc.irreps_in1, blocks, batch, xcs[0])


def _concat_blocks(
    irreps: Irreps, blocks: dict[int, torch.Tensor], batch: int, like: torch.Tensor
) -> torch.Tensor:
    """Concatenate e3nn-layout blocks in order into ``[B, irreps.dim]`` (zeros for missing blocks)."""
    parts = [blocks[b] if b in blocks else like.new_zeros(batch, mi.dim) for b, mi in enumerate(irreps)]
    return torch.cat(parts, dim=1) if parts else like.new_zeros(batch, 0)


def messages(
    desc: TPDescriptor,
    g: Group,
    xc: torch.Tensor,
    y: torch.Tensor,
    weights: list[torch.Tensor | None],
) -> list[torch.Tensor]:
    """Per-sample products of one group: ``xc [B, D1, U]`` (:func:`to_channels`), ``y [B, dim2]``, the
    run weights of :func:`group_weights` (``[B, P, U]``, shared ``[P, U]`` or ``None``) -> per run
    ``[B, K, U]``, rows ``(m, p)``: a GEMM and a ``bmm`` per run (small runs share one, see
    :func:`_bmm_sizes`), then the weights broadcast over ``m``, the innermost ``P * U`` elements
    contiguous in both operands."""
    batch, dtype, device = xc.shape[0], xc.dtype, xc.device
    parts: list[torch.Tensor] = []
    first = 0
    for size in g.bmms:
        runs = g.runs[first : first + size]
        key = ("tp_fast_coupling", desc, g, first)
        coupling = cached_constant(key, lambda runs=runs: _coupling(desc, g, runs), dtype, device)
        t = torch.bmm((y @ coupling).view(batch, sum(r.width for r in runs), xc.shape[1]), xc)
        parts.extend(t.split([run.width for run in runs], dim=1) if size > 1 else [t])
        first += size
    out = []
    for run, part, w in zip(g.runs, parts, weights, strict=True):
        if w is not None:
            shape = (batch, run.dim, len(run.paths), g.mul)
            part = (part.view(shape) * w.unsqueeze(-3)).view(batch, run.width, g.mul)
        out.append(part)
    return out


def chunk_sizes(total: int, step: int) -> list[int]:
    """Sizes of consecutive chunks of at most ``step`` rows covering ``total`` (at least one chunk, so
    an empty batch still builds an autograd graph). Callers ``torch.split`` by them: the backward of a
    split writes each gradient once, while slicing in a loop fills a whole-size zero gradient per chunk
    (quadratic in the batch). A symbolic ``total`` (export / ``make_fx`` tracing with dynamic shapes) is
    one chunk: a Python loop over it would fix the traced graph to one batch size."""
    if isinstance(total, torch.SymInt):
        return [total]
    return [min(step, total - s) for s in range(0, total, step)] or [0]


def split_weights(weight: torch.Tensor | None, sizes: list[int]) -> list[torch.Tensor | None]:
    """Per-chunk weights: per-sample ``[B, ...]`` split by ``sizes``; shared (no batch dimension,
    ``shared=True``) or ``None`` repeated."""
    if weight is None or weight.dim() == 1:
        return [weight] * len(sizes)
    return list(weight.split(sizes))


def batch_chunks(
    sizes: list[int], x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """``(x, y, weight)`` per chunk of ``sizes`` rows (:func:`chunk_sizes`); for a single chunk the
    tensors themselves, unsplit (the backward of a split copies each gradient once more).
    """
    if len(sizes) == 1:
        return [(x, y, weight)]
    return list(zip(x.split(sizes), y.split(sizes), split_weights(weight, sizes), strict=True))


def split_run_weights(
    weights: list[torch.Tensor | None], sizes: list[int]
) -> list[list[torch.Tensor | None]]:
    """Per chunk, the runs' weights of one group (:func:`group_weights`): per-sample ``[B, P, U]`` split
    by ``sizes``, shared ``[P, U]`` and ``None`` repeated."""
    per_run = [list(w.split(sizes)) if w is not None and w.dim() == 3 else [w] * len(sizes) for w in weights]
    return [list(chunk) for chunk in zip(*per_run, strict=True)] if per_run else [[] for _ in sizes]


def chunks(total: int, g: Group) -> list[int]:
    """Batch chunk sizes bounding the ``[chunk, K, U]`` temporaries to about ``CHUNK_ELEMENTS``."""
    return chunk_sizes(total, max(1, CHUNK_ELEMENTS // max(1, g.mul * g.width)))


def assemble(
    desc: TPDescriptor, blocks: dict[int, torch.Tensor], batch: int, like: torch.Tensor
) -> torch.Tensor:
    """Concatenate output blocks in order (zeros for blocks no path writes)."""
    return _concat_blocks(desc.irreps_out, blocks, batch, like)


def tensor_product_channelwise(
    desc: TPDescriptor, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None
) -> torch.Tensor:
    """:func:`tensor_product_fast` of a channelwise descriptor (grouped formulation)."""
    batch = x.shape[0]
    blocks: dict[int, torch.Tensor] = {}
    for g, weights in zip(plan(desc), group_weights(desc, weight), strict=True):
        xc = to_channels(x, desc, g)
        sizes = chunks(batch, g)
        parts = [
            messages(desc, g, xs, ys, ws)
            for xs, ys, ws in zip(
                xc.split(sizes), y.split(sizes), split_run_weights(weights, sizes), strict=True
            )
        ]
        zs = [p[0] if len(parts) == 1 else torch.cat(p, dim=0) for p in zip(*parts, strict=True)]
        from_channels(zs, desc, g, blocks)
    return assemble(desc, blocks, batch, x)


# ------------------------------------------------------------------------------- general descriptors
@dataclass(frozen=True)
class Pair:
    """The paths reading ``in1[i_in1]`` and ``in2[i_in2]``; ``columns[n]`` is path ``paths[n]``'s first
    column in the pair's coupling matrix, ``width`` (``K``) their summed output dimensions."""

    i_in1: int
    i_in2: int
    paths: tuple[int, ...]
    columns: tuple[int, ...]
    width: int


@functools.cache
def pair_plan(desc: TPDescriptor) -> tuple[Pair, ...]:
    """Group the instructions by input pair (first-appearance order)."""
    by_pair: dict[tuple[int, int], list[int]] = {}
    for n, ins in enumerate(desc.instructions):
        by_pair.setdefault((ins.i_in1, ins.i_in2), []).append(n)
    pairs = []
    for (i1, i2), paths in by_pair.items():
        dims = [desc.irreps_out[desc.instructions[n].i_out].ir.dim for n in paths]
        columns = tuple(sum(dims[:k]) for k in range(len(dims)))
        pairs.append(Pair(i1, i2, tuple(paths), columns, sum(dims)))
    return tuple(pairs)


def _pair_coupling(desc: TPDescriptor, pair: Pair) -> torch.Tensor:
    """``G [d2, d1 * K]`` (float64): ``coef * wigner_3j`` of every path of the pair, side by side in ``K``."""
    blocks = [
        wigner_block(desc.instructions[n], desc, torch.float64, torch.device("cpu")) for n in pair.paths
    ]
    table = torch.cat([b.permute(1, 0, 2) for b in blocks], dim=2)  # [d2, d1, K]
    return table.reshape(table.shape[0], -1)


def _pair_products(desc: TPDescriptor, pair: Pair, x1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
    """``t [B, U * V, K]`` of the pair's blocks ``x1 [B, U * d1]`` and ``y2 [B, V * d2]``, rows ``(u, v)``
    row-major: ``A = y2 @ G`` (``[B, V, d1, K]``), then ``t = bmm(x1 [B, U, d1], A [B, d1, V * K])``."""
    (mul1, ir1), (mul2, ir2) = desc.irreps_in1[pair.i_in1], desc.irreps_in2[pair.i_in2]
    batch = x1.shape[0]
    coupling = cached_constant(
        ("tp_fast_pair", desc, pair), lambda: _pair_coupling(desc, pair), x1.dtype, x1.device
    )
    a = (y2.reshape(batch * mul2, ir2.dim) @ coupling).view(batch, mul2, ir1.dim, pair.width)
    a = a.transpose(1, 2).reshape(batch, ir1.dim, mul2 * pair.width)  # a view when mul2 == 1
    t = torch.bmm(x1.reshape(batch, mul1, ir1.dim), a)
    return t.view(batch, mul1 * mul2, pair.width)


def tensor_product_pairs(
    desc: TPDescriptor, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None
) -> torch.Tensor:
    """:func:`tensor_product_fast` of any descriptor (pair/GEMM formulation, see the module docstring)."""
    batch = x.shape[0]
    # one split per operand: the backward of a split writes each input gradient in a single pass
    xs = torch.split(x, [mi.dim for mi in desc.irreps_in1], dim=1)
    ys = torch.split(y, [mi.dim for mi in desc.irreps_in2], dim=1)
    weights = per_block.path_weights(desc, weight)
    products: dict[int, torch.Tensor] = {}  # path -> [B, U * V, d_out]
    for pair in pair_plan(desc):
        t = _pair_products(desc, pair, xs[pair.i_in1], ys[pair.i_in2])
        for p, col in zip(pair.paths, pair.columns, strict=True):
            d = desc.irreps_out[desc.instructions[p].i_out].ir.dim
            products[p] = t[:, :, col : col + d]
    blocks: dict[int, torch.Tensor] = {}
    for o, (mul_out, ir_out) in enumerate(desc.irreps_out):
        paths = [p for p, ins in enumerate(desc.instructions) if ins.i_out == o]
        fully = [p for p in paths if desc.instructions[p].mode == "uvw"]
        total = None
        if fully and weight.dim() == 1:  # shared: one GEMM [B * d, P] @ [P, W] over the stacked paths
            t = torch.cat([products[p] for p in fully], dim=1)
            w = torch.cat([weights[p] for p in fully], dim=0)
            # one copy to [B * d, P] and a GEMM: matmul of the transposed view would run a bmm against
            # weights expanded over the batch (2x slower, benchmarks/notes/tp_cpu_profile.md)
            t = t.transpose(1, 2).reshape(batch * ir_out.dim, t.shape[1])
            total = (t @ w).view(batch, ir_out.dim, mul_out).transpose(1, 2)  # [B, W, d]
        elif fully:  # per sample: one bmm [B, d, UV] @ [B, UV, W] per path (no copy of the weights)
            total = sum(torch.bmm(products[p].transpose(1, 2), weights[p]) for p in fully).transpose(1, 2)
        for p in paths:
            ins = desc.instructions[p]
            if ins.mode == "uvw":
                continue
            t = products[p].reshape(batch, *ins.path_shape, ir_out.dim)
            if ins.has_weight:
                t = t * weights[p].unsqueeze(-1)
            value = t.sum(dim=2)
            total = value if total is None else total + value
        if total is not None:
            blocks[o] = total.reshape(batch, mul_out * ir_out.dim)
    return assemble(desc, blocks, batch, x)


def _pairs_cost(desc: TPDescriptor, prob: Problem) -> float:
    """Estimated forward seconds of :func:`tensor_product_pairs` (:mod:`formulation`'s primitives)."""
    b, item = prob.batch, prob.item
    total = elementwise_out = 0.0
    for pair in pair_plan(desc):
        (mul1, ir1), (mul2, ir2) = desc.irreps_in1[pair.i_in1], desc.irreps_in2[pair.i_in2]
        total += formulation.gemm(b * mul2, ir1.dim * pair.width, ir2.dim, item)
        if mul2 > 1:
            total += formulation.elementwise(b * mul2 * ir1.dim * pair.width, item, 2)
        total += formulation.bmm(b, mul1, mul2 * pair.width, ir1.dim, item)
    for o, (mul_out, ir_out) in enumerate(desc.irreps_out):
        paths = [p for p, ins in enumerate(desc.instructions) if ins.i_out == o]
        uv = [
            math.prod(desc.instructions[p].path_shape[:2])
            for p in paths
            if desc.instructions[p].mode == "uvw"
        ]
        if uv and prob.shared:  # cat, transposing copy, one GEMM
            total += 2 * formulation.elementwise(b * sum(uv) * ir_out.dim, item, 2)
            total += formulation.gemm(b * ir_out.dim, mul_out, sum(uv), item)
        for n in uv if not prob.shared else ():
            total += formulation.bmm(b, ir_out.dim, mul_out, n, item)
        for p in paths:
            if desc.instructions[p].mode == "uvu":
                total += 2 * formulation.elementwise(
                    b * math.prod(desc.instructions[p].path_shape) * ir_out.dim, item
                )
        elementwise_out += b * mul_out * ir_out.dim
    return total + formulation.elementwise(int(elementwise_out), item, 2)


def _blocks_cost(grouping: str):
    def cost(desc: TPDescriptor, prob: Problem) -> float:
        """Estimated forward seconds of :func:`per_block.tensor_product_blocks` with this grouping."""
        b, item = prob.batch, prob.item
        total = formulation.elementwise(b * desc.irreps_out.dim, item, 2)
        for g in per_block.block_plan(desc, grouping):
            if len(g.in1_blocks) > 1:
                total += formulation.elementwise(b * g.mul * g.dim, item, 2)
            rows = [(desc.irreps_out[k], len(paths)) for k, paths in g.outputs]
            total += formulation.gemm(
                b, sum(mi.ir.dim * n * g.dim for mi, n in rows), desc.irreps_in2.dim, item
            )
            for (mul_out, ir_out), n in rows:
                total += per_block.couple_cost(b, ir_out.dim * n, g.dim, g.mul, item)
                if prob.shared:
                    total += formulation.gemm(b * ir_out.dim, mul_out, n * g.mul, item)
                else:
                    total += n * formulation.bmm(b, ir_out.dim, mul_out, g.mul, item)
        return total

    return cost


SIDES_CHUNK_BYTES = 1 << 22


def tensor_product_sides_chunked(
    desc: TPDescriptor, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None, stack: bool = False
) -> torch.Tensor:
    """:func:`sides.tensor_product_sides` over batch chunks whose input or output takes at most about
    ``SIDES_CHUNK_BYTES``: cache-sized temporaries, none of them large enough for the allocator to map
    fresh pages (and pay their page faults) on every call."""
    width = max(desc.irreps_in1.dim, desc.irreps_out.dim) * x.element_size()
    sizes = chunk_sizes(x.shape[0], max(256, SIDES_CHUNK_BYTES // width))
    chunks = batch_chunks(sizes, x, y, weight)
    parts = [sides.tensor_product_sides(desc, xs, ys, w, stack=stack) for xs, ys, w in chunks]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)


GENERAL_FORMULATIONS: dict[str, Formulation] = {
    "pairs": Formulation("pairs", tensor_product_pairs, lambda desc: True, _pairs_cost),
    **{
        name: Formulation(
            name,
            functools.partial(per_block.tensor_product_blocks, grouping=name),
            per_block.supports,
            _blocks_cost(name),
        )
        for name in per_block.GROUPINGS
    },
    "sides": Formulation("sides", tensor_product_sides_chunked, sides.supports, sides.cost),
    "sides_stacked": Formulation(
        "sides_stacked",
        functools.partial(tensor_product_sides_chunked, stack=True),
        sides.supports_stacked,
        functools.partial(sides.cost, stack=True),
    ),
    "fused": Formulation(
        "fused",
        functools.partial(fused.tensor_product_fused, fallback=tensor_product_sides_chunked),
        sides.supports,
        fused.cost,
        fused.applies,
    ),
}


def tensor_product_general(
    desc: TPDescriptor, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None
) -> torch.Tensor:
    """:func:`tensor_product_fast` of any descriptor, in the formulation
    :func:`~mlip.kernels.tensor_product.formulation.choose` picks among :data:`GENERAL_FORMULATIONS`
    (``pairs``; when every ``in2`` block has multiplicity 1 also ``blocks``, ``mul_groups``, ``sides``,
    ``sides_stacked`` and, on the eager CPU calls where :func:`fused.applies`, the compiled ``fused``),
    for this pass (forward, or forward + backward when a graph is recorded)."""
    chosen = formulation.choose("general", GENERAL_FORMULATIONS, desc, x, weight, y)
    return chosen.run(desc, x, y, weight)


def general_chunks(desc: TPDescriptor, total: int) -> list[int]:
    """Batch chunk sizes bounding the ``[chunk, U * V, K]`` temporaries to about ``CHUNK_ELEMENTS``."""
    widest = max(
        (desc.irreps_in1[p.i_in1].mul * desc.irreps_in2[p.i_in2].mul * p.width for p in pair_plan(desc)),
        default=1,
    )
    return chunk_sizes(total, max(1, CHUNK_ELEMENTS // widest))


def tensor_product_fast(
    desc: TPDescriptor, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None
) -> torch.Tensor:
    """Same contract as :func:`~mlip.kernels.tensor_product.reference.tensor_product_reference`:
    the grouped formulation for channelwise descriptors, the pair/GEMM one otherwise."""
    if desc.channelwise:
        return tensor_product_channelwise(desc, x, y, weight)
    sizes = general_chunks(desc, x.shape[0])
    parts = [tensor_product_general(desc, xs, ys, w) for xs, ys, w in batch_chunks(sizes, x, y, weight)]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
