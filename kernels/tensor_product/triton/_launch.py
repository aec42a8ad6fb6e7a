"""Launch: run the requested slots of the form over a graph (no autograd).

A request ``(role, forms)`` asks for slot ``role`` summed over ``forms``, each a :data:`Form` mapping
the three other slots to tensors. Outputs are fresh zero tensors (rows a kernel does not write stay 0).
"""

from __future__ import annotations

import torch
from torch.fx.experimental.symbolic_shapes import guard_or_false

from mlip.kernels import _library
from mlip.kernels.tensor_product.descriptor import TPDescriptor
from mlip.kernels.tensor_product.triton._cache import compiled, compiled_fused
from mlip.kernels.tensor_product.triton._layout import (
    ROLES,
    Operand,
    Structure,
    next_pow2,
    umax,
    weight_width,
)
from mlip.kernels.tensor_product.triton._tuning import autotuning, fused_tile
from mlip.kernels.tp_conv.graph import ConvGraph

Form = dict[str, torch.Tensor]  # the three slots other than the result's -> operand


def evaluate_now(
    desc: TPDescriptor, graph: ConvGraph, requests: list[tuple[str, list[Form]]]
) -> list[torch.Tensor]:
    """Each request ``(role, forms)``: slot ``role`` summed over ``forms`` (no autograd). Requests for two
    or three of the slots ``x``, ``y``, ``w`` of a convolution share one fused launch."""
    fusable = fused_requests(graph, [role for role, _ in requests])
    results: dict[int, torch.Tensor] = {}
    if fusable:
        fused = launch_fused(desc, graph, {requests[n][0]: requests[n][1] for n in fusable})
        results = {n: fused[requests[n][0]] for n in fusable}
    return [results[n] if n in results else launch(desc, graph, *requests[n]) for n in range(len(requests))]


def fused_requests(graph: ConvGraph, roles: list[str]) -> list[int]:
    """Indices of the requests that run as one fused launch: two or three distinct slots among ``x``,
    ``y``, ``w`` of a convolution; none otherwise."""
    fusable = [n for n, role in enumerate(roles) if role in "xyw"]
    distinct = len({roles[n] for n in fusable}) == len(fusable)
    return fusable if graph.gather and len(fusable) >= 2 and distinct else []


def orders_needed(graph: ConvGraph, roles: list[str]) -> set[str]:
    """The CSR orders (``"dst"``, ``"src"``) the launches of these requests read."""
    needed = set()
    if graph.gather and "o" in roles:
        needed.add("dst")
    if graph.gather and ("x" in roles or fused_requests(graph, roles)):
        needed.add("src")
    return needed


def launch(desc: TPDescriptor, graph: ConvGraph, role: str, forms: list[Form]) -> torch.Tensor:
    """Slot ``role`` (``[rows, cols]``) summed over ``forms``, each giving the three other slots."""
    like = forms[0]["x" if role != "x" else "o"]
    out = torch.zeros(_shape(desc, graph, role), dtype=like.dtype, device=like.device)  # unwritten: 0
    if _known_zero(graph.num_edges) or _known_zero(out.shape[0]):
        return out
    structures, operands = number_operands({role: forms})
    channels = umax(desc)
    segment = graph.gather and role in ("x", "o")
    rowptr, perm = graph.csr("dst" if role == "o" else "src") if segment else (graph.src, graph.src)

    def grid(meta: dict) -> tuple[int, ...]:
        if segment:
            return (out.shape[0], _cdiv(channels, meta["BU"]))
        if role == "y":
            return (_cdiv(graph.num_edges, meta["BE"]),)
        return (_cdiv(graph.num_edges, meta["BE"]), _cdiv(channels, meta["BU"]))

    kernel = compiled(desc, role, structures[role], graph.gather, autotuning())
    _library.launch(
        kernel, grid, *operands, out, graph.src, graph.dst, rowptr, perm, graph.num_edges,
        *(t.stride(0) for t in operands), out.stride(0), _bucket(graph.num_edges),
    )  # fmt: skip
    return out


def launch_fused(
    desc: TPDescriptor, graph: ConvGraph, forms_by_role: dict[str, list[Form]]
) -> dict[str, torch.Tensor]:
    """Slots among ``x``, ``y``, ``w`` of a convolution (``graph.gather``), each summed over its forms, in
    one launch of the fused gradient kernel."""
    like = next(iter(forms_by_role.values()))[0]["o"]
    bu = fused_tile(desc)
    tiles = _cdiv(umax(desc), bu)
    out = {r: torch.zeros(_shape(desc, graph, r), dtype=like.dtype, device=like.device) for r in "xw"}
    dy_tiles = torch.zeros(tiles * graph.num_edges, desc.irreps_in2.dim, dtype=like.dtype, device=like.device)
    if not (_known_zero(graph.num_edges) or _known_zero(graph.num_src)):
        structures, operands = number_operands(forms_by_role)
        rowptr, perm = graph.csr("src")
        kernel = compiled_fused(desc, tuple(sorted(structures.items())), autotuning())
        _library.launch(
            kernel, (graph.num_src, tiles),
            *operands, out["x"], dy_tiles, out["w"], graph.dst, rowptr, perm, graph.num_edges,
            *(t.stride(0) for t in operands), out["x"].stride(0), dy_tiles.stride(0), out["w"].stride(0),
            _bucket(graph.num_edges), BU=bu,
        )  # fmt: skip
    out["y"] = dy_tiles.view(tiles, graph.num_edges, -1).sum(0)
    return {r: out[r] for r in forms_by_role}


def number_operands(
    forms_by_role: dict[str, list[Form]],
) -> tuple[dict[str, Structure], list[torch.Tensor]]:
    """Number the distinct operands of each slot (by identity): the forms' structures, and the operands
    in the kernel's parameter order (slot by slot, as the generated signature)."""
    numbered: dict[str, list[torch.Tensor]] = {slot: [] for slot in ROLES}
    structures = {}
    for role, forms in forms_by_role.items():
        structures[role] = tuple(
            tuple(Operand(slot, identity_index(numbered[slot], form[slot])) for slot in sorted(form))
            for form in forms
        )
    return structures, [_row_major(t) for slot in ROLES for t in numbered[slot]]


def identity_index(items: list[torch.Tensor], t: torch.Tensor) -> int:
    """Index of ``t`` in ``items`` by identity (not value), appending it if absent."""
    index = next((n for n, item in enumerate(items) if item is t), None)
    if index is None:
        items.append(t)
        index = len(items) - 1
    return index


def _shape(desc: TPDescriptor, graph: ConvGraph, role: str) -> tuple[int, int]:
    rows = {"x": graph.num_src, "o": graph.num_nodes, "y": graph.num_edges, "w": graph.num_edges}[role]
    cols = {"x": desc.irreps_in1.dim, "y": desc.irreps_in2.dim, "o": desc.irreps_out.dim}
    return rows, weight_width(desc) if role == "w" else cols[role]


def _row_major(t: torch.Tensor) -> torch.Tensor:
    """Unit column stride (row stride may be 0, as for shared weights)."""
    return t if t.dim() == 2 and (t.stride(1) == 1 or t.shape[1] == 1) else t.contiguous()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _known_zero(n: int | torch.SymInt) -> bool:
    """``n == 0``, without adding a guard while tracing (a symbolic size may be zero at run time; the
    launch of an empty grid then does nothing)."""
    return guard_or_false(n == 0)


def _bucket(num_edges: int | torch.SymInt) -> int | torch.SymInt:
    """The autotuning key: the edge count rounded up to a power of two (the count itself while tracing)."""
    return next_pow2(num_edges) if isinstance(num_edges, int) else num_edges
