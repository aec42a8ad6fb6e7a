"""Fast pure-torch tensor product: a grouped formulation for channelwise descriptors and a GEMM one for
the rest (``uvw``, ``uvu`` with ``mul2 > 1``, mixtures).

Channelwise (``uvu``, ``mul2 == 1``) formulation, per group of ``in1`` blocks sharing a multiplicity
``U`` (``D1`` = their summed irrep dimensions, ``K`` = the summed output dimensions of the group's paths,
ordered by output block):

1. ``A = y @ G``: one dense GEMM of the per-sample ``y [B, dim2]`` against a precomputed coupling matrix
   ``G [dim2, D1 * K]`` holding ``coef * wigner_3j`` of every path: ``A [B, D1, K]``.
2. ``t = bmm(x [B, U, D1], A)``: all paths of the group at once, ``[B, U, K]``.
3. ``t * w`` with the per-path weights broadcast over each path's output columns (one gather), then,
   when several paths share an output block, a sum through a 0/1 reduction matrix.

This replaces e3nn's per-path outer products and einsums by three large ops.

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
from mlip.kernels.tensor_product import formulation
from mlip.kernels.tensor_product.descriptor import TPDescriptor, wigner_block
from mlip.kernels.tensor_product.formulation import Formulation, Problem
from mlip.o3 import Irreps, cached_constant

CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class Group:
    """Paths whose ``in1`` blocks share multiplicity ``mul``; columns ordered by output block."""

    mul: int
    in1_blocks: tuple[int, ...]
    out_blocks: tuple[int, ...]  # output blocks in column order
    paths: tuple[int, ...]  # instruction indices in column order
    width: int  # K: summed output dimensions of the paths
    out_width: int  # summed dimensions of out_blocks


@functools.cache
def plan(desc: TPDescriptor) -> tuple[Group, ...]:  # channelwise descriptors
    """Split a channelwise descriptor into groups of equal ``in1`` multiplicity."""
    if not desc.channelwise:
        raise ValueError("the fast torch path handles channelwise (uvu, mul2 == 1) descriptors only")
    groups = []
    muls = sorted({desc.irreps_in1[ins.i_in1].mul for ins in desc.instructions})
    for mul in muls:
        paths = [n for n, ins in enumerate(desc.instructions) if desc.irreps_in1[ins.i_in1].mul == mul]
        outs = sorted({desc.instructions[n].i_out for n in paths})
        paths.sort(key=lambda n: outs.index(desc.instructions[n].i_out))
        in1 = sorted({desc.instructions[n].i_in1 for n in paths})
        dims = [desc.irreps_out[desc.instructions[n].i_out].ir.dim for n in paths]
        out_width = sum(desc.irreps_out[o].ir.dim for o in outs)
        groups.append(Group(mul, tuple(in1), tuple(outs), tuple(paths), sum(dims), out_width))
    return tuple(groups)


def _coupling(desc: TPDescriptor, g: Group) -> torch.Tensor:
    """``G [dim2, D1 * K]`` (float64): coefficient times Wigner 3j of every path of the group."""
    in1_dims = [desc.irreps_in1[b].ir.dim for b in g.in1_blocks]
    row0 = [sum(in1_dims[:n]) for n in range(len(in1_dims))]
    s2 = desc.irreps_in2.slices()
    table = torch.zeros(desc.irreps_in2.dim, sum(in1_dims), g.width, dtype=torch.float64)
    col = 0
    for n in g.paths:
        ins = desc.instructions[n]
        cg = wigner_block(ins, desc, torch.float64, torch.device("cpu"))  # [d1, d2, do]
        r = row0[g.in1_blocks.index(ins.i_in1)]
        table[s2[ins.i_in2], r : r + cg.shape[0], col : col + cg.shape[2]] = cg.permute(1, 0, 2)
        col += cg.shape[2]
    return table.reshape(desc.irreps_in2.dim, -1)


def _weight_index(desc: TPDescriptor, g: Group) -> torch.Tensor:
    """``[U * K]`` columns into ``[weights, 1]`` giving each ``(u, k)`` its path weight."""
    unweighted = desc.weight_numel
    cols = []
    for n in g.paths:
        ins = desc.instructions[n]
        u = torch.arange(g.mul)
        col = ins.weight_offset + u if ins.has_weight else torch.full((g.mul,), unweighted)
        cols.append(col[:, None].expand(g.mul, desc.irreps_out[ins.i_out].ir.dim))
    return torch.cat(cols, dim=1).reshape(-1)


def _reduction(desc: TPDescriptor, g: Group) -> torch.Tensor:
    """``[K, out_width]`` 0/1 matrix summing the paths of each output block."""
    table = torch.zeros(g.width, g.out_width, dtype=torch.float64)
    col, starts = 0, {}
    for o in g.out_blocks:
        starts[o] = col
        col += desc.irreps_out[o].ir.dim
    row = 0
    for n in g.paths:
        ins = desc.instructions[n]
        d = desc.irreps_out[ins.i_out].ir.dim
        table[row : row + d, starts[ins.i_out] : starts[ins.i_out] + d] = torch.eye(d, dtype=torch.float64)
        row += d
    return table


def _tables(desc: TPDescriptor, g: Group, dtype: torch.dtype, device: torch.device):
    coupling = cached_constant(("tp_fast_coupling", desc, g), lambda: _coupling(desc, g), dtype, device)
    index = cached_constant(("tp_fast_windex", desc, g), lambda: _weight_index(desc, g), torch.long, device)
    reduce = None
    if g.width != g.out_width:
        reduce = cached_constant(("tp_fast_reduce", desc, g), lambda: _reduction(desc, g), dtype, device)
    return coupling, index, reduce


def _stack_blocks(z: torch.Tensor, irreps: Irreps, blocks: tuple[int, ...], mul: int) -> torch.Tensor:
    """e3nn-layout ``z [B, irreps.dim]`` -> ``[B, mul, Σ d]``: the listed blocks side by side."""
    # one split, not a slice per block: a slice's backward zero-fills a gradient of the whole of z
    columns = z.split([mi.dim for mi in irreps], dim=1)
    parts = [columns[b].reshape(z.shape[0], mul, irreps[b].ir.dim) for b in blocks]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)


def _split_blocks(
    z: torch.Tensor, irreps: Irreps, blocks: tuple[int, ...], mul: int
) -> dict[int, torch.Tensor]:
    """``[B, mul, Σ d]`` -> e3nn-layout blocks ``{b: [B, mul * d]}`` (inverse of :func:`_stack_blocks`)."""
    pieces = z.split([irreps[b].ir.dim for b in blocks], dim=2)
    return {
        b: piece.reshape(z.shape[0], mul * irreps[b].ir.dim) for b, piece in zip(blocks, pieces, strict=True)
    }


def _concat_blocks(
    irreps: Irreps, blocks: dict[int, torch.Tensor], batch: int, like: torch.Tensor
) -> torch.Tensor:
    """Concatenate e3nn-layout blocks in order into ``[B, irreps.dim]`` (zeros for missing blocks)."""
    parts = [blocks[b] if b in blocks else like.new_zeros(batch, mi.dim) for b, mi in enumerate(irreps)]
    return torch.cat(parts, dim=1) if parts else like.new_zeros(batch, 0)


def to_channels(x: torch.Tensor, desc: TPDescriptor, g: Group) -> torch.Tensor:
    """e3nn layout ``[B, dim1]`` -> ``[B, U, D1]`` for the group's ``in1`` blocks."""
    return _stack_blocks(x, desc.irreps_in1, g.in1_blocks, g.mul)


def from_channels(z: torch.Tensor, desc: TPDescriptor, g: Group) -> dict[int, torch.Tensor]:
    """``[B, U, out_width]`` -> e3nn-layout blocks ``{i_out: [B, U * d]}``."""
    return _split_blocks(z, desc.irreps_out, g.out_blocks, g.mul)


def to_out_channels(z: torch.Tensor, desc: TPDescriptor, g: Group) -> torch.Tensor:
    """e3nn-layout output ``[B, dim_out]`` -> ``[B, U, out_width]`` for the group's output blocks (the
    inverse of :func:`from_channels`; used for output gradients)."""
    return _stack_blocks(z, desc.irreps_out, g.out_blocks, g.mul)


def from_in_channels(xcs: list[torch.Tensor], desc: TPDescriptor, groups: tuple[Group, ...]) -> torch.Tensor:
    """Per-group ``[B, U, D1]`` tensors -> e3nn-layout ``[B, dim1]`` (the inverse of :func:`to_channels`
    over all groups; ``in1`` blocks no group reads are zero)."""
    blocks: dict[int, torch.Tensor] = {}
    for g, xc in zip(groups, xcs, strict=True):
        blocks.update(_split_blocks(xc, desc.irreps_in1, g.in1_blocks, g.mul))
    return _concat_blocks(desc.irreps_in1, blocks, xcs[0].shape[0], xcs[0])


def extend_weights(desc: TPDescriptor, weight: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Weights with a trailing column of ones (the factor of unweighted paths): ``[B | -, numel + 1]``."""
    if weight is None:
        return like.new_ones(1)
    return torch.cat([weight, weight.new_ones(*weight.shape[:-1], 1)], dim=-1)


def messages(
    desc: TPDescriptor, g: Group, xc: torch.Tensor, y: torch.Tensor, weight_ext: torch.Tensor
) -> torch.Tensor:
    """Per-sample products of one group: ``xc [B, U, D1]``, ``y [B, dim2]``, ``weight_ext`` from
    :func:`extend_weights` (``[B, numel + 1]`` or shared ``[numel + 1]``) -> ``[B, U, out_width]``."""
    coupling, index, reduce = _tables(desc, g, xc.dtype, xc.device)
    batch = xc.shape[0]
    a = (y @ coupling).view(batch, xc.shape[2], g.width)
    t = torch.bmm(xc, a)
    if weight_ext.dim() == 1:
        w = weight_ext.index_select(0, index).view(1, g.mul, g.width)
    elif weight_ext.dtype == torch.float64:  # gather: index_select along dim 1 is slow in fp64 on CPU
        w = torch.gather(weight_ext, 1, index.expand(batch, -1)).view(batch, g.mul, g.width)
    else:  # (benchmarks/notes/tp_cpu_profile.md); in fp32 index_select was as fast or faster
        w = weight_ext.index_select(1, index).view(batch, g.mul, g.width)
    t = t * w
    return t if reduce is None else t @ reduce


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
    """Per-chunk weights: per-sample ``[B, W]`` split by ``sizes``; shared ``[W]`` or ``None`` repeated."""
    if weight is None or weight.dim() == 1:
        return [weight] * len(sizes)
    return list(weight.split(sizes))


def chunks(total: int, g: Group) -> list[int]:
    """Batch chunk sizes bounding the ``[chunk, U, K]`` temporaries to about ``CHUNK_ELEMENTS``."""
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
    weight_ext = extend_weights(desc, weight, x)
    blocks: dict[int, torch.Tensor] = {}
    for g in plan(desc):
        xc = to_channels(x, desc, g)
        sizes = chunks(batch, g)
        parts = [
            messages(desc, g, xs, ys, ws)
            for xs, ys, ws in zip(
                xc.split(sizes), y.split(sizes), split_weights(weight_ext, sizes), strict=True
            )
        ]
        z = torch.cat(parts, dim=0)
        blocks.update(from_channels(z, desc, g))
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
            t = t.transpose(1, 2).reshape(batch * ir_out.dim, -1)
            total = (t @ w).view(batch, ir_out.dim, -1).transpose(1, 2)  # [B, W, d]
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
                r = ir_out.dim * n
                if g.dim == 1 or r * g.dim * g.mul < per_block.BMM_MIN:
                    total += g.dim * formulation.elementwise(b * r * g.mul, item)
                else:
                    total += formulation.bmm(b, r, g.mul, g.dim, item)
                if prob.shared:
                    total += formulation.gemm(b * ir_out.dim, mul_out, n * g.mul, item)
                else:
                    total += n * formulation.bmm(b, ir_out.dim, mul_out, g.mul, item)
        return total

    return cost


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
}


def tensor_product_general(
    desc: TPDescriptor, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None
) -> torch.Tensor:
    """:func:`tensor_product_fast` of any descriptor, in the formulation
    :func:`~mlip.kernels.tensor_product.formulation.choose` picks among :data:`GENERAL_FORMULATIONS`
    (``pairs``; ``blocks`` and ``mul_groups`` when every ``in2`` block has multiplicity 1)."""
    chosen = formulation.choose("general", GENERAL_FORMULATIONS, desc, x, weight)
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
    parts = [
        tensor_product_general(desc, xs, ys, w)
        for xs, ys, w in zip(x.split(sizes), y.split(sizes), split_weights(weight, sizes), strict=True)
    ]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
