"""Autograd of any order for a product ``T(x, y, w)`` that is linear in ``x`` and ``y`` and affine in
``w``, given kernels for ``T`` and its adjoints only (issue 23).

The fused CPU kernels (:mod:`mlip.kernels.tp_conv.fused`, :mod:`mlip.kernels.tensor_product.fused`) are
compiled functions that never record a graph. An *operator* ``op`` supplies them:

- ``op.forward(x, y, w)``: ``T(x, y, w)``;
- ``op.adjoints(want, x, y, w, grad)``: ``(T_x^*, T_y^*, T_w^*)`` at ``(x, y, w)`` for the output
  gradient ``grad``, those ``want`` (three booleans) asks for, ``None`` for the others;
- ``op.weighted()``: the operator over the terms that read ``w`` (``T`` minus its ``w``-free part, so
  linear in ``w``; ``op`` itself when every term reads it);
- optionally ``op.second_order(need, x, y, w, grad, gg_x, gg_y, gg_w)``: the whole backward of the
  adjoints below (``need``: which of ``x, y, w, grad`` get a gradient) in one kernel, used when that
  backward records no graph (a training step's last backward); with a graph, the terms below run.

:class:`Trilinear` is ``T`` as an autograd function; its backward is :class:`TrilinearAdjoints`, whose own
backward is again ``T`` and its adjoints with one operand replaced by the incoming gradient
(``<gg_x, T_x^*(y, w, grad)> = <T(gg_x, y, w), grad>``: gradients ``T_y^*(gg_x, w, grad)`` in ``y``,
``T_w^*(gg_x, y, grad)`` in ``w``, ``T(gg_x, y, w)`` in ``grad``; likewise for ``gg_y``; the ``gg_w``
term on ``op.weighted()``), so derivatives of every order run the compiled kernels.
"""

from __future__ import annotations

import torch

NAMES = ("x", "y", "w")


class Trilinear(torch.autograd.Function):
    """``T(x, y, w)`` of the operator ``op`` (module docstring)."""

    @staticmethod
    def forward(ctx, op, x, y, w):  # type: ignore[override]
        ctx.op = op
        ctx.save_for_backward(x, y, w)
        return op.forward(x, y, w)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, y, w = ctx.saved_tensors
        want = tuple(ctx.needs_input_grad[1:4])
        return (None, *TrilinearAdjoints.apply(ctx.op, want, x, y, w, grad))


class TrilinearAdjoints(torch.autograd.Function):
    """``(T_x^*, T_y^*, T_w^*)(x, y, w, grad)``, those ``want`` asks for (module docstring)."""

    @staticmethod
    def forward(ctx, op, want, x, y, w, grad):  # type: ignore[override]
        ctx.op = op
        ctx.save_for_backward(x, y, w, grad)
        if not any(want):
            return None, None, None
        return op.adjoints(want, x, y, w, grad)

    @staticmethod
    def backward(ctx, gg_x, gg_y, gg_w):  # type: ignore[override]
        x, y, w, grad = ctx.saved_tensors
        op = ctx.op
        need = dict(zip((*NAMES, "grad"), ctx.needs_input_grad[2:6], strict=True))
        need["w"] = need["w"] and w is not None
        if not torch.is_grad_enabled() and hasattr(op, "second_order"):
            needed = tuple(need[name] for name in (*NAMES, "grad"))
            return None, None, *op.second_order(needed, x, y, w, grad, gg_x, gg_y, gg_w)
        total: dict[str, torch.Tensor | None] = dict.fromkeys((*NAMES, "grad"))
        terms = (  # (gg, the operands with gg in its slot, the operator, the adjoints the term gives)
            (gg_x, lambda v: (v, y, w), op, ("y", "w")),
            (gg_y, lambda v: (x, v, w), op, ("x", "w")),
            (gg_w, lambda v: (x, y, v), op.weighted(), ("x", "y")),
        )
        for gg, operands, term_op, names in terms:
            if gg is None:
                continue
            xa, ya, wa = operands(gg)
            values = {}
            if need["grad"]:
                values["grad"] = Trilinear.apply(term_op, xa, ya, wa)
            want = tuple(name in names and need[name] for name in NAMES)
            if any(want):
                adjoints = TrilinearAdjoints.apply(term_op, want, xa, ya, wa, grad)
                values.update(zip(NAMES, adjoints, strict=True))
            for name, value in values.items():
                if value is not None:
                    total[name] = value if total[name] is None else total[name] + value
        return None, None, total["x"], total["y"], total["w"], total["grad"]
