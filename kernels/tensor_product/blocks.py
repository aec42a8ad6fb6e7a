"""The per-output-block formulation of a tensor product whose ``in2`` blocks all have multiplicity 1
(``uvw`` on edge harmonics, mixed with ``uvu``): few, large GEMMs and no ``[B, U * V, K]`` products.

Per *group* of ``in1`` blocks sharing a multiplicity ``U`` (``D1`` their summed irrep dimensions) and per
output block ``k`` (``d`` its irrep dimension) fed by ``P`` paths of the group:

1. ``A = y @ G``: one small GEMM for the group, ``G [dim2, Σ_k d * P * D1]`` holding ``coef * wigner_3j``
   of every path, rows ordered ``(m, p)`` (output component, then path): ``A_k [B, d * P, D1]``.
2. ``t = A_k @ xᵀ`` per sample: ``[B, d * P, D1] @ [B, D1, U] -> [B, d * P, U] = [B, d, P * U]``, a
   ``bmm``, a broadcast product when ``D1 == 1``, or a broadcast product summed over ``D1`` when the
   ``bmm`` would be tiny (``d * P * D1 * U < BMM_MIN``: ATen's scalar batched kernel, tens of times
   slower; the same product size decides every ``bmm`` of the backward passes).
3. Shared ``uvw`` weights: ``t.view(B * d, P * U) @ W_stack [P * U, W]``, one GEMM over every path of
   the block (the ``(m, p)`` row order makes the ``P * U`` columns contiguous); per-sample weights: one
   ``bmm`` per path; ``uvu`` paths: ``t_p * w``.
4. Each output block ``[B, d, W]`` is transposed to e3nn's ``[B, W * d]`` in the final ``cat``.

Groups are single ``in1`` blocks (``"blocks"``: no zero work) or all blocks of one multiplicity
(``"mul_groups"``: fewer, larger ops; ``A`` is zero outside each path's own ``in1`` rows). Which is faster
depends on the shape and the CPU (:mod:`mlip.kernels.tensor_product.formulation` chooses).
Gradients of every order come from autograd.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from mlip.kernels.tensor_product import formulation
from mlip.kernels.tensor_product.descriptor import TPDescriptor, wigner_block
from mlip.o3 import cached_constant

# below this product size (rows * contraction * columns) ATen's CPU bmm takes its scalar kernel
BMM_MIN = 400
GROUPINGS = ("blocks", "mul_groups")


@dataclass(frozen=True)
class BlockGroup:
    """``in1`` blocks of one multiplicity ``mul`` (stacked along ``D1 = dim``) and, per output block they
    feed, ``(i_out, paths)`` in row order."""

    mul: int
    in1_blocks: tuple[int, ...]
    dim: int
    outputs: tuple[tuple[int, tuple[int, ...]], ...]


def supports(desc: TPDescriptor) -> bool:
    """Every path reads an ``in2`` block of multiplicity 1."""
    return all(desc.irreps_in2[ins.i_in2].mul == 1 for ins in desc.instructions)


@functools.cache
def block_plan(desc: TPDescriptor, grouping: str) -> tuple[BlockGroup, ...]:
    """The groups of :func:`tensor_product_blocks` (``grouping`` one of :data:`GROUPINGS`)."""
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping must be one of {GROUPINGS}, got {grouping!r}")
    used = sorted({ins.i_in1 for ins in desc.instructions})
    if grouping == "blocks":
        members = [(b,) for b in used]
    else:
        muls = sorted({desc.irreps_in1[b].mul for b in used})
        members = [tuple(b for b in used if desc.irreps_in1[b].mul == m) for m in muls]
    groups = []
    for blocks in members:
        outputs = []
        for k in range(len(desc.irreps_out)):
            paths = tuple(
                p for p, ins in enumerate(desc.instructions) if ins.i_out == k and ins.i_in1 in blocks
            )
            if paths:
                outputs.append((k, paths))
        dim = sum(desc.irreps_in1[b].ir.dim for b in blocks)
        groups.append(BlockGroup(desc.irreps_in1[blocks[0]].mul, blocks, dim, tuple(outputs)))
    return tuple(groups)


def _coupling(desc: TPDescriptor, g: BlockGroup) -> torch.Tensor:
    """``G [dim2, Σ_k d * P * D1]`` (float64), per output block rows ``(m, p)`` and columns ``D1``."""
    dims = [desc.irreps_in1[b].ir.dim for b in g.in1_blocks]
    row0 = {b: sum(dims[:n]) for n, b in enumerate(g.in1_blocks)}
    s2 = desc.irreps_in2.slices()
    tables = []
    for k, paths in g.outputs:
        table = torch.zeros(
            desc.irreps_in2.dim, desc.irreps_out[k].ir.dim, len(paths), g.dim, dtype=torch.float64
        )
        for n, p in enumerate(paths):
            ins = desc.instructions[p]
            cg = wigner_block(ins, desc, torch.float64, torch.device("cpu"))  # [d1, d2, d]
            r = row0[ins.i_in1]
            table[s2[ins.i_in2], :, n, r : r + cg.shape[0]] = cg.permute(1, 2, 0)
        tables.append(table.reshape(desc.irreps_in2.dim, -1))
    return torch.cat(tables, dim=1)


def path_weights(desc: TPDescriptor, weight: torch.Tensor | None) -> list[torch.Tensor | None]:
    """Per path: weights ``[(B,) U * V, W]`` (``uvw``), ``[(B,) U, V]`` (``uvu``) or ``None`` (unweighted).

    One ``split`` rather than a slice per path: its backward writes the weight gradient in one pass.
    """
    if weight is None:
        return [None] * len(desc.instructions)
    parts = torch.split(weight, [ins.weight_numel for ins in desc.instructions], dim=-1)
    lead = weight.shape[:-1]
    out: list[torch.Tensor | None] = []
    for ins, w in zip(desc.instructions, parts, strict=True):
        s = ins.path_shape
        shape = (s[0] * s[1], s[2]) if ins.mode == "uvw" else s
        out.append(w.reshape(*lead, *shape) if ins.has_weight else None)
    return out


def couple(a: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
    """``a [B, R, D1] @ xt [B, D1, U] -> [B, R, U]``, avoiding ATen's scalar kernel for tiny products."""
    rows, inner, cols = a.shape[1], a.shape[2], xt.shape[2]
    if inner == 1:
        return a * xt
    if rows * inner * cols >= BMM_MIN:
        return torch.bmm(a, xt)
    return (a.unsqueeze(3) * xt.unsqueeze(1)).sum(2)  # [B, R, D1, U]: under BMM_MIN elements per sample


def couple_cost(batch: int, rows: int, inner: int, cols: int, item: int) -> float:
    """Estimated seconds of :func:`couple` on ``[B, rows, inner] @ [B, inner, cols]``
    (:mod:`~mlip.kernels.tensor_product.formulation`'s primitives; ``item`` bytes per element)."""
    if inner == 1:
        return formulation.elementwise(batch * rows * cols, item)
    if rows * inner * cols >= BMM_MIN:
        return formulation.bmm(batch, rows, cols, inner, item)
    return 2 * formulation.elementwise(batch * rows * inner * cols, item)


def tensor_product_blocks(
    desc: TPDescriptor, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None, grouping: str
) -> torch.Tensor:
    """The tensor product (contract of
    :func:`~mlip.kernels.tensor_product.reference.tensor_product_reference`) in the per-output-block
    formulation (module docstring); ``desc`` must satisfy :func:`supports`."""
    batch = x.shape[0]
    xs = torch.split(x, [mi.dim for mi in desc.irreps_in1], dim=1)
    weights = path_weights(desc, weight)
    shared = weight is not None and weight.dim() == 1
    acc: dict[int, torch.Tensor] = {}  # output block -> [B, d, mul]
    for g in block_plan(desc, grouping):
        parts = [xs[b].view(batch, g.mul, desc.irreps_in1[b].ir.dim).transpose(1, 2) for b in g.in1_blocks]
        xt = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # [B, D1, U]
        coupling = cached_constant(
            ("tp_blocks", desc, grouping, g), lambda g=g: _coupling(desc, g), x.dtype, x.device
        )
        sizes = [desc.irreps_out[k].ir.dim * len(paths) * g.dim for k, paths in g.outputs]
        for (k, paths), a in zip(g.outputs, (y @ coupling).split(sizes, dim=1), strict=True):
            mul_out, ir_out = desc.irreps_out[k]
            d, npaths = ir_out.dim, len(paths)
            t = couple(a.view(batch, d * npaths, g.dim), xt)  # [B, d * P, U]
            modes = {desc.instructions[p].mode for p in paths}
            if shared and modes == {"uvw"}:
                w = torch.cat([weights[p] for p in paths]) if npaths > 1 else weights[paths[0]]
                total = (t.reshape(batch * d, npaths * g.mul) @ w).view(batch, d, mul_out)
            else:
                total = None
                for p, tp in zip(paths, t.view(batch, d, npaths, g.mul).unbind(2), strict=True):
                    ins, w = desc.instructions[p], weights[p]
                    if ins.mode == "uvw":
                        value = tp @ w if shared else torch.bmm(tp, w)
                    elif w is None:
                        value = tp
                    else:  # uvu with mul2 == 1: w [(B,) U, 1]
                        value = tp * (w.view(-1) if shared else w.view(batch, 1, w.shape[1]))
                    total = value if total is None else total + value
            acc[k] = total if k not in acc else acc[k] + total
    parts = [
        acc[k].transpose(1, 2).reshape(batch, mi.dim) if k in acc else x.new_zeros(batch, mi.dim)
        for k, mi in enumerate(desc.irreps_out)
    ]
    return torch.cat(parts, dim=1) if parts else x.new_zeros(batch, 0)
