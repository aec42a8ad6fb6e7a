"""The static description of a Clebsch-Gordan tensor product: instructions, normalization, weight layout.

Semantics are e3nn's ``o3.TensorProduct`` with ``irrep_normalization="component"`` and
``path_normalization="element"``: instruction ``(i1, i2, o)`` adds
``coef * sum_ij C[i, j, k] x1[u, i] x2[v, j] (w)`` to output block ``o``, where ``C = wigner_3j(l1, l2, lo)``
(unit Frobenius norm) and ``coef = sqrt(path_weight * dim(o) / n_o)``, ``n_o`` being the number of
(u, v) products summed into one output element over all instructions of block ``o``.
Weights of all weighted instructions are concatenated, each flattened in e3nn's order
(``uvu``: ``[mul1, mul2]``, ``uvw``: ``[mul1, mul2, mul_out]``), so weights copy to and from e3nn.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mlip.o3 import Irrep, Irreps, IrrepsLike, wigner_3j

InstructionLike = tuple  # (i_in1, i_in2, i_out, mode, has_weight[, path_weight])
MODES = ("uvu", "uvw")


@dataclass(frozen=True)
class Instruction:
    """One path ``in1[i_in1] x in2[i_in2] -> out[i_out]`` with its normalization ``coef``."""

    i_in1: int
    i_in2: int
    i_out: int
    mode: str
    has_weight: bool
    path_weight: float
    coef: float
    path_shape: tuple[int, ...]
    weight_offset: int  # first column of this path in the flat weight vector (-1 if unweighted)

    @property
    def weight_numel(self) -> int:
        return math.prod(self.path_shape) if self.has_weight else 0


@dataclass(frozen=True)
class TPDescriptor:
    """Irreps and normalized instructions of a tensor product; hashable (used as a cache key)."""

    irreps_in1: Irreps
    irreps_in2: Irreps
    irreps_out: Irreps
    instructions: tuple[Instruction, ...]

    @property
    def weight_numel(self) -> int:
        return sum(ins.weight_numel for ins in self.instructions)

    @property
    def channelwise(self) -> bool:
        """Every path ``uvu`` with ``mul2 == 1`` (the edge-SH convolution shape the fast paths handle)."""
        return all(ins.mode == "uvu" and self.irreps_in2[ins.i_in2].mul == 1 for ins in self.instructions)


def _num_elements(ins_mode: str, mul1: int, mul2: int) -> int:
    return {"uvu": mul2, "uvw": mul1 * mul2}[ins_mode]


def build_descriptor(
    irreps_in1: IrrepsLike,
    irreps_in2: IrrepsLike,
    irreps_out: IrrepsLike,
    instructions: Sequence[InstructionLike],
) -> TPDescriptor:
    """Validate e3nn-style ``instructions`` and compute each path's coefficient and weight slice."""
    in1, in2, out = Irreps(irreps_in1), Irreps(irreps_in2), Irreps(irreps_out)
    raw = []
    for entry in instructions:
        if len(entry) not in (5, 6):
            raise ValueError(
                f"instruction {entry!r}: expected (i1, i2, i_out, mode, has_weight[, path_weight])"
            )
        i1, i2, io, mode, has_weight = entry[:5]
        path_weight = float(entry[5]) if len(entry) == 6 else 1.0
        if mode not in MODES:
            raise ValueError(f"instruction {entry!r}: mode {mode!r} not supported (use one of {MODES})")
        ir1, ir2, iro = in1[i1].ir, in2[i2].ir, out[io].ir
        if iro not in list(ir1 * ir2):
            raise ValueError(f"instruction {entry!r}: {ir1} x {ir2} does not contain {iro}")
        if mode == "uvu" and in1[i1].mul != out[io].mul:
            raise ValueError(f"instruction {entry!r}: uvu needs mul(in1) == mul(out)")
        if mode == "uvw" and not has_weight:
            raise ValueError(f"instruction {entry!r}: uvw without weights is not supported")
        raw.append((int(i1), int(i2), int(io), mode, bool(has_weight), path_weight))

    def elements(r: tuple) -> int:
        return _num_elements(r[3], in1[r[0]].mul, in2[r[1]].mul)

    result, offset = [], 0
    for r in raw:
        i1, i2, io, mode, has_weight, path_weight = r
        fan_in = sum(elements(s) for s in raw if s[2] == io)
        alpha = out[io].ir.dim / fan_in if fan_in > 0 else out[io].ir.dim
        coef = math.sqrt(alpha * path_weight)
        shape = (in1[i1].mul, in2[i2].mul) + ((out[io].mul,) if mode == "uvw" else ())
        result.append(
            Instruction(i1, i2, io, mode, has_weight, path_weight, coef, shape, offset if has_weight else -1)
        )
        offset += math.prod(shape) if has_weight else 0
    return TPDescriptor(in1, in2, out, tuple(result))


def uvu_instructions(
    irreps_in1: IrrepsLike, irreps_in2: IrrepsLike, target_irreps: IrrepsLike
) -> tuple[Irreps, list[tuple[int, int, int, str, bool]]]:
    """MACE-style channelwise instructions: every ``in1[i] x in2[j] -> ir`` with ``ir`` in ``target_irreps``.

    Each path gets its own output block of multiplicity ``mul(in1[i])``; blocks are then sorted by irrep
    (stable), as MACE's ``tp_out_irreps_with_instructions``. Returns ``(irreps_out, instructions)``.
    """
    in1, in2, target = Irreps(irreps_in1), Irreps(irreps_in2), Irreps(target_irreps)
    blocks: list[tuple[int, Irrep]] = []
    instructions = []
    for i, (mul, ir1) in enumerate(in1):
        for j, (_, ir2) in enumerate(in2):
            for ir in ir1 * ir2:
                if ir in target:
                    instructions.append((i, j, len(blocks), "uvu", True))
                    blocks.append((mul, ir))
    irreps_out, p, _ = Irreps(blocks).sort()
    instructions = sorted(((i, j, p[k], m, w) for i, j, k, m, w in instructions), key=lambda t: t[2])
    return irreps_out, instructions


def wigner_block(
    ins: Instruction, desc: TPDescriptor, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """``coef * wigner_3j`` of one path, ``[d1, d2, d_out]``."""
    l1, l2, lo = (
        desc.irreps_in1[ins.i_in1].ir.l,
        desc.irreps_in2[ins.i_in2].ir.l,
        desc.irreps_out[ins.i_out].ir.l,
    )
    return ins.coef * wigner_3j(l1, l2, lo, dtype=dtype, device=device)


@torch.compiler.assume_constant_result  # a constant of the traced graph (torch.compile)
def descriptor_key(desc: TPDescriptor) -> str:
    """A string that rebuilds ``desc`` (:func:`descriptor_from_key`): how a custom op, whose arguments are
    tensors and plain values, names its descriptor (also in a saved graph)."""
    paths = ";".join(
        f"{i.i_in1},{i.i_in2},{i.i_out},{i.mode},{int(i.has_weight)},{i.path_weight!r}"
        for i in desc.instructions
    )
    return f"{desc.irreps_in1}|{desc.irreps_in2}|{desc.irreps_out}|{paths}"


@functools.cache
def descriptor_from_key(key: str) -> TPDescriptor:
    """The descriptor of a :func:`descriptor_key` string."""
    in1, in2, out, paths = key.split("|")
    instructions = []
    for path in paths.split(";") if paths else []:
        i1, i2, io, mode, has_weight, path_weight = path.split(",")
        instructions.append((int(i1), int(i2), int(io), mode, bool(int(has_weight)), float(path_weight)))
    return build_descriptor(in1, in2, out, instructions)
