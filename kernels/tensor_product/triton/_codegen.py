"""Source generation: the Triton kernels of one descriptor, as Python text.

:func:`kernel_source` writes the kernel computing one slot (``role``) summed over forms;
:func:`fused_grad_source` writes the convolution's fused ``x``/``y``/``w`` gradient kernel. Both unroll
the sparse coupling entries into straight-line code over ``[BE edges, BU channels]`` tiles, in sections
(one per path chunk of :mod:`~mlip.kernels.tensor_product.triton._tuning`), each with its own
accumulators. Operands are read through pointers ``X0, X1, ..., Y0, ..., W0, ..., O0, ...`` with row
strides ``sx0, ...``, numbered as in the forms' :data:`~._layout.Structure`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlip.kernels.tensor_product.descriptor import TPDescriptor
from mlip.kernels.tensor_product.triton._layout import (
    ROLES,
    Component,
    Structure,
    column,
    couplings,
    umax,
)
from mlip.kernels.tensor_product.triton._tuning import block_configs, fused_block_configs


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
    program re-reads the same edges' inputs from cache. ``gather``: rows of ``x`` and ``o`` through
    ``SRC``/``DST`` (a convolution), node-indexed outputs as segment reductions over ``ROWPTR``/``PERM``.
    """
    segment = gather and role in ("x", "o")
    sections = _sections(desc, {role: structure}, chunks, node_x=False)
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
            body += [f"for u0 in range(0, {umax(desc)}, BU):", "    u = u0 + tl.arange(0, BU)"]
            body += ["    " + line for line in em.lines]
        else:
            body += em.lines
        for c, name in em.acc.items():
            axis = 1 if role == "y" else 0 if segment else None  # sum over channels (y) or a node's edges
            value = name if axis is None else f"tl.sum({name}, axis={axis})"
            body.append(_store(desc, c, value, segment))
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
    deterministic. The chunks (``fused_chunks``) become sections as in :func:`kernel_source`.
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
    written: set[Component] = set()
    bodies = []
    for em in sections:
        per_node = {c: a for c, a in em.acc.items() if c.slot == "x"}
        per_edge = {c: a for c, a in em.acc.items() if c.slot != "x"}
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
            if c.slot == "w":  # each weight column belongs to one path: always a first write
                ins = desc.instructions[c.block]
                ptr = f"DW + e[:, None] * sdw + {column(desc, c)} + u[None, :]"
                mask = f"valid[:, None] & (u[None, :] < {ins.path_shape[0]})"
                loop.append(f"tl.store({ptr}, {a}, mask={mask})")
            else:
                ptr = f"DY + (tile * n_rows + e) * sdy + {column(desc, c)}"
                value = f"tl.sum({a}, axis=1)"
                if c in written:
                    value = f"tl.load({ptr}, mask=valid, other=0.0) + {value}"
                loop.append(f"tl.store({ptr}, {value}, mask=valid)")
        body += ["for start in range(beg, end, BE):", *["    " + line for line in loop]]
        for c, a in per_node.items():
            mul, ir = desc.irreps_in1[c.block]
            ptr = f"DX + node * sdx + {column(desc, c)} + u * {ir.dim}"
            value = f"tl.sum({a}, axis=0)"
            if c in written:
                value = f"tl.load({ptr}, mask=u < {mul}, other=0.0) + {value}"
            body.append(f"tl.store({ptr}, {value}, mask=u < {mul})")
        written |= set(em.acc)
        bodies.append(body)
    return _program(configs, params, prologue, bodies, separate=True)


def _program(
    configs: str, params: list[str], prologue: list[str], sections: list[list[str]], separate: bool
) -> str:
    """Source of the kernel running ``sections`` (each: its constants and body) in order after ``prologue``.

    ``separate`` makes each section a ``noinline`` function of its own (repeating the cheap prologue),
    called in order with a barrier between (later fused sections read-add what earlier ones wrote).
    Compilation then stays near-linear in the number of sections: Triton's coalescing pass walks, for
    every load and store, the whole connected graph of operations around it, which is the whole kernel
    when it is one function. The functions stay functions down to the machine code (one ``CALL`` per
    section and program, against loops over the node's edges inside each); ptxas allocates their
    registers separately, so the kernel needs the most any section needs. Kept for the big kernels only:
    the forward compiles fast either way and uses fewer registers as one function."""
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


def _sections(desc: TPDescriptor, roles: dict[str, Structure], chunks, node_x: bool) -> list[_Emitter]:
    """One emitter per path chunk, holding the bodies of every role's forms over the chunk's paths."""
    entries = couplings(desc)[0]
    sections = []
    for n, paths in enumerate(chunks):
        em = _Emitter(desc, prefix=f"s{n}_", node_x=node_x)
        for role, structure in roles.items():
            for form in structure:
                em.version = dict(form)
                _body(em, role, paths, entries)
        sections.append(em)
    return sections


def _signature(structures: list[Structure]) -> tuple[list[str], list[str]]:
    """Pointer and row-stride parameter names of the operands the forms read, slot by slot."""
    counts = {slot: 0 for slot in ROLES}
    for structure in structures:
        for form in structure:
            for slot, number in form:
                counts[slot] = max(counts[slot], number + 1)
    pointers = [f"{slot.upper()}{v}" for slot in ROLES for v in range(counts[slot])]
    strides = [f"s{slot}{v}" for slot in ROLES for v in range(counts[slot])]
    return pointers, strides


def _constants(desc: TPDescriptor, em: _Emitter, out: str) -> list[str]:
    """The coupling coefficients a section uses, as compile-time constants in the output's dtype (exact
    float64 literals; constants cost no registers, unlike values loaded from a table)."""
    values = couplings(desc)[1]
    return [f"c{n} = tl.full([], {values[n]!r}, {out}.dtype.element_ty)" for n in sorted(em.coefs)]


@dataclass
class _Emitter:
    """Builds the straight-line body of one section: lazily emitted loads, then accumulations.

    ``version`` names, per slot, the operand of the form being emitted, so a body may sum several forms
    of the same slot (double backward) and share the loads they have in common."""

    desc: TPDescriptor
    prefix: str = ""  # per-section prefix of variable names (no loop-carried clashes between sections)
    node_x: bool = False  # x is the program's own node row (fused gradients): loaded once, [1, BU]
    version: dict[str, int] = field(default_factory=dict)  # slot -> operand number of the current form
    pre: list[str] = field(default_factory=list)  # loads hoisted out of the edge loop
    lines: list[str] = field(default_factory=list)
    loaded: set[tuple[int, Component]] = field(default_factory=set)
    acc: dict[Component, str] = field(default_factory=dict)  # component -> accumulator name
    coefs: set[int] = field(default_factory=set)  # coefficient-table entries used

    def load(self, comp: Component) -> str:
        """Name of the variable holding ``comp`` of the current form's operand (emitting its load once)."""
        d = self.desc
        slot, v = comp.slot, self.version.get(comp.slot, 0)
        ptr, stride = f"{slot.upper()}{v}", f"s{slot}{v}"
        name = f"{self.prefix}v_{slot}{v}_{comp.key}"
        if (v, comp) in self.loaded:
            return name
        self.loaded.add((v, comp))
        col = column(d, comp)
        if slot == "y":
            load = f"tl.load({ptr} + e * {stride} + {col}, mask=valid, other=0.0)"
            self.lines.append(f"{name} = {load}[:, None]")
        elif slot == "x" and self.node_x:
            mul, ir = d.irreps_in1[comp.block]
            self.pre.append(
                f"{name} = tl.load({ptr} + node * {stride} + {col} + u[None, :] * {ir.dim}, "
                f"mask=u[None, :] < {mul}, other=0.0)"
            )
        elif slot == "w":
            ins = d.instructions[comp.block]
            self.lines.append(
                f"{name} = tl.load({ptr} + e[:, None] * {stride} + {col} + u[None, :], "
                f"mask=valid[:, None] & (u[None, :] < {ins.path_shape[0]}), other=0.0)"
            )
        else:
            irreps, row = (d.irreps_in1, "rx") if slot == "x" else (d.irreps_out, "ro")
            mul, ir = irreps[comp.block]
            self.lines.append(
                f"{name} = tl.load({ptr} + {row}[:, None] * {stride} + {col} + u[None, :] * {ir.dim}, "
                f"mask=valid[:, None] & (u[None, :] < {mul}), other=0.0)"
            )
        return name

    def accumulate(self, comp: Component, expr: str) -> None:
        name = f"{self.prefix}acc_{comp.slot}_{comp.key}"
        self.acc.setdefault(comp, name)
        self.lines.append(f"{name} += {expr}")


def _body(em: _Emitter, role: str, paths: tuple[int, ...], entries: list) -> None:
    """Emit the accumulations of slot ``role`` over ``paths`` into ``em``."""
    d = em.desc
    for p in paths:
        ins, path_entries = d.instructions[p], entries[p]
        d1, do = d.irreps_in1[ins.i_in1].ir.dim, d.irreps_out[ins.i_out].ir.dim
        weight = f" * {em.load(Component('w', p))}" if role != "w" else ""
        if role == "o":
            for k in range(do):
                terms = [
                    f"{a} * {em.load(Component('x', ins.i_in1, i))}"
                    for i in range(d1)
                    if (a := _coupled_y(em, p, path_entries, i, k)) is not None
                ]
                if terms:
                    em.accumulate(Component("o", ins.i_out, k), f"({' + '.join(terms)}){weight}")
        elif role == "x":
            for i in range(d1):
                terms = [
                    f"{a} * {em.load(Component('o', ins.i_out, k))}"
                    for k in range(do)
                    if (a := _coupled_y(em, p, path_entries, i, k)) is not None
                ]
                if terms:
                    em.accumulate(Component("x", ins.i_in1, i), f"({' + '.join(terms)}){weight}")
        elif role == "w":
            terms = []
            for k in range(do):
                inner = [
                    f"{a} * {em.load(Component('x', ins.i_in1, i))}"
                    for i in range(d1)
                    if (a := _coupled_y(em, p, path_entries, i, k)) is not None
                ]
                if inner:
                    terms.append(f"{em.load(Component('o', ins.i_out, k))} * ({' + '.join(inner)})")
            em.accumulate(Component("w", p), " + ".join(terms))
        else:  # role y: accumulate [BE, BU] per component; the store reduces over channels once
            pairs = sorted({(i, k) for (i, _, k, _) in path_entries})
            for i, k in pairs:
                r = f"{em.prefix}r_{p}_{i}_{k}"  # a temporary: reassigned by the next form
                x, g = em.load(Component("x", ins.i_in1, i)), em.load(Component("o", ins.i_out, k))
                em.lines.append(f"{r} = {x} * {g}{weight}")
                for ii, j, kk, n in path_entries:
                    if (ii, kk) == (i, k):
                        em.coefs.add(n)
                        em.accumulate(Component("y", ins.i_in2, j), f"c{n} * {r}")


def _coupled_y(em: _Emitter, p: int, path_entries: list, i: int, k: int) -> str | None:
    """``sum_j c[i, j, k] y_j`` as an expression (``[BE, 1]``), or ``None`` if all zero."""
    i2 = em.desc.instructions[p].i_in2
    terms = []
    for ii, j, kk, n in path_entries:
        if ii == i and kk == k:
            em.coefs.add(n)
            terms.append(f"c{n} * {em.load(Component('y', i2, j))}")
    return f"({' + '.join(terms)})" if terms else None


def _store(desc: TPDescriptor, comp: Component, value: str, segment: bool) -> str:
    """Store one accumulated component of the output slot (written by one section only)."""
    col = column(desc, comp)
    if comp.slot == "y":
        return f"tl.store(OUT + e * sout + {col}, {value}, mask=valid)"
    if comp.slot == "w":
        step, mul = 1, desc.instructions[comp.block].path_shape[0]
    else:
        mul, ir = (desc.irreps_in1 if comp.slot == "x" else desc.irreps_out)[comp.block]
        step = ir.dim
    if segment:
        ptr, mask = f"OUT + node * sout + {col} + u * {step}", f"u < {mul}"
    else:
        ptr = f"OUT + e[:, None] * sout + {col} + u[None, :] * {step}"
        mask = f"valid[:, None] & (u[None, :] < {mul})"
    return f"tl.store({ptr}, {value}, mask={mask})"
