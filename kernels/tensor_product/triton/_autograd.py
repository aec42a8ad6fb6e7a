"""Autograd: requests of the form as one custom op, ``mlip::tp_forms``, differentiable to any order.

The op's arguments are tensors and plain values only (so ``torch.compile`` and ``torch.export`` keep it
as one node): the operands, the requests encoded as a string (:func:`_encode`), the descriptor as its
:func:`~mlip.kernels.tensor_product.descriptor.descriptor_key`, and the graph as its edge tensors, the
CSR orders its launches read (computed before the op, as ordinary tensor ops) and its sizes.
"""

from __future__ import annotations

import torch

from mlip.kernels._library import kernel_op
from mlip.kernels.tensor_product.descriptor import TPDescriptor, descriptor_from_key, descriptor_key
from mlip.kernels.tensor_product.triton._launch import Form, evaluate_now, identity_index, orders_needed
from mlip.kernels.tensor_product.triton._layout import Operand
from mlip.kernels.tp_conv.graph import SORT_KEYS, ConvGraph

Spec = tuple[tuple[str, tuple[tuple[Operand, ...], ...]], ...]  # per request: role, forms (operand indices)


def compute(desc: TPDescriptor, graph: ConvGraph, role: str, ops: Form) -> torch.Tensor:
    """Differentiable (to any order) slot ``role`` of the quadrilinear form from the three others."""
    return evaluate(desc, graph, [(role, [ops])])[0]


def evaluate(
    desc: TPDescriptor, graph: ConvGraph, requests: list[tuple[str, list[Form]]]
) -> list[torch.Tensor]:
    """Differentiable (to any order): for each request ``(role, forms)``, slot ``role`` of the quadrilinear
    form summed over ``forms`` (each a dict of the three other slots)."""
    if not requests:
        return []
    operands: list[torch.Tensor] = []
    spec = tuple(
        (
            role,
            tuple(
                tuple(Operand(slot, identity_index(operands, form[slot])) for slot in sorted(form))
                for form in forms
            ),
        )
        for role, forms in requests
    )
    needed = orders_needed(graph, [role for role, _ in requests])
    if torch.is_grad_enabled():  # the backward's orders too, so that they are cached in ``graph``
        slots = {
            slot for _, forms in requests for form in forms for slot, t in form.items() if t.requires_grad
        }
        needed |= orders_needed(graph, sorted(slots))
    orders = [list(graph.csr(by)) if by in needed else [] for by in SORT_KEYS]
    return tp_forms(
        operands, _encode(spec), descriptor_key(desc), graph.src, graph.dst, *orders,
        graph.num_nodes, graph.num_src, graph.gather,
    )  # fmt: skip


@kernel_op("mlip::tp_forms")
def tp_forms(
    operands: list[torch.Tensor],
    spec: str,
    desc: str,
    src: torch.Tensor,
    dst: torch.Tensor,
    csr_dst: list[torch.Tensor],
    csr_src: list[torch.Tensor],
    num_nodes: int,
    num_src: int,
    gather: bool,
) -> list[torch.Tensor]:
    """The requests of ``spec`` (:func:`_encode`) over ``operands``, no autograd: one tensor per request.
    ``csr_dst`` / ``csr_src``: ``[rowptr, perm]`` of the order (``ConvGraph.csr``), or empty if unused."""
    graph = _graph(src, dst, csr_dst, csr_src, num_nodes, num_src, gather)
    requests = [
        (role, [{s: operands[i] for s, i in form} for form in forms]) for role, forms in _decode(spec)
    ]
    return evaluate_now(descriptor_from_key(desc), graph, requests)


def _setup_context(ctx, inputs, output) -> None:  # noqa: ANN001
    operands, spec, desc, src, dst, csr_dst, csr_src, num_nodes, num_src, gather = inputs
    ctx.save_for_backward(*operands, src, dst, *csr_dst, *csr_src)
    ctx.layout = (len(operands), len(csr_dst), spec, desc, num_nodes, num_src, gather)
    ctx.set_materialize_grads(False)  # an unused result gets None, not a zero tensor to multiply


def _backward(ctx, grads):  # noqa: ANN001
    """Every result is linear in each operand of a form, so its gradient with respect to an operand
    filling slot ``s`` is slot ``s`` of the same form with that operand removed and the result's slot
    filled by the incoming gradient: the backward is again a set of requests (differentiable to any
    order), one per operand, which fuse as the forward's did."""
    n, n_dst, spec, desc, num_nodes, num_src, gather = ctx.layout
    saved = ctx.saved_tensors
    operands, (src, dst), orders = saved[:n], saved[n : n + 2], saved[n + 2 :]
    graph = _graph(src, dst, list(orders[:n_dst]), list(orders[n_dst:]), num_nodes, num_src, gather)
    wanted: dict[tuple[int, str], list[Form]] = {}  # (operand index, slot it fills) -> gradient's forms
    for (role, forms), grad in zip(_decode(spec), grads, strict=True):
        if grad is None:
            continue
        for form in forms:
            for slot, i in form:
                if ctx.needs_input_grad[0][i]:
                    rest = {s: operands[j] for s, j in form if s != slot}
                    wanted.setdefault((i, slot), []).append({**rest, role: grad})
    order = sorted(wanted)
    results = evaluate(descriptor_from_key(desc), graph, [(slot, wanted[i, slot]) for i, slot in order])
    total: list[torch.Tensor | None] = [None] * n
    for (i, _), result in zip(order, results, strict=True):
        total[i] = result if total[i] is None else total[i] + result
    no_orders = [None] * n_dst, [None] * (len(orders) - n_dst)
    return total, None, None, None, None, *no_orders, None, None, None


tp_forms.register_autograd(_backward, setup_context=_setup_context)


def _graph(src, dst, csr_dst, csr_src, num_nodes, num_src, gather) -> ConvGraph:  # noqa: ANN001
    orders = {by: tuple(csr) for by, csr in zip(SORT_KEYS, (csr_dst, csr_src), strict=True) if csr}
    return ConvGraph.with_orders(src, dst, num_nodes, num_src, gather, orders)


def _encode(spec: Spec) -> str:
    """``"o=x0,y1,w2;x=o3,w2,y1|o4,w2,y1"``: requests by ``;``, forms by ``|``, operands by ``,``."""
    return ";".join(
        f"{role}=" + "|".join(",".join(f"{slot}{i}" for slot, i in form) for form in forms)
        for role, forms in spec
    )


def _decode(spec: str) -> Spec:
    requests = []
    for request in spec.split(";"):
        role, forms = request.split("=")
        parsed = (tuple(Operand(op[0], int(op[1:])) for op in form.split(",")) for form in forms.split("|"))
        requests.append((role, tuple(parsed)))
    return tuple(requests)
