"""Triton tensor product and convolution for channelwise descriptors (``uvu``, ``mul2 == 1``).

The product is a quadrilinear form ``T(x, y, w, o) = sum coef C[i,j,k] x[src,u,i] y[e,j] w[e,p,u] o[dst,u,k]``
over edges ``e``, paths ``p`` and channels ``u``. The forward is ``dT/do``; the gradient with respect to
any other slot is ``dT/d(slot)`` with ``o`` replaced by the incoming gradient. So one generated kernel
family, parametrized by the *role* (the slot it computes) and summing one or more *forms* (which operand
fills each other slot), gives forward (role ``o``), backward (roles ``x``, ``y``, ``w``) and, because
the gradient of a sum of forms is again a sum of forms, double backward and beyond, with no
hand-written derivative kernels.

Kernels are generated per descriptor: the sparse Wigner-3j entries are unrolled into straight-line code
over tiles ``[BE edges, BU channels]`` read directly in e3nn's layout; the coefficients are compile-time
constants in the tensors' dtype (exact in float64). Node-indexed outputs (roles ``o`` and ``x`` of a
convolution) are segment reductions over a CSR of edges sorted by ``dst`` (resp. ``src``): each program
owns one node and a channel tile, sums its edges in registers and writes once. There are no atomics,
so results are deterministic, and per-edge messages never reach global memory. Paths are split into
chunks of at most ``MAX_LIVE`` accumulated components to bound register use; the chunks are consecutive
sections of one kernel (one launch per role), each writing its own components. Requests for two or
three of the slots ``x``, ``y``, ``w`` of a convolution (every backward and double backward) run as one
fused kernel over the edges sorted by ``src`` (:func:`fused_grad_source`), which gathers the shared
operands once instead of once per slot. Block sizes are autotuned per kernel, keyed on the edge count
rounded up to a power of two (``MLIP_TP_AUTOTUNE=0`` turns tuning off: the first candidate of
:func:`block_configs`, as in the interpreter).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass, field

import torch

from mlip.kernels.tensor_product.descriptor import TPDescriptor, wigner_block
from mlip.kernels.tensor_product.graph import ConvGraph

ROLES = ("x", "y", "w", "o")
MAX_LIVE = 8  # accumulated [BE, BU] tiles per section (16 spilled registers on mace-large, see block_configs)
FUSED_BU = 32  # channel tile of the fused gradient kernel


# ----------------------------------------------------------------------------------------------- codegen
@functools.cache
def _couplings(desc: TPDescriptor) -> tuple[list[list[tuple[int, int, int, int]]], list[float]]:
    """Per path, ``(i, j, k, n)`` for each nonzero ``coef * C[i, j, k]``, and the values ``[n]`` (float64)."""
    entries, values = [], []
    for ins in desc.instructions:
        cg = wigner_block(ins, desc, torch.float64, torch.device("cpu"))
        path = []
        for i, j, k in (cg.abs() > 1e-12).nonzero().tolist():
            path.append((i, j, k, len(values)))
            values.append(float(cg[i, j, k]))
        entries.append(path)
    return entries, values


def _umax(desc: TPDescriptor) -> int:
    """Largest channel count of the first input (the channel extent every kernel tiles)."""
    return max(mi.mul for mi in desc.irreps_in1)


def fused_tile(desc: TPDescriptor) -> int:
    """Channel tile ``BU`` of the fused gradient kernels: :data:`FUSED_BU`, clipped to the channels."""
    return min(FUSED_BU, _next_pow2(_umax(desc)))


def weight_column(desc: TPDescriptor, p: int) -> int:
    """First column of path ``p`` in the extended weights (:func:`weight_slot`)."""
    ins = desc.instructions[p]
    if ins.has_weight:
        return ins.weight_offset
    umax = _umax(desc)
    unweighted = [q for q, other in enumerate(desc.instructions) if not other.has_weight]
    return desc.weight_numel + umax * unweighted.index(p)


def _live(desc: TPDescriptor, role: str, p: int) -> set:
    """Accumulated components a path contributes to, for the kernel computing ``role``."""
    ins = desc.instructions[p]
    if role == "o":
        return {("o", ins.i_out, k) for k in range(desc.irreps_out[ins.i_out].ir.dim)}
    if role == "x":
        return {("x", ins.i_in1, i) for i in range(desc.irreps_in1[ins.i_in1].ir.dim)}
    if role == "w":
        return {("w", p)}
    return {("y", ins.i_in2, j) for j in range(desc.irreps_in2[ins.i_in2].ir.dim)}


def path_chunks(desc: TPDescriptor, role: str) -> list[tuple[int, ...]]:
    """Path groups with at most ``MAX_LIVE`` accumulated components each (or one block, if larger), taking
    the paths in order of the block they accumulate into: the paths of a block share one group, so no
    accumulated component spans two sections (and there are fewer sections)."""
    chunks: list[list[int]] = []
    live: set = set()
    for p in sorted(range(len(desc.instructions)), key=lambda p: min(_live(desc, role, p))[:2]):
        comps = _live(desc, role, p)
        if chunks and (comps <= live or len(live | comps) <= MAX_LIVE):
            chunks[-1].append(p)
            live |= comps
        else:
            chunks.append([p])
            live = set(comps)
    return [tuple(c) for c in chunks]


@dataclass
class _Emitter:
    """Builds the straight-line body: lazily emitted loads, then accumulations.

    Operands are read through pointers ``X0, X1, ..., Y0, ..., W0, ..., O0, ...`` (row strides ``sx0``,
    ...): ``version`` names, per slot, the operand of the form being emitted, so a body may sum several
    forms of the same slot (double backward) and share the loads they have in common."""

    desc: TPDescriptor
    prefix: str = ""  # per-section prefix of variable names (no loop-carried clashes between sections)
    node_x: bool = False  # x is the program's own node row (fused gradients): loaded once, [1, BU]
    version: dict = field(default_factory=dict)  # slot -> operand number of the current form
    pre: list[str] = field(default_factory=list)  # loads hoisted out of the edge loop
    lines: list[str] = field(default_factory=list)
    loaded: set = field(default_factory=set)
    acc: dict = field(default_factory=dict)  # component -> accumulator name
    coefs: set = field(default_factory=set)  # coefficient-table entries used

    def load(self, comp: tuple) -> str:
        d = self.desc
        slot, v = comp[0], self.version.get(comp[0], 0)
        ptr, stride = f"{slot.upper()}{v}", f"s{slot}{v}"
        name = f"{self.prefix}v_{slot}{v}_" + "_".join(str(c) for c in comp[1:])
        if (v, comp) in self.loaded:
            return name
        self.loaded.add((v, comp))
        if slot == "y":
            col = d.irreps_in2.slices()[comp[1]].start + comp[2]
            load = f"tl.load({ptr} + e * {stride} + {col}, mask=valid, other=0.0)"
            self.lines.append(f"{name} = {load}[:, None]")
        elif slot == "x" and self.node_x:
            mul, ir = d.irreps_in1[comp[1]]
            col = d.irreps_in1.slices()[comp[1]].start + comp[2]
            self.pre.append(
                f"{name} = tl.load({ptr} + node * {stride} + {col} + u[None, :] * {ir.dim}, "
                f"mask=u[None, :] < {mul}, other=0.0)"
            )
        elif slot == "w":
            ins = d.instructions[comp[1]]
            self.lines.append(
                f"{name} = tl.load({ptr} + e[:, None] * {stride} + {weight_column(d, comp[1])} + u[None, :], "
                f"mask=valid[:, None] & (u[None, :] < {ins.path_shape[0]}), other=0.0)"
            )
        else:
            irreps, row = (d.irreps_in1, "rx") if slot == "x" else (d.irreps_out, "ro")
            mul, ir = irreps[comp[1]]
            col = irreps.slices()[comp[1]].start + comp[2]
            self.lines.append(
                f"{name} = tl.load({ptr} + {row}[:, None] * {stride} + {col} + u[None, :] * {ir.dim}, "
                f"mask=valid[:, None] & (u[None, :] < {mul}), other=0.0)"
            )
        return name

    def accumulate(self, comp: tuple, expr: str) -> None:
        name = f"{self.prefix}acc_" + "_".join(str(c) for c in comp)
        self.acc.setdefault(comp, name)
        self.lines.append(f"{name} += {expr}")


def _coupled_y(em: _Emitter, ins_p: int, entries: list, i: int, k: int) -> str | None:
    """``sum_j c[i, j, k] y_j`` as an expression (``[BE, 1]``), or ``None`` if all zero."""
    i2 = em.desc.instructions[ins_p].i_in2
    terms = []
    for ii, j, kk, n in entries:
        if ii == i and kk == k:
            em.coefs.add(n)
            terms.append(f"c{n} * {em.load(('y', i2, j))}")
    return f"({' + '.join(terms)})" if terms else None


def _body(em: _Emitter, role: str, paths: tuple[int, ...], nonzeros: list) -> None:
    """Emit the accumulations of slot ``role`` over ``paths`` into ``em``."""
    d = em.desc
    for p in paths:
        ins, entries = d.instructions[p], nonzeros[p]
        d1, do = d.irreps_in1[ins.i_in1].ir.dim, d.irreps_out[ins.i_out].ir.dim
        weight = f" * {em.load(('w', p))}" if role != "w" else ""
        if role == "o":
            for k in range(do):
                terms = [
                    f"{a} * {em.load(('x', ins.i_in1, i))}"
                    for i in range(d1)
                    if (a := _coupled_y(em, p, entries, i, k)) is not None
                ]
                if terms:
                    em.accumulate(("o", ins.i_out, k), f"({' + '.join(terms)}){weight}")
        elif role == "x":
            for i in range(d1):
                terms = [
                    f"{a} * {em.load(('o', ins.i_out, k))}"
                    for k in range(do)
                    if (a := _coupled_y(em, p, entries, i, k)) is not None
                ]
                if terms:
                    em.accumulate(("x", ins.i_in1, i), f"({' + '.join(terms)}){weight}")
        elif role == "w":
            terms = []
            for k in range(do):
                inner = [
                    f"{a} * {em.load(('x', ins.i_in1, i))}"
                    for i in range(d1)
                    if (a := _coupled_y(em, p, entries, i, k)) is not None
                ]
                if inner:
                    terms.append(f"{em.load(('o', ins.i_out, k))} * ({' + '.join(inner)})")
            em.accumulate(("w", p), " + ".join(terms))
        else:  # role y: accumulate [BE, BU] per component; the store reduces over channels once
            pairs = sorted({(i, k) for (i, _, k, _) in entries})
            for i, k in pairs:
                r = f"{em.prefix}r_{p}_{i}_{k}"  # a temporary: reassigned by the next form
                x, g = em.load(("x", ins.i_in1, i)), em.load(("o", ins.i_out, k))
                em.lines.append(f"{r} = {x} * {g}{weight}")
                for ii, j, kk, n in entries:
                    if (ii, kk) == (i, k):
                        em.coefs.add(n)
                        em.accumulate(("y", ins.i_in2, j), f"c{n} * {r}")


def _store(em: _Emitter, comp: tuple, value: str, segment: bool) -> str:
    """Store one accumulated component of the output slot (written by one section only)."""
    d = em.desc
    if comp[0] == "y":
        ptr, mask = f"OUT + e * sout + {d.irreps_in2.slices()[comp[1]].start + comp[2]}", "valid"
    else:
        if comp[0] == "w":
            ins = d.instructions[comp[1]]
            col, step, mul = weight_column(d, comp[1]), 1, ins.path_shape[0]
        else:
            irreps = d.irreps_in1 if comp[0] == "x" else d.irreps_out
            mul, ir = irreps[comp[1]]
            col, step = irreps.slices()[comp[1]].start + comp[2], ir.dim
        if segment:
            ptr, mask = f"OUT + node * sout + {col} + u * {step}", f"u < {mul}"
        else:
            ptr = f"OUT + e[:, None] * sout + {col} + u[None, :] * {step}"
            mask = f"valid[:, None] & (u[None, :] < {mul})"
    return f"tl.store({ptr}, {value}, mask={mask})"


def block_configs(desc: TPDescriptor, tune: bool) -> list[tuple[int, int, int]]:
    """Block-size candidates ``(BE, BU, num_warps)`` for the autotuner, ``BU`` clipped to the channel
    count; the first one only when not tuning (interpreter, or ``MLIP_TP_AUTOTUNE=0``). Chosen so that the
    mace-large kernels do not spill registers in fp32 or fp64 on sm_90 (``benchmarks/kernel_resources.py``:
    larger tiles such as ``(16, 64, 4)`` spilled hundreds of bytes per thread)."""
    umax = _next_pow2(_umax(desc))
    configs = []
    for be, bu, warps in ((8, 32, 4), (8, 32, 8), (16, 32, 8)):
        candidate = (be, min(bu, umax), warps)
        if candidate not in configs:
            configs.append(candidate)
    return configs if tune else configs[:1]


def autotuning() -> bool:
    """Autotune block sizes: compiled Triton only, unless ``MLIP_TP_AUTOTUNE=0``."""
    return os.environ.get("TRITON_INTERPRET") != "1" and os.environ.get("MLIP_TP_AUTOTUNE", "1") != "0"


Structure = tuple[tuple[tuple[str, int], ...], ...]  # per form: (slot, operand number) of its three slots


def _signature(structures: list[Structure]) -> tuple[list[str], list[str]]:
    """Pointer and row-stride parameter names of the operands the forms read, slot by slot."""
    counts = {slot: 0 for slot in ROLES}
    for structure in structures:
        for form in structure:
            for slot, v in form:
                counts[slot] = max(counts[slot], v + 1)
    pointers = [f"{slot.upper()}{v}" for slot in ROLES for v in range(counts[slot])]
    strides = [f"s{slot}{v}" for slot in ROLES for v in range(counts[slot])]
    return pointers, strides


def _sections(desc: TPDescriptor, roles: dict[str, Structure], chunks, node_x: bool) -> list[_Emitter]:
    """One emitter per path chunk, holding the bodies of every role's forms over the chunk's paths."""
    nonzeros = _couplings(desc)[0]
    sections = []
    for n, paths in enumerate(chunks):
        em = _Emitter(desc, prefix=f"s{n}_", node_x=node_x)
        for role, structure in roles.items():
            for form in structure:
                em.version = dict(form)
                _body(em, role, paths, nonzeros)
        sections.append(em)
    return sections


def _constants(desc: TPDescriptor, em: _Emitter, out: str) -> list[str]:
    """The coupling coefficients a section uses, as compile-time constants in the output's dtype (exact
    float64 literals; constants cost no registers, unlike values loaded from a table)."""
    values = _couplings(desc)[1]
    return [f"c{n} = tl.full([], {values[n]!r}, {out}.dtype.element_ty)" for n in sorted(em.coefs)]


def _program(
    configs: str, params: list[str], prologue: list[str], sections: list[list[str]], separate: bool
) -> str:
    """Source of the kernel running ``sections`` (each: its constants and body) in order after ``prologue``.

    ``separate`` makes each section a ``noinline`` function of its own (repeating the cheap prologue),
    called in order with a barrier between (later fused sections read-add what earlier ones wrote).
    Compilation then stays near-linear in the number of sections: Triton's coalescing pass walks, for
    every load and store, the whole connected graph of operations around it, which is the whole kernel
    when it is one function (mace-large fused double backward: 56 of 64 s in that pass). The functions
    stay functions down to the machine code (one ``CALL`` per section and program, against loops over
    the node's edges inside each); ptxas allocates their registers separately, so the kernel needs the
    most any section needs (fused backward on mace-large: 98-128 registers, was 104-173). Kept for the
    big kernels only: the forward compiles fast either way and uses fewer registers as one function
    (mace-large 64 vs 76)."""
    args = ", ".join(params)
    lines = ["import triton", "import triton.language as tl"]
    if separate:
        for n, body in enumerate(sections):
            lines += ["", "", "@triton.jit(noinline=True)"]
            lines += [f"def section{n}({args}, BE: tl.constexpr, BU: tl.constexpr):"]
            lines += ["    " + line for line in prologue + body]
    lines += ["", "", f"@triton.autotune(configs=[{configs}], key=['E_BUCKET'])", "@triton.jit"]
    lines += [f"def kernel({args}, E_BUCKET, BE: tl.constexpr, BU: tl.constexpr):"]
    if separate:
        for n in range(len(sections)):
            lines += ["    tl.debug_barrier()"] if n else []
            lines.append(f"    section{n}({args}, BE, BU)")
    else:
        lines += ["    " + line for line in prologue + [line for body in sections for line in body]]
    return "\n".join(lines) + "\n"


def kernel_source(
    desc: TPDescriptor,
    role: str,
    structure: Structure,
    chunks: tuple[tuple[int, ...], ...],
    gather: bool,
    tune: bool,
) -> str:
    """Source of the one Triton kernel computing slot ``role`` as a sum of forms over all paths.

    ``structure`` gives, per form, which operand fills each of the three other slots (one form in the
    forward and backward; two or three in double backward, sharing their common loads). The path
    chunks become consecutive sections of the same program (each with its own accumulators, so register
    use stays bounded by ``MAX_LIVE``); each output component belongs to one section, which stores it.
    Every launch therefore writes its output from scratch (safe to re-run, as the autotuner does), and a
    program re-reads the same edges' inputs from cache.
    """
    segment = gather and role in ("x", "o")
    sections = _sections(desc, {role: structure}, chunks, node_x=False)
    umax = _umax(desc)
    configs = ", ".join(
        f"triton.Config({{'BE': {be}, 'BU': {bu}}}, num_warps={w})" for be, bu, w in block_configs(desc, tune)
    )
    pointers, strides = _signature([structure])
    params = [*pointers, "OUT", "SRC", "DST", "ROWPTR", "PERM", "n_rows", *strides, "sout"]
    zero = "tl.zeros([BE, BU], dtype=OUT.dtype.element_ty)"
    rows = []
    if gather:
        rows += ["rx = tl.load(SRC + e, mask=valid, other=0)"] if role != "x" else []
        rows += ["ro = tl.load(DST + e, mask=valid, other=0)"] if role != "o" else []
    else:
        rows += ["rx = e", "ro = e"]
    if segment:
        prologue = [
            "node = tl.program_id(0)",
            "u = tl.program_id(1) * BU + tl.arange(0, BU)",
            "beg = tl.load(ROWPTR + node)",
            "end = tl.load(ROWPTR + node + 1)",
        ]
    elif role == "y":
        prologue = ["e = tl.program_id(0) * BE + tl.arange(0, BE)", "valid = e < n_rows", *rows]
    else:
        prologue = [
            "e = tl.program_id(0) * BE + tl.arange(0, BE)",
            "u = tl.program_id(1) * BU + tl.arange(0, BU)",
            "valid = e < n_rows",
            *rows,
        ]
    bodies = []
    for em in sections:
        body = _constants(desc, em, "OUT")
        body += [f"{name} = {zero}" for name in em.acc.values()]
        if segment:
            body += [
                "for start in range(beg, end, BE):",
                "    idx = start + tl.arange(0, BE)",
                "    valid = idx < end",
                "    e = tl.load(PERM + idx, mask=valid, other=0)",
                *["    " + r for r in rows + em.lines],
            ]
        elif role == "y":
            body += [f"for u0 in range(0, {umax}, BU):", "    u = u0 + tl.arange(0, BU)"]
            body += ["    " + line for line in em.lines]
        else:
            body += em.lines
        for c, name in em.acc.items():
            axis = 1 if role == "y" else 0 if segment else None  # sum over channels (y) or a node's edges
            value = name if axis is None else f"tl.sum({name}, axis={axis})"
            body.append(_store(em, c, value, segment))
        bodies.append(body)
    return _program(configs, params, prologue, bodies, separate=len(structure) > 1)


def fused_grad_source(
    desc: TPDescriptor, roles: dict[str, Structure], chunks: tuple[tuple[int, ...], ...], tune: bool
) -> str:
    """Source of the one kernel computing several of the slots ``x``, ``y``, ``w`` of a convolution at once
    (``roles``: each one's sum of forms), as the backward and double backward need them.

    Each program owns one source node and a channel tile and walks that node's edges (CSR by ``src``):
    its own ``x`` rows are read once, the other operands once per edge, shared by all bodies. The ``x``
    result is summed over the edges in registers and written once; the ``w`` result of an edge is written
    by the one program owning its source and tile; the ``y`` result, a sum over channels, is written per
    tile as partial rows ``DY[tile * E + e]`` that the launcher adds up. No atomics, so the result is
    deterministic. The chunks (:func:`fused_chunks`) become sections as in :func:`kernel_source`.
    """
    sections = _sections(desc, roles, chunks, node_x=True)
    candidates = fused_block_configs(tune)
    configs = ", ".join(f"triton.Config({{'BE': {be}}}, num_warps={w})" for be, w in candidates)
    pointers, strides = _signature(list(roles.values()))
    params = [*pointers, "DX", "DY", "DW", "DST", "ROWPTR", "PERM", "n_rows", *strides]
    params += ["sdx", "sdy", "sdw"]
    prologue = [
        "node = tl.program_id(0)",
        "tile = tl.program_id(1)",
        "u = tile * BU + tl.arange(0, BU)",
        "beg = tl.load(ROWPTR + node)",
        "end = tl.load(ROWPTR + node + 1)",
    ]
    written: set = set()
    bodies = []
    for em in sections:
        per_node = {c: a for c, a in em.acc.items() if c[0] == "x"}
        per_edge = {c: a for c, a in em.acc.items() if c[0] != "x"}
        body = _constants(desc, em, "DX") + em.pre
        body += [f"{a} = tl.zeros([BE, BU], dtype=DX.dtype.element_ty)" for a in per_node.values()]
        loop = [
            "idx = start + tl.arange(0, BE)",
            "valid = idx < end",
            "e = tl.load(PERM + idx, mask=valid, other=0)",
            "ro = tl.load(DST + e, mask=valid, other=0)",
        ]
        loop += [f"{a} = tl.zeros([BE, BU], dtype=DX.dtype.element_ty)" for a in per_edge.values()]
        loop += em.lines
        for c, a in per_edge.items():
            if c[0] == "w":  # each weight column belongs to one path: always a first write
                ins = desc.instructions[c[1]]
                ptr = f"DW + e[:, None] * sdw + {weight_column(desc, c[1])} + u[None, :]"
                mask = f"valid[:, None] & (u[None, :] < {ins.path_shape[0]})"
                loop.append(f"tl.store({ptr}, {a}, mask={mask})")
            else:
                ptr = f"DY + (tile * n_rows + e) * sdy + {desc.irreps_in2.slices()[c[1]].start + c[2]}"
                value = f"tl.sum({a}, axis=1)"
                if c in written:
                    value = f"tl.load({ptr}, mask=valid, other=0.0) + {value}"
                loop.append(f"tl.store({ptr}, {value}, mask=valid)")
        body += ["for start in range(beg, end, BE):", *["    " + line for line in loop]]
        for c, a in per_node.items():
            mul, ir = desc.irreps_in1[c[1]]
            ptr = f"DX + node * sdx + {desc.irreps_in1.slices()[c[1]].start + c[2]} + u * {ir.dim}"
            value = f"tl.sum({a}, axis=0)"
            if c in written:
                value = f"tl.load({ptr}, mask=u < {mul}, other=0.0) + {value}"
            body.append(f"tl.store({ptr}, {value}, mask=u < {mul})")
        written |= set(em.acc)
        bodies.append(body)
    return _program(configs, params, prologue, bodies, separate=True)


FUSED_PATHS = 4  # paths per section of the fused gradient kernels (8: mace-large fp64 spilled 256 B)


def fused_chunks(desc: TPDescriptor) -> tuple[tuple[int, ...], ...]:
    """Sections of the fused gradient kernels: ``FUSED_PATHS`` paths each, in order of their ``x`` block.
    Each section holds its own accumulators and loads, so registers stay bounded (mace-large, fp64
    double backward: 1,352 B of spills with one section per ``x`` block, 176 B with these); a block's
    ``x`` gradient may span sections (later ones add to what earlier ones stored)."""
    paths = sorted(range(len(desc.instructions)), key=lambda p: desc.instructions[p].i_in1)
    return tuple(tuple(paths[n : n + FUSED_PATHS]) for n in range(0, len(paths), FUSED_PATHS))


def fused_block_configs(tune: bool) -> list[tuple[int, int]]:
    """``(BE, num_warps)`` candidates of the fused gradient kernel, spill-free on mace-large like
    :func:`block_configs`. Its channel tile is fixed (:data:`FUSED_BU`, clipped to the channel count)
    because the number of ``y`` partials depends on it."""
    configs = [(8, 8), (16, 8), (8, 4)]
    return configs if tune else configs[:1]


def _load_kernel(source: str, name: str):
    """Import the ``kernel`` of generated ``source`` from a file named by its hash (Triton needs a file)."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:16]
    folder = os.path.join(tempfile.gettempdir(), f"mlip_triton_tp_{os.getuid()}")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"tp_{name}_{digest}.py")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(f"mlip_tp_{name}_{digest}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.kernel


@functools.cache
def _compiled(desc: TPDescriptor, role: str, structure: Structure, gather: bool, tune: bool):
    """The kernel of slot ``role`` summing the forms of ``structure``. Kernels of several forms (double
    backward) are not tuned: they are the longest to compile (mace-large: 50-100 s per candidate on the
    development CPU, ``benchmarks/kernel_resources.py``) and the first candidate spills least (fp32: not)."""
    tune = tune and len(structure) == 1
    source = kernel_source(desc, role, structure, tuple(path_chunks(desc, role)), gather, tune)
    return _load_kernel(source, role)


@functools.cache
def _compiled_fused(desc: TPDescriptor, roles: tuple[tuple[str, Structure], ...], tune: bool):
    """The fused gradient kernel; tuned only for single-form roles, as :func:`_compiled`."""
    tune = tune and all(len(structure) == 1 for _, structure in roles)
    return _load_kernel(fused_grad_source(desc, dict(roles), fused_chunks(desc), tune), "xyw")


# ------------------------------------------------------------------------------------------------ launch
Form = dict[str, torch.Tensor]  # the three slots other than the result's -> operand


def _row_major(t: torch.Tensor) -> torch.Tensor:
    """Unit column stride (row stride may be 0, as for shared weights)."""
    return t if t.dim() == 2 and (t.stride(1) == 1 or t.shape[1] == 1) else t.contiguous()


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _identity_index(items: list[torch.Tensor], t: torch.Tensor) -> int:
    """Index of ``t`` in ``items`` by identity (not value), appending it if absent."""
    index = next((n for n, item in enumerate(items) if item is t), None)
    if index is None:
        items.append(t)
        index = len(items) - 1
    return index


def _operands(forms_by_role: dict[str, list[Form]]) -> tuple[dict[str, Structure], list[torch.Tensor]]:
    """Number the distinct operands of each slot (by identity): the forms' structures, and the operands
    in the kernel's parameter order (slot by slot, as :func:`_signature`)."""
    numbered: dict[str, list[torch.Tensor]] = {slot: [] for slot in ROLES}
    structures = {}
    for role, forms in forms_by_role.items():
        structure = []
        for form in forms:
            entry = []
            for slot in sorted(form):
                entry.append((slot, _identity_index(numbered[slot], form[slot])))
            structure.append(tuple(entry))
        structures[role] = tuple(structure)
    return structures, [_row_major(t) for slot in ROLES for t in numbered[slot]]


def _shape(desc: TPDescriptor, graph: ConvGraph, role: str) -> tuple[int, int]:
    rows = {"x": graph.num_src, "o": graph.num_nodes, "y": graph.num_edges, "w": graph.num_edges}[role]
    cols = {"x": desc.irreps_in1.dim, "y": desc.irreps_in2.dim, "o": desc.irreps_out.dim}
    return rows, _weight_width(desc) if role == "w" else cols[role]


def launch(desc: TPDescriptor, graph: ConvGraph, role: str, forms: list[Form]) -> torch.Tensor:
    """Slot ``role`` (``[rows, cols]``) summed over ``forms``, each giving the three other slots (no
    autograd)."""
    like = forms[0]["x" if role != "x" else "o"]
    out = torch.zeros(_shape(desc, graph, role), dtype=like.dtype, device=like.device)  # unwritten: 0
    if graph.num_edges == 0 or out.shape[0] == 0:
        return out
    structures, operands = _operands({role: forms})
    umax = _umax(desc)
    segment = graph.gather and role in ("x", "o")
    rowptr, perm = graph.csr("dst" if role == "o" else "src") if segment else (graph.src, graph.src)

    def grid(meta: dict) -> tuple[int, ...]:
        if segment:
            return (out.shape[0], triton_cdiv(umax, meta["BU"]))
        if role == "y":
            return (triton_cdiv(graph.num_edges, meta["BE"]),)
        return (triton_cdiv(graph.num_edges, meta["BE"]), triton_cdiv(umax, meta["BU"]))

    kernel = _compiled(desc, role, structures[role], graph.gather, autotuning())
    kernel[grid](
        *operands, out, graph.src, graph.dst, rowptr, perm, graph.num_edges,
        *(t.stride(0) for t in operands), out.stride(0), _next_pow2(graph.num_edges),
    )  # fmt: skip
    return out


def launch_fused(
    desc: TPDescriptor, graph: ConvGraph, forms_by_role: dict[str, list[Form]]
) -> dict[str, torch.Tensor]:
    """Slots among ``x``, ``y``, ``w`` of a convolution (``graph.gather``), each summed over its forms, in
    one launch of the fused gradient kernel (no autograd)."""
    like = next(iter(forms_by_role.values()))[0]["o"]
    bu = fused_tile(desc)
    tiles = triton_cdiv(_umax(desc), bu)
    out = {r: torch.zeros(_shape(desc, graph, r), dtype=like.dtype, device=like.device) for r in "xw"}
    dy_tiles = torch.zeros(tiles * graph.num_edges, desc.irreps_in2.dim, dtype=like.dtype, device=like.device)
    if graph.num_edges and graph.num_src:
        structures, operands = _operands(forms_by_role)
        rowptr, perm = graph.csr("src")
        kernel = _compiled_fused(desc, tuple(sorted(structures.items())), autotuning())
        kernel[(graph.num_src, tiles)](
            *operands, out["x"], dy_tiles, out["w"], graph.dst, rowptr, perm, graph.num_edges,
            *(t.stride(0) for t in operands), out["x"].stride(0), dy_tiles.stride(0), out["w"].stride(0),
            _next_pow2(graph.num_edges), BU=bu,
        )  # fmt: skip
    out["y"] = dy_tiles.view(tiles, graph.num_edges, -1).sum(0)
    return {r: out[r] for r in forms_by_role}


def _weight_width(desc: TPDescriptor) -> int:
    umax = _umax(desc)
    return desc.weight_numel + umax * sum(not ins.has_weight for ins in desc.instructions)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _evaluate_now(
    desc: TPDescriptor, graph: ConvGraph, requests: list[tuple[str, list[Form]]]
) -> list[torch.Tensor]:
    """Each request ``(role, forms)``: slot ``role`` summed over ``forms`` (no autograd). Requests for two
    or three of the slots ``x``, ``y``, ``w`` of a convolution share one fused launch."""
    fusable = [n for n, (role, _) in enumerate(requests) if role in "xyw"]
    roles = [requests[n][0] for n in fusable]
    results: dict[int, torch.Tensor] = {}
    if graph.gather and len(fusable) >= 2 and len(set(roles)) == len(roles):
        fused = launch_fused(desc, graph, {requests[n][0]: requests[n][1] for n in fusable})
        results = {n: fused[requests[n][0]] for n in fusable}
    return [results[n] if n in results else launch(desc, graph, *requests[n]) for n in range(len(requests))]


class _Forms(torch.autograd.Function):
    """Differentiable :func:`_evaluate_now`. ``spec`` holds the requests with operands as indices into
    ``operands``. Every result is linear in each operand of a form, so its gradient with respect to an
    operand filling slot ``s`` is slot ``s`` of the same form with that operand removed and the result's
    slot filled by the incoming gradient: the backward is again a set of requests (differentiable to any
    order), one per operand, which fuse as the forward's did."""

    @staticmethod
    def forward(ctx, desc, graph, spec, *operands):  # noqa: ANN001
        ctx.desc, ctx.graph, ctx.spec = desc, graph, spec
        ctx.save_for_backward(*operands)
        ctx.set_materialize_grads(False)  # an unused result gets None, not a zero tensor to multiply
        requests = [(role, [{s: operands[i] for s, i in form} for form in forms]) for role, forms in spec]
        return tuple(_evaluate_now(desc, graph, requests))

    @staticmethod
    def backward(ctx, *grads):  # noqa: ANN001
        operands = ctx.saved_tensors
        wanted: dict[tuple[int, str], list[Form]] = {}  # (operand index, slot it fills) -> gradient's forms
        for (role, forms), grad in zip(ctx.spec, grads, strict=True):
            if grad is None:
                continue
            for form in forms:
                for slot, i in form:
                    if ctx.needs_input_grad[3 + i]:
                        rest = {s: operands[j] for s, j in form if s != slot}
                        wanted.setdefault((i, slot), []).append({**rest, role: grad})
        order = sorted(wanted)
        results = evaluate(ctx.desc, ctx.graph, [(slot, wanted[i, slot]) for i, slot in order])
        total: list[torch.Tensor | None] = [None] * len(operands)
        for (i, _), result in zip(order, results, strict=True):
            total[i] = result if total[i] is None else total[i] + result
        return (None, None, None, *total)


def evaluate(
    desc: TPDescriptor, graph: ConvGraph, requests: list[tuple[str, list[Form]]]
) -> list[torch.Tensor]:
    """Differentiable (to any order): for each request ``(role, forms)``, slot ``role`` of the quadrilinear
    form summed over ``forms`` (each a dict of the three other slots)."""
    operands: list[torch.Tensor] = []
    spec = []
    for role, forms in requests:
        spec_forms = []
        for form in forms:
            entry = []
            for slot in sorted(form):
                entry.append((slot, _identity_index(operands, form[slot])))
            spec_forms.append(tuple(entry))
        spec.append((role, tuple(spec_forms)))
    return list(_Forms.apply(desc, graph, tuple(spec), *operands))


def compute(desc: TPDescriptor, graph: ConvGraph, role: str, ops: Form) -> torch.Tensor:
    """Differentiable (to any order) slot ``role`` of the quadrilinear form from the three others."""
    return evaluate(desc, graph, [(role, [ops])])[0]


def weight_slot(
    desc: TPDescriptor, weight: torch.Tensor | None, rows: int, like: torch.Tensor
) -> torch.Tensor:
    """Extended per-edge weights ``[rows, numel + n_unweighted * U]``: each unweighted path reads its own
    block of ones, so the form is linear in this slot (its gradient for the ones is dropped by ``cat``).
    Shared weights are expanded (row stride 0, summed by autograd)."""
    umax = _umax(desc)
    ones = sum(not ins.has_weight for ins in desc.instructions) * umax
    if weight is None:
        weight = like.new_zeros(0)
    if ones:
        weight = torch.cat([weight, weight.new_ones(*weight.shape[:-1], ones)], dim=-1)
    return weight.expand(rows, -1) if weight.dim() == 1 else weight


def tensor_product_triton(
    desc: TPDescriptor, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None
) -> torch.Tensor:
    """Same contract as :func:`~mlip.kernels.tensor_product.reference.tensor_product_reference`."""
    graph = ConvGraph.identity(x.shape[0], x.device)
    return compute(desc, graph, "o", {"x": x, "y": y, "w": weight_slot(desc, weight, x.shape[0], x)})
