"""Autograd: requests of the form as one differentiable function, differentiable to any order."""

from __future__ import annotations

import torch

from mlip.kernels.tensor_product.descriptor import TPDescriptor
from mlip.kernels.tensor_product.triton._launch import Form, evaluate_now, identity_index
from mlip.kernels.tensor_product.triton._layout import Operand
from mlip.kernels.tp_conv.graph import ConvGraph


def compute(desc: TPDescriptor, graph: ConvGraph, role: str, ops: Form) -> torch.Tensor:
    """Differentiable (to any order) slot ``role`` of the quadrilinear form from the three others."""
    return evaluate(desc, graph, [(role, [ops])])[0]


def evaluate(
    desc: TPDescriptor, graph: ConvGraph, requests: list[tuple[str, list[Form]]]
) -> list[torch.Tensor]:
    """Differentiable (to any order): for each request ``(role, forms)``, slot ``role`` of the quadrilinear
    form summed over ``forms`` (each a dict of the three other slots)."""
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
    return list(_Forms.apply(desc, graph, spec, *operands))


class _Forms(torch.autograd.Function):
    """Differentiable :func:`~._launch.evaluate_now`. ``spec`` holds the requests with operands as indices
    into ``operands``. Every result is linear in each operand of a form, so its gradient with respect to an
    operand filling slot ``s`` is slot ``s`` of the same form with that operand removed and the result's
    slot filled by the incoming gradient: the backward is again a set of requests (differentiable to any
    order), one per operand, which fuse as the forward's did."""

    @staticmethod
    def forward(ctx, desc, graph, spec, *operands):  # noqa: ANN001
        ctx.desc, ctx.graph, ctx.spec = desc, graph, spec
        ctx.save_for_backward(*operands)
        ctx.set_materialize_grads(False)  # an unused result gets None, not a zero tensor to multiply
        requests = [(role, [{s: operands[i] for s, i in form} for form in forms]) for role, forms in spec]
        return tuple(evaluate_now(desc, graph, requests))

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
