"""Operand layout of the quadrilinear form: slots, components, coupling entries, weight columns.

The form ``T(x, y, w, o)`` has four slots (:data:`ROLES`); each kernel reads and writes them as
row-major 2-d tensors in e3nn's layout (``x [rows, irreps_in1.dim]``, ``y [E, irreps_in2.dim]``,
``o [rows, irreps_out.dim]``) and the extended weights ``w [E, weight_width]`` of :func:`weight_slot`.
A :class:`Component` names one column group of a slot (one irrep entry over the channels, or one path's
weights); an :class:`Operand` names which tensor fills a slot in a form.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
from torch.utils._python_dispatch import _disable_current_modes

from mlip.kernels.tensor_product.descriptor import TPDescriptor, wigner_block

ROLES = ("x", "y", "w", "o")


class Component(NamedTuple):
    """Entry ``index`` of irreps block ``block`` of slot ``x``, ``y`` or ``o`` (``[rows, U]`` over the
    channels, ``[E]`` for ``y``), or the ``[E, U]`` weights of path ``block`` (slot ``w``, no ``index``)."""

    slot: str
    block: int
    index: int | None = None

    @property
    def key(self) -> str:
        """``"block_index"`` (or ``"block"`` for weights): the suffix of generated variable names."""
        return str(self.block) if self.index is None else f"{self.block}_{self.index}"


class Operand(NamedTuple):
    """The operand filling ``slot`` in a form: the ``number``-th distinct tensor of that slot."""

    slot: str
    number: int


Structure = tuple[tuple[Operand, ...], ...]  # per form: the operands of its three slots, sorted by slot


@functools.cache
def couplings(desc: TPDescriptor) -> tuple[list[list[tuple[int, int, int, int]]], list[float]]:
    """Per path, ``(i, j, k, n)`` for each nonzero ``coef * C[i, j, k]``, and the values ``[n]`` (float64).
    Computed on real tensors even when first asked for while tracing (fake tensors hold no values)."""
    with _disable_current_modes():
        return _couplings(desc)


def _couplings(desc: TPDescriptor) -> tuple[list[list[tuple[int, int, int, int]]], list[float]]:
    entries, values = [], []
    for ins in desc.instructions:
        cg = wigner_block(ins, desc, torch.float64, torch.device("cpu"))
        path = []
        for i, j, k in (cg.abs() > 1e-12).nonzero().tolist():
            path.append((i, j, k, len(values)))
            values.append(float(cg[i, j, k]))
        entries.append(path)
    return entries, values


def live(desc: TPDescriptor, role: str, p: int) -> set[Component]:
    """Accumulated components path ``p`` contributes to, in the kernel computing ``role``."""
    ins = desc.instructions[p]
    if role == "o":
        return {Component("o", ins.i_out, k) for k in range(desc.irreps_out[ins.i_out].ir.dim)}
    if role == "x":
        return {Component("x", ins.i_in1, i) for i in range(desc.irreps_in1[ins.i_in1].ir.dim)}
    if role == "w":
        return {Component("w", p)}
    return {Component("y", ins.i_in2, j) for j in range(desc.irreps_in2[ins.i_in2].ir.dim)}


def umax(desc: TPDescriptor) -> int:
    """Largest channel count of the first input (the channel extent every kernel tiles)."""
    return max(mi.mul for mi in desc.irreps_in1)


def next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def weight_slot(
    desc: TPDescriptor, weight: torch.Tensor | None, rows: int, like: torch.Tensor
) -> torch.Tensor:
    """Extended per-edge weights ``[rows, weight_width(desc)]``: each unweighted path reads its own
    block of ones, so the form is linear in this slot (its gradient for the ones is dropped by ``cat``).
    Shared weights are expanded (row stride 0, summed by autograd)."""
    ones = sum(not ins.has_weight for ins in desc.instructions) * umax(desc)
    if weight is None:
        weight = like.new_zeros(0)
    if ones:
        weight = torch.cat([weight, weight.new_ones(*weight.shape[:-1], ones)], dim=-1)
    return weight.expand(rows, -1) if weight.dim() == 1 else weight


def weight_width(desc: TPDescriptor) -> int:
    """Columns of the extended weights: ``weight_numel`` plus ``U`` ones per unweighted path."""
    return desc.weight_numel + umax(desc) * sum(not ins.has_weight for ins in desc.instructions)


def weight_column(desc: TPDescriptor, p: int) -> int:
    """First column of path ``p`` in the extended weights (:func:`weight_slot`)."""
    ins = desc.instructions[p]
    if ins.has_weight:
        return ins.weight_offset
    unweighted = [q for q, other in enumerate(desc.instructions) if not other.has_weight]
    return desc.weight_numel + umax(desc) * unweighted.index(p)


def column(desc: TPDescriptor, comp: Component) -> int:
    """First column of ``comp`` in its slot's tensor (its channels follow at a stride of the irrep's
    dimension; a ``y`` component is one column, a path's weights ``U`` consecutive ones)."""
    if comp.slot == "w":
        return weight_column(desc, comp.block)
    irreps = {"x": desc.irreps_in1, "y": desc.irreps_in2, "o": desc.irreps_out}[comp.slot]
    return irreps.slices()[comp.block].start + comp.index
