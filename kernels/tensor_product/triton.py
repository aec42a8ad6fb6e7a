"""Triton tensor product and convolution for channelwise descriptors (``uvu``, ``mul2 == 1``).

The product is a quadrilinear form ``T(x, y, w, o) = sum coef C[i,j,k] x[src,u,i] y[e,j] w[e,p,u] o[dst,u,k]``
over edges ``e``, paths ``p`` and channels ``u``. The forward is ``dT/do``; the gradient with respect to
any other slot is ``dT/d(slot)`` with ``o`` replaced by the incoming gradient. So one generated kernel
family, parametrized by the *role* (the slot it computes), gives forward (role ``o``), backward (roles
``x``, ``y``, ``w``) and, because the autograd function's backward calls the same differentiable
function, double backward and beyond, with no third hand-written kernel.

Kernels are generated per descriptor: the sparse Wigner-3j entries are unrolled into straight-line code
over tiles ``[BE edges, BU channels]`` read directly in e3nn's layout; the coefficients are read from a
small table in the tensors' dtype (exact in float64). Node-indexed outputs (roles ``o`` and ``x`` of a
convolution) are segment reductions over a CSR of edges sorted by ``dst`` (resp. ``src``): each program
owns one node and a channel tile, sums its edges in registers and writes once. There are no atomics,
so results are deterministic, and per-edge messages never reach global memory. Paths are split into
chunks of at most ``MAX_LIVE`` accumulated components to bound register use; the chunks are consecutive
sections of one kernel (one launch per role), each writing its own components. The backward of a
convolution computes roles ``x``, ``y`` and ``w`` in one fused kernel over the edges sorted by ``src``
(:func:`fused_grad_source`): the incoming gradient is gathered once instead of three times. Block
sizes are autotuned per kernel, keyed on the edge count rounded up to a power of two (``MLIP_TP_AUTOTUNE=0``
turns tuning off: the first candidate of :func:`block_configs`, as in the interpreter).
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
from mlip.o3 import cached_constant

ROLES = ("x", "y", "w", "o")
MAX_LIVE = 16
FUSED_BU = 32  # channel tile of the fused gradient kernel


# ----------------------------------------------------------------------------------------------- codegen
def _nonzeros(desc: TPDescriptor) -> list[list[tuple[int, int, int, int]]]:
    """Per path: ``(i, j, k, n)`` for each nonzero ``coef * C[i, j, k]`` stored at ``table[n]``."""
    out, n = [], 0
    for ins in desc.instructions:
        cg = wigner_block(ins, desc, torch.float64, torch.device("cpu"))
        entries = []
        for i, j, k in (cg.abs() > 1e-12).nonzero().tolist():
            entries.append((i, j, k, n))
            n += 1
        out.append(entries)
    return out


def coefficient_table(desc: TPDescriptor) -> torch.Tensor:
    """Values referenced by :func:`_nonzeros`, float64."""
    values = []
    for ins in desc.instructions:
        cg = wigner_block(ins, desc, torch.float64, torch.device("cpu"))
        values.extend(cg[tuple((cg.abs() > 1e-12).nonzero().T)].tolist())
    return torch.tensor(values + [0.0], dtype=torch.float64)


def weight_column(desc: TPDescriptor, p: int) -> int:
    """First column of path ``p`` in the extended weights (:func:`weight_slot`)."""
    ins = desc.instructions[p]
    if ins.has_weight:
        return ins.weight_offset
    umax = max(mi.mul for mi in desc.irreps_in1)
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
    paths = [p for p in range(len(desc.instructions)) if _live(desc, role, p)]
    for p in sorted(paths, key=lambda p: min(_live(desc, role, p))[:2]):
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
    """Builds the straight-line body: lazily emitted loads, then accumulations."""

    desc: TPDescriptor
    prefix: str = ""  # per-section prefix of variable names (no loop-carried clashes between sections)
    node_x: bool = False  # x is the program's own node row (fused gradients): loaded once, [1, BU]
    pre: list[str] = field(default_factory=list)  # loads hoisted out of the edge loop
    lines: list[str] = field(default_factory=list)
    loaded: set = field(default_factory=set)
    acc: dict = field(default_factory=dict)  # component -> accumulator name
    coefs: set = field(default_factory=set)  # coefficient-table entries used

    def load(self, comp: tuple) -> str:
        d = self.desc
        name = f"{self.prefix}v_" + "_".join(str(c) for c in comp)
        if comp in self.loaded:
            return name
        self.loaded.add(comp)
        if comp[0] == "y":
            col = d.irreps_in2.slices()[comp[1]].start + comp[2]
            self.lines.append(f"{name} = tl.load(Y + e * sy + {col}, mask=valid, other=0.0)[:, None]")
        elif comp[0] == "x" and self.node_x:
            mul, ir = d.irreps_in1[comp[1]]
            col = d.irreps_in1.slices()[comp[1]].start + comp[2]
            self.pre.append(
                f"{name} = tl.load(X + node * sx + {col} + u[None, :] * {ir.dim}, "
                f"mask=u[None, :] < {mul}, other=0.0)"
            )
        elif comp[0] == "w":
            ins = d.instructions[comp[1]]
            self.lines.append(
                f"{name} = tl.load(W + e[:, None] * sw + {weight_column(d, comp[1])} + u[None, :], "
                f"mask=valid[:, None] & (u[None, :] < {ins.path_shape[0]}), other=0.0)"
            )
        else:
            irreps, ptr, row, stride = (
                (d.irreps_in1, "X", "rx", "sx") if comp[0] == "x" else (d.irreps_out, "O", "ro", "so")
            )
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
        weight = f" * {em.load(('w', p))}"
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
                r = f"{em.prefix}r_{p}_{i}_{k}"
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
    count; the first one only when not tuning (interpreter, or ``MLIP_TP_AUTOTUNE=0``)."""
    umax = _next_pow2(max(mi.mul for mi in desc.irreps_in1))
    configs = []
    for be, bu, warps in ((16, 32, 4), (32, 32, 4), (16, 64, 4)):
        candidate = (be, min(bu, umax), warps)
        if candidate not in configs:
            configs.append(candidate)
    return configs if tune else configs[:1]


def autotuning() -> bool:
    """Autotune block sizes: compiled Triton only, unless ``MLIP_TP_AUTOTUNE=0``."""
    return os.environ.get("TRITON_INTERPRET") != "1" and os.environ.get("MLIP_TP_AUTOTUNE", "1") != "0"


def kernel_source(
    desc: TPDescriptor, role: str, chunks: tuple[tuple[int, ...], ...], gather: bool, tune: bool
) -> str:
    """Source of the one Triton kernel computing slot ``role`` from the others over all paths.

    The path chunks become consecutive sections of the same program (each with its own accumulators,
    so register use stays bounded by ``MAX_LIVE``); each output component belongs to one section, which
    stores it. Every launch therefore writes its output from scratch (safe to re-run, as the autotuner
    does), and a program re-reads the same edges' inputs from cache.
    """
    nonzeros = _nonzeros(desc)
    segment = gather and role in ("x", "o")
    sections = []
    for n, paths in enumerate(chunks):
        em = _Emitter(desc, prefix=f"s{n}_")
        _body(em, role, paths, nonzeros)
        sections.append(em)
    umax = max(mi.mul for mi in desc.irreps_in1)
    configs = ", ".join(
        f"triton.Config({{'BE': {be}, 'BU': {bu}}}, num_warps={w})" for be, bu, w in block_configs(desc, tune)
    )
    head = [
        "import triton",
        "import triton.language as tl",
        "",
        "",
        f"@triton.autotune(configs=[{configs}], key=['E_BUCKET'])",
        "@triton.jit",
        "def kernel(X, Y, W, O, OUT, CG, SRC, DST, ROWPTR, PERM, n_rows, sx, sy, sw, so, sout, E_BUCKET,",
        "           BE: tl.constexpr, BU: tl.constexpr):",
    ]
    body = [f"c{n} = tl.load(CG + {n})" for n in sorted(set().union(*(em.coefs for em in sections)))]
    zero = "tl.zeros([BE, BU], dtype=OUT.dtype.element_ty)"
    rows = []
    if gather:
        rows += ["rx = tl.load(SRC + e, mask=valid, other=0)"] if role != "x" else []
        rows += ["ro = tl.load(DST + e, mask=valid, other=0)"] if role != "o" else []
    else:
        rows += ["rx = e", "ro = e"]
    if segment:
        body += [
            "node = tl.program_id(0)",
            "u = tl.program_id(1) * BU + tl.arange(0, BU)",
            "beg = tl.load(ROWPTR + node)",
            "end = tl.load(ROWPTR + node + 1)",
        ]
    elif role == "y":
        body += ["e = tl.program_id(0) * BE + tl.arange(0, BE)", "valid = e < n_rows", *rows]
    else:
        body += [
            "e = tl.program_id(0) * BE + tl.arange(0, BE)",
            "u = tl.program_id(1) * BU + tl.arange(0, BU)",
            "valid = e < n_rows",
            *rows,
        ]
    for em in sections:
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
    return "\n".join(head + ["    " + line for line in body]) + "\n"


def fused_grad_source(desc: TPDescriptor, chunks: tuple[tuple[int, ...], ...], tune: bool) -> str:
    """Source of the one kernel computing the gradients of a convolution for ``x``, ``y`` and ``w`` at once.

    Each program owns one source node and a channel tile and walks that node's edges (CSR by ``src``):
    its own ``x`` row is read once, the incoming gradient (slot ``o``) is gathered through ``dst`` once
    per edge and shared by the three bodies. The ``x`` gradient is summed over the edges in registers
    and written once; the ``w`` gradient of an edge is written by the one program owning its source and
    tile; the ``y`` gradient, a sum over channels, is written per tile as partial rows
    ``DY[tile * E + e]`` that the launcher adds up. No atomics, so the result is deterministic. Path
    chunks become sections as in :func:`kernel_source`.
    """
    nonzeros = _nonzeros(desc)
    sections = []
    for n, paths in enumerate(chunks):
        em = _Emitter(desc, prefix=f"s{n}_", node_x=True)
        for role in ("x", "w", "y"):
            _body(em, role, paths, nonzeros)
        sections.append(em)
    configs = ", ".join(
        f"triton.Config({{'BE': {be}}}, num_warps={w})" for be, w in fused_block_configs(tune)
    )
    head = [
        "import triton",
        "import triton.language as tl",
        "",
        "",
        f"@triton.autotune(configs=[{configs}], key=['E_BUCKET'])",
        "@triton.jit",
        "def kernel(X, Y, W, O, DX, DY, DW, CG, DST, ROWPTR, PERM, n_rows, sx, sy, sw, so, sdx, sdy, sdw,",
        "           E_BUCKET, BE: tl.constexpr, BU: tl.constexpr):",
    ]
    body = [f"c{n} = tl.load(CG + {n})" for n in sorted(set().union(*(em.coefs for em in sections)))]
    body += [
        "node = tl.program_id(0)",
        "tile = tl.program_id(1)",
        "u = tile * BU + tl.arange(0, BU)",
        "beg = tl.load(ROWPTR + node)",
        "end = tl.load(ROWPTR + node + 1)",
    ]
    written: set = set()
    for n, em in enumerate(sections):
        if n:
            body.append("tl.debug_barrier()")  # earlier sections' stores visible to this program's loads
        per_node = {c: a for c, a in em.acc.items() if c[0] == "x"}
        per_edge = {c: a for c, a in em.acc.items() if c[0] != "x"}
        body += em.pre
        body += [f"{a} = tl.zeros([BE, BU], dtype=DX.dtype.element_ty)" for a in per_node.values()]
        loop = [
            "idx = start + tl.arange(0, BE)",
            "valid = idx < end",
            "e = tl.load(PERM + idx, mask=valid, other=0)",
            "ro = tl.load(DST + e, mask=valid, other=0)",
        ]
        for a in per_edge.values():
            loop.append(f"{a} = tl.zeros([BE, BU], dtype=DX.dtype.element_ty)")
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
        for c, a in per_node.items():  # a block's paths are in one section (path_chunks): one write
            mul, ir = desc.irreps_in1[c[1]]
            ptr = f"DX + node * sdx + {desc.irreps_in1.slices()[c[1]].start + c[2]} + u * {ir.dim}"
            body.append(f"tl.store({ptr}, tl.sum({a}, axis=0), mask=u < {mul})")
        written |= set(em.acc)
    return "\n".join(head + ["    " + line for line in body]) + "\n"


def fused_block_configs(tune: bool) -> list[tuple[int, int]]:
    """``(BE, num_warps)`` candidates of the fused gradient kernel. Its channel tile is fixed
    (:data:`FUSED_BU`, clipped to the channel count) because the number of ``y`` partials depends on it."""
    configs = [(16, 4), (32, 4), (16, 8)]
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
def _compiled_fused(desc: TPDescriptor, chunks: tuple[tuple[int, ...], ...], tune: bool):
    return _load_kernel(fused_grad_source(desc, chunks, tune), "xyw")


@functools.cache
def _compiled(desc: TPDescriptor, role: str, chunks: tuple[tuple[int, ...], ...], gather: bool, tune: bool):
    return _load_kernel(kernel_source(desc, role, chunks, gather, tune), role)


# ------------------------------------------------------------------------------------------------ launch
def _row_major(t: torch.Tensor) -> torch.Tensor:
    """Unit column stride (row stride may be 0, as for shared weights)."""
    return t if t.dim() == 2 and (t.stride(1) == 1 or t.shape[1] == 1) else t.contiguous()


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def launch(desc: TPDescriptor, graph: ConvGraph, role: str, ops: dict[str, torch.Tensor]) -> torch.Tensor:
    """Compute slot ``role`` (``[rows, cols]``) from the three other slots ``ops`` (no autograd)."""
    like = ops["x"] if role != "x" else ops["o"]
    rows = {"x": graph.num_src, "o": graph.num_nodes, "y": graph.num_edges, "w": graph.num_edges}[role]
    cols = {
        "x": desc.irreps_in1.dim,
        "y": desc.irreps_in2.dim,
        "w": _weight_width(desc),
        "o": desc.irreps_out.dim,
    }[role]
    out = torch.zeros(rows, cols, dtype=like.dtype, device=like.device)  # components no path writes: 0
    if graph.num_edges == 0 or rows == 0:
        return out
    slots = {r: _row_major(t) for r, t in ops.items()}
    slots[role] = out
    table = cached_constant(("tp_triton_cg", desc), lambda: coefficient_table(desc), like.dtype, like.device)
    umax = max(mi.mul for mi in desc.irreps_in1)
    segment = graph.gather and role in ("x", "o")
    rowptr, perm = graph.csr("dst" if role == "o" else "src") if segment else (graph.src, graph.src)

    def grid(meta: dict) -> tuple[int, ...]:
        if segment:
            return (rows, triton_cdiv(umax, meta["BU"]))
        if role == "y":
            return (triton_cdiv(graph.num_edges, meta["BE"]),)
        return (triton_cdiv(graph.num_edges, meta["BE"]), triton_cdiv(umax, meta["BU"]))

    kernel = _compiled(desc, role, tuple(path_chunks(desc, role)), graph.gather, autotuning())
    kernel[grid](
        slots["x"], slots["y"], slots["w"], slots["o"], out, table,
        graph.src, graph.dst, rowptr, perm, graph.num_edges,
        slots["x"].stride(0), slots["y"].stride(0), slots["w"].stride(0), slots["o"].stride(0),
        out.stride(0), _next_pow2(graph.num_edges),
    )  # fmt: skip
    return out


def launch_fused_grads(
    desc: TPDescriptor, graph: ConvGraph, ops: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slots ``x``, ``y``, ``w`` of a convolution (``graph.gather``) from ``ops`` = ``{x, y, w, o}`` in one
    launch of the fused gradient kernel (no autograd)."""
    x, y, w, g = (_row_major(ops[r]) for r in ("x", "y", "w", "o"))
    umax = max(mi.mul for mi in desc.irreps_in1)
    bu = min(FUSED_BU, _next_pow2(umax))
    tiles = triton_cdiv(umax, bu)
    dx = torch.zeros(graph.num_src, desc.irreps_in1.dim, dtype=x.dtype, device=x.device)
    dy_tiles = torch.zeros(tiles * graph.num_edges, desc.irreps_in2.dim, dtype=x.dtype, device=x.device)
    dw = torch.zeros(graph.num_edges, _weight_width(desc), dtype=x.dtype, device=x.device)
    if graph.num_edges and graph.num_src:
        table = cached_constant(("tp_triton_cg", desc), lambda: coefficient_table(desc), x.dtype, x.device)
        rowptr, perm = graph.csr("src")
        kernel = _compiled_fused(desc, tuple(path_chunks(desc, "x")), autotuning())
        kernel[(graph.num_src, tiles)](
            x, y, w, g, dx, dy_tiles, dw, table, graph.dst, rowptr, perm, graph.num_edges,
            x.stride(0), y.stride(0), w.stride(0), g.stride(0), dx.stride(0), dy_tiles.stride(0),
            dw.stride(0), _next_pow2(graph.num_edges), BU=bu,
        )  # fmt: skip
    dy = dy_tiles.view(tiles, graph.num_edges, -1).sum(0)
    return dx, dy, dw


def _weight_width(desc: TPDescriptor) -> int:
    umax = max(mi.mul for mi in desc.irreps_in1)
    return desc.weight_numel + umax * sum(not ins.has_weight for ins in desc.instructions)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


class _Slot(torch.autograd.Function):
    """One slot of the quadrilinear form from the three others; backward = the same op on other slots."""

    @staticmethod
    def forward(ctx, desc, graph, role, a, b, c):  # noqa: ANN001
        ctx.desc, ctx.graph, ctx.role = desc, graph, role
        ctx.save_for_backward(a, b, c)
        return launch(desc, graph, role, dict(zip(_others(role), (a, b, c), strict=True)))

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001
        ops = dict(zip(_others(ctx.role), ctx.saved_tensors, strict=True))
        ops[ctx.role] = grad
        needed = dict(zip(_others(ctx.role), ctx.needs_input_grad[3:], strict=True))
        if ctx.role == "o" and ctx.graph.gather and sum(needed.values()) >= 2:
            fused = _FusedGrads.apply(ctx.desc, ctx.graph, *(ops[r] for r in ROLES))
            grads = dict(zip("xyw", fused, strict=True))
        else:
            grads = {
                r: compute(ctx.desc, ctx.graph, r, {k: v for k, v in ops.items() if k != r})
                for r in _others(ctx.role)
                if needed[r]
            }
        return (None, None, None, *(grads[r] if needed[r] else None for r in _others(ctx.role)))


class _FusedGrads(torch.autograd.Function):
    """Slots ``x``, ``y``, ``w`` of a convolution from the three others and the output gradient, in one
    kernel (:func:`fused_grad_source`). Each result is a slot of the same form, so its backward is again
    a sum of :func:`compute` calls (differentiable to any order)."""

    @staticmethod
    def forward(ctx, desc, graph, x, y, w, o):  # noqa: ANN001
        ctx.desc, ctx.graph = desc, graph
        ctx.save_for_backward(x, y, w, o)
        ctx.set_materialize_grads(False)  # an unused result gets None, not a zero tensor to multiply
        return launch_fused_grads(desc, graph, {"x": x, "y": y, "w": w, "o": o})

    @staticmethod
    def backward(ctx, *grads):  # noqa: ANN001
        ops = dict(zip(ROLES, ctx.saved_tensors, strict=True))
        needed = dict(zip(ROLES, ctx.needs_input_grad[2:], strict=True))
        result: dict[str, torch.Tensor | None] = dict.fromkeys(ROLES)
        for out, g_out in zip("xyw", grads, strict=True):
            if g_out is None:
                continue
            replaced = {**ops, out: g_out}  # d<g_out, slot out>/d(slot s) = slot s with out -> g_out
            for s in ROLES:
                if s != out and needed[s]:
                    term = compute(ctx.desc, ctx.graph, s, {k: v for k, v in replaced.items() if k != s})
                    result[s] = term if result[s] is None else result[s] + term
        return (None, None, *result.values())


def _others(role: str) -> tuple[str, ...]:
    return tuple(r for r in ROLES if r != role)


def compute(desc: TPDescriptor, graph: ConvGraph, role: str, ops: dict[str, torch.Tensor]) -> torch.Tensor:
    """Differentiable (to any order) slot ``role`` of the quadrilinear form."""
    return _Slot.apply(desc, graph, role, *(ops[r] for r in _others(role)))


def weight_slot(
    desc: TPDescriptor, weight: torch.Tensor | None, rows: int, like: torch.Tensor
) -> torch.Tensor:
    """Extended per-edge weights ``[rows, numel + n_unweighted * U]``: each unweighted path reads its own
    block of ones, so the form is linear in this slot (its gradient for the ones is dropped by ``cat``).
    Shared weights are expanded (row stride 0, summed by autograd)."""
    umax = max(mi.mul for mi in desc.irreps_in1)
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
