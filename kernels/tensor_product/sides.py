"""The ``sides`` formulation of a tensor product whose ``in2`` blocks all have multiplicity 1: each
``uvw`` path puts its weight GEMM on the smaller side of its coupling, paths with an ``l = 0`` side skip
the Clebsch-Gordan contraction, and the paths sharing an ``in1`` block share one GEMM.

Features are channels-last ``[B, d, C]`` (``d`` irrep components, ``C`` channels; each ``in1`` block is
copied once from e3nn's ``[B, U, d1]``). Path ``p``
(``in1`` block ``i`` of dimension ``d1``, ``in2`` block ``j``, output block ``k`` of dimension ``d``)
couples ``a [B, d1, C]`` with ``y_j`` by :func:`couple_path`:

- ``l2 = 0``: ``a * (s * y_j)`` (the coupling is ``s`` times the identity),
- ``l1 = 0``: ``(s * y_j) ⊗ a`` (an outer product, ``[B, d, C]``),
- ``l_out = 0``: ``s * Σ_i y_j[i] a[:, i]`` (a dot product),
- otherwise ``M @ a`` with ``M = y_j @ G_p`` ``[B, d, d1]`` (:func:`blocks.couple`),

``s`` read from the path's ``coef * wigner_3j``. Where the weight GEMM goes:

- *output side* (``d <= d1``): ``t_p = couple(x_i) [B, d, U]``, then ``[B * d, U] @ [U, W]``, the paths of
  one output block chained in ``addmm`` calls (no concatenation of the ``t_p``);
- *input side* (``d1 < d``, e.g. ``0e ⊗ 1o -> 1o``): per ``in1`` block, one GEMM
  ``x_i [B * d1, U] @ [U, Σ W]`` against the side-by-side weights of its input-side paths, then each
  path's columns are coupled into its output block: ``d1 * U * W`` multiply-adds instead of ``d * U * W``.

With ``stack=True`` (formulation ``sides_stacked``) the output-side ``general`` paths of one ``in1`` block
share one ``M = y @ G_stack [B, Σ d, d1]`` and one per-sample product (:func:`general_stacks`), each path
reading its rows: fewer tiny ``bmm`` calls (whose cost is mostly per sample and call, not per row) in every
pass, for one copy of each path's rows before its GEMM.

Per-sample weights make each GEMM one ``bmm`` per path; ``uvu`` paths multiply ``t_p`` by their weights.
Output blocks are written into e3nn's ``[B, W * d]`` at the end. Gradients of every order come from
autograd.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from mlip.kernels.tensor_product import blocks as per_block
from mlip.kernels.tensor_product import formulation
from mlip.kernels.tensor_product.descriptor import TPDescriptor, wigner_block
from mlip.kernels.tensor_product.formulation import Problem
from mlip.o3 import cached_constant

KINDS = ("x", "y", "dot", "general")  # l2 = 0, l1 = 0, l_out = 0, none of them


@dataclass(frozen=True)
class SidePath:
    """One path: its coupling ``kind`` (:data:`KINDS`) and scale, and whether its weight GEMM runs on the
    input side."""

    path: int
    kind: str
    scale: float
    input_side: bool


def supports(desc: TPDescriptor) -> bool:
    """Every path reads an ``in2`` block of multiplicity 1."""
    return per_block.supports(desc)


def supports_stacked(desc: TPDescriptor) -> bool:
    """:func:`supports`, and some ``in1`` block has two output-side ``general`` paths to stack (else
    ``stack=True`` computes exactly what ``sides`` does)."""
    return supports(desc) and bool(general_stacks(desc))


def _kind(cg: torch.Tensor) -> tuple[str, float]:
    """The coupling kind of ``cg [d1, d2, d]`` and its scale (``0.0`` for ``general``)."""
    for kind, axis in (("x", 1), ("y", 0), ("dot", 2)):
        if cg.shape[axis] == 1:
            matrix = cg.select(axis, 0)
            scale = float(matrix[0, 0])
            eye = torch.eye(matrix.shape[0], dtype=cg.dtype) if matrix.shape[0] == matrix.shape[1] else None
            if eye is not None and torch.allclose(matrix, scale * eye, rtol=0, atol=1e-12):
                return kind, scale
    return "general", 0.0


@functools.cache
def side_plan(desc: TPDescriptor) -> tuple[SidePath, ...]:
    """Per path, its :class:`SidePath` (``uvu`` and unweighted paths always on the output side)."""
    plan = []
    for p, ins in enumerate(desc.instructions):
        kind, scale = _kind(wigner_block(ins, desc, torch.float64, torch.device("cpu")))
        d1, d = desc.irreps_in1[ins.i_in1].ir.dim, desc.irreps_out[ins.i_out].ir.dim
        plan.append(SidePath(p, kind, scale, ins.mode == "uvw" and d1 < d))
    return tuple(plan)


def _coupling(desc: TPDescriptor, p: int) -> torch.Tensor:
    """``G [d2, d * d1]`` (float64) of a ``general`` path: ``G[j, m * d1 + i] = coef * C[i, j, m]``."""
    cg = wigner_block(desc.instructions[p], desc, torch.float64, torch.device("cpu"))
    return cg.permute(1, 2, 0).reshape(cg.shape[1], -1)


@functools.cache
def general_stacks(desc: TPDescriptor) -> dict[int, tuple[SidePath, ...]]:
    """Per ``in1`` block, its output-side ``general`` paths, where there are at least two."""
    stacks: dict[int, list[SidePath]] = {}
    for sp in side_plan(desc):
        if sp.kind == "general" and not sp.input_side:
            stacks.setdefault(desc.instructions[sp.path].i_in1, []).append(sp)
    return {i: tuple(paths) for i, paths in stacks.items() if len(paths) > 1}


def _stacked_coupling(desc: TPDescriptor, paths: tuple[SidePath, ...]) -> torch.Tensor:
    """``G [dim2, Σ_p d_p * d1]`` (float64): each path's :func:`_coupling` in the rows of its ``in2``
    block, the paths side by side."""
    offsets = [0]
    for mi in desc.irreps_in2:
        offsets.append(offsets[-1] + mi.dim)
    blocks = []
    for sp in paths:
        j, g = desc.instructions[sp.path].i_in2, _coupling(desc, sp.path)
        full = g.new_zeros(desc.irreps_in2.dim, g.shape[1])
        full[offsets[j] : offsets[j + 1]] = g
        blocks.append(full)
    return torch.cat(blocks, dim=1)


def couple_stack(desc: TPDescriptor, i: int, a: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """The couplings ``[B, d_p, C]`` (views of one product) of the paths ``general_stacks(desc)[i]``,
    ``a [B, d1, C]`` the ``in1`` block, ``y [B, dim2]`` all of ``in2``."""
    paths = general_stacks(desc)[i]
    coupling = cached_constant(
        ("tp_sides_stack", desc, i), lambda: _stacked_coupling(desc, paths), a.dtype, a.device
    )
    dims = [desc.irreps_out[desc.instructions[sp.path].i_out].ir.dim for sp in paths]
    m = (y @ coupling).view(a.shape[0], sum(dims), a.shape[1])
    return list(per_block.couple(m, a).split(dims, dim=1))


def couple_path(desc: TPDescriptor, sp: SidePath, a: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
    """Couple ``a [B, d1, C]`` (any strides) with ``y2 [B, d2]`` along path ``sp``: ``[B, d, C]``."""
    if sp.kind == "x":
        return a * (sp.scale * y2).unsqueeze(2)
    if sp.kind == "y":
        return (sp.scale * y2).unsqueeze(2) * a
    if sp.kind == "dot":
        return per_block.couple((sp.scale * y2).unsqueeze(1), a)
    coupling = cached_constant(
        ("tp_sides", desc, sp.path), lambda: _coupling(desc, sp.path), a.dtype, a.device
    )
    d = desc.irreps_out[desc.instructions[sp.path].i_out].ir.dim
    return per_block.couple((y2 @ coupling).view(a.shape[0], d, a.shape[1]), a)


def tensor_product_sides(
    desc: TPDescriptor, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None, stack: bool = False
) -> torch.Tensor:
    """The tensor product (contract of
    :func:`~mlip.kernels.tensor_product.reference.tensor_product_reference`) in the ``sides`` formulation
    (module docstring); ``desc`` must satisfy :func:`supports`."""
    batch = x.shape[0]
    xs = torch.split(x, [mi.dim for mi in desc.irreps_in1], dim=1)
    ys = torch.split(y, [mi.dim for mi in desc.irreps_in2], dim=1)
    weights = per_block.path_weights(desc, weight)
    shared = weight is not None and weight.dim() == 1
    features: dict[int, torch.Tensor] = {}

    def feature(i: int) -> torch.Tensor:  # in1 block i as [B, d1, U], one copy per block
        if i not in features:
            mul, ir = desc.irreps_in1[i]
            features[i] = xs[i].view(batch, mul, ir.dim).transpose(1, 2).contiguous()
        return features[i]

    def flat(t: torch.Tensor) -> torch.Tensor:  # [B, d, C] -> [B * d, C]
        return t.reshape(t.shape[0] * t.shape[1], t.shape[2])

    by_in1: dict[int, list[SidePath]] = {}
    by_out: dict[int, list[SidePath]] = {}
    for sp in side_plan(desc):
        ins = desc.instructions[sp.path]
        group = by_in1.setdefault(ins.i_in1, []) if sp.input_side else by_out.setdefault(ins.i_out, [])
        group.append(sp)

    acc: dict[int, torch.Tensor] = {}  # output block -> [B, d, mul_out]
    stacked: dict[int, torch.Tensor] = {}  # path -> its coupling, from couple_stack
    for i, paths in general_stacks(desc).items() if stack else ():
        stacked.update(zip((sp.path for sp in paths), couple_stack(desc, i, feature(i), y), strict=True))

    def add(k: int, value: torch.Tensor) -> None:
        acc[k] = value if k not in acc else acc[k] + value

    for i, paths in by_in1.items():  # input side: one GEMM per in1 block, then the couplings
        a = feature(i)
        if shared:
            ws = [weights[sp.path] for sp in paths]
            full = flat(a) @ (torch.cat(ws, dim=1) if len(ws) > 1 else ws[0])
            full = full.view(batch, a.shape[1], full.shape[1])
            products = full.split([w.shape[1] for w in ws], dim=2) if len(ws) > 1 else [full]
        else:
            products = [torch.bmm(a, weights[sp.path]) for sp in paths]
        for sp, product in zip(paths, products, strict=True):
            ins = desc.instructions[sp.path]
            add(ins.i_out, couple_path(desc, sp, product, ys[ins.i_in2]))

    for k, paths in by_out.items():  # output side: couplings, then one GEMM per path, accumulated
        mul_out, ir_out = desc.irreps_out[k]
        for sp in paths:
            ins, w = desc.instructions[sp.path], weights[sp.path]
            t = stacked.get(sp.path)
            if t is None:
                t = couple_path(desc, sp, feature(ins.i_in1), ys[ins.i_in2])
            if ins.mode == "uvw" and shared:
                product = flat(t) @ w if k not in acc else torch.addmm(flat(acc[k]), flat(t), w)
                acc[k] = product.view(batch, ir_out.dim, mul_out)
            elif ins.mode == "uvw":
                add(k, torch.bmm(t, w))
            else:  # uvu with mul2 == 1: w [(B,) U, 1]
                add(k, t if w is None else t * (w.view(-1) if shared else w.view(batch, 1, w.shape[1])))

    parts = [
        acc[k].transpose(1, 2).reshape(batch, mi.dim) if k in acc else x.new_zeros(batch, mi.dim)
        for k, mi in enumerate(desc.irreps_out)
    ]
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


def cost(desc: TPDescriptor, prob: Problem, stack: bool = False) -> float:
    """Estimated forward seconds of :func:`tensor_product_sides` (:mod:`formulation`'s primitives)."""
    b, item = prob.batch, prob.item
    stacks = general_stacks(desc) if stack else {}
    in_stack = {sp.path for paths in stacks.values() for sp in paths}
    total = formulation.elementwise(b * desc.irreps_out.dim, item, 2)  # to e3nn's layout
    copied = {ins.i_in1 for ins in desc.instructions if desc.irreps_in1[ins.i_in1].ir.dim > 1}
    total += sum(formulation.elementwise(b * desc.irreps_in1[i].dim, item, 2) for i in copied)
    for i in {desc.instructions[sp.path].i_in1 for sp in side_plan(desc) if sp.input_side}:
        paths = [sp for sp in side_plan(desc) if sp.input_side and desc.instructions[sp.path].i_in1 == i]
        mul, ir = desc.irreps_in1[i]
        widths = [desc.irreps_out[desc.instructions[sp.path].i_out].mul for sp in paths]
        if prob.shared:
            total += formulation.gemm(b * ir.dim, sum(widths), mul, item)
        else:
            total += sum(formulation.bmm(b, ir.dim, w, mul, item) for w in widths)
    for i, paths in stacks.items():  # one y @ G and one product per stack, then each path's rows copied
        mul1, ir1 = desc.irreps_in1[i]
        rows = [desc.irreps_out[desc.instructions[sp.path].i_out].ir.dim for sp in paths]
        total += formulation.gemm(b, sum(rows) * ir1.dim, desc.irreps_in2.dim, item)
        total += per_block.couple_cost(b, sum(rows), ir1.dim, mul1, item)
        total += sum(formulation.elementwise(b * d * mul1, item, 2) for d in rows)
    for sp in side_plan(desc):
        ins = desc.instructions[sp.path]
        (mul1, ir1), (mul_out, ir_out) = desc.irreps_in1[ins.i_in1], desc.irreps_out[ins.i_out]
        channels = mul_out if sp.input_side else mul1
        rows, inner = (1, ir1.dim) if sp.kind == "dot" else (ir_out.dim, ir1.dim)
        if sp.kind in ("x", "y"):  # the y factor is tiny: one operand in, one out
            total += formulation.elementwise(b * ir_out.dim * channels, item, 2)
        elif sp.path not in in_stack:  # (stacked paths: counted per stack above)
            if sp.kind == "general":
                total += formulation.gemm(b, rows * inner, desc.irreps_in2[ins.i_in2].ir.dim, item)
            total += per_block.couple_cost(b, rows, inner, channels, item)
        if sp.input_side or ins.mode == "uvu":
            total += formulation.elementwise(b * ir_out.dim * mul_out, item)  # the add into the block
        elif prob.shared:
            total += formulation.gemm(b * ir_out.dim, mul_out, mul1, item)
        else:
            total += formulation.bmm(b, ir_out.dim, mul_out, mul1, item)
    return total
