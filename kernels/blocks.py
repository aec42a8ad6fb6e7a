"""Loops over fixed-size blocks of rows that trace with a symbolic row count: the memory-bounded
(chunked, recomputing) inference mode of the convolution and of node-wise layers, inside an exported
graph.

A Python loop over chunks of a symbolic size cannot be traced (the number of chunks would be fixed to the
example's). Here the loop is one ``while_loop`` higher-order op (``torch._higher_order_ops``): its body
sees one block of ``size = min(total, block)`` rows, block ``i`` covering rows ``i * size ..`` (row
indices past the end clamped to the last row and reported as invalid, so the caller masks them out),
and runs ``ceil(total / size)`` times. Only the loop's carries (the accumulated outputs) and one block's
temporaries exist at a time. Make_fx, ``torch.export`` (dynamic sizes) and AOTInductor keep the loop; it
has no host sync (the trip count comes from a shape).

The backward of a block recomputes the block's forward and differentiates it with ``torch.autograd.grad``
inside the loop body. The higher-order op traces its body below the autograd dispatch keys, so
:class:`BodyAutograd` (created where autograd is live, entered inside the body) restores the caller's
dispatch-key state there. First derivatives only: the traced models are evaluated for energy, forces and
virial; training differentiates forces with respect to the weights and takes the plain paths.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence

import torch
from torch._higher_order_ops.while_loop import while_loop_op
from torch.autograd.function import once_differentiable
from torch.multiprocessing.reductions import StorageWeakRef


def block_rows(step: torch.Tensor, size: int | torch.SymInt, total: int | torch.SymInt):
    """Row indices ``[size]`` (clamped to ``total - 1``) and their validity ``[size]`` (bool) of block
    ``step`` (a 0-d int64 tensor)."""
    pos = step * size + torch.arange(size, device=step.device)
    return pos.clamp(max=total - 1), pos < total


def block_size(total: int | torch.SymInt, block: int) -> int | torch.SymInt:
    """Rows per block: ``block``, or ``total`` when that is smaller (one block, no padding)."""
    return torch.sym_min(total, block)


def loop_blocks(
    body: Callable[..., Sequence[torch.Tensor]],
    total: int | torch.SymInt,
    size: int | torch.SymInt,
    carries: Sequence[torch.Tensor],
    inputs: Sequence[torch.Tensor],
    device: torch.device,
) -> list[torch.Tensor]:
    """``carries`` after ``body(step, *carries, *inputs) -> new carries`` for ``step = 0 ..
    ceil(total / size) - 1`` (``step`` a 0-d int64 tensor). ``inputs`` are read-only; the new carries must
    have the metadata of the old and alias nothing. Inputs sharing storage with an earlier one (views of
    one tensor, e.g. the two rows of an edge index) are copied: the loop's operands must not alias."""
    storages = {StorageWeakRef(t.untyped_storage()) for t in carries}
    owned = []
    for t in inputs:
        ref = StorageWeakRef(t.untyped_storage())
        owned.append(t.clone() if ref in storages else t)
        storages.add(ref)

    def cond(step, *state):  # noqa: ANN001
        return step * size < total

    def wrapped(step, *state):  # noqa: ANN001
        return (step + 1, *body(step, *state))

    start = torch.zeros((), dtype=torch.int64, device=device)
    _, *out = while_loop_op(cond, wrapped, (start, *carries), tuple(owned))
    return out


class BodyAutograd:
    """Created where autograd is live (a backward), entered inside a loop body: autograd works there as
    it did at creation, with gradients enabled."""

    def __init__(self) -> None:
        self.keys = (torch._C._dispatch_tls_local_include_set(), torch._C._dispatch_tls_local_exclude_set())

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with torch._C._ForceDispatchKeyGuard(*self.keys), torch.enable_grad():
            yield


def frozen_parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s parameters and buffers by name, for :func:`torch.func.functional_call` inside a loop
    body; ``ValueError`` when a parameter would need a gradient (the loops differentiate with respect to
    their inputs only)."""
    if torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters()):
        raise ValueError(
            "the traced chunked inference mode needs frozen weights (requires_grad=False): "
            "it gives no gradients with respect to parameters"
        )
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


def blocked_rows(fn: torch.nn.Module, *inputs: torch.Tensor, rows: int) -> torch.Tensor:
    """``fn(*inputs)`` for a row-wise module ``fn`` (row ``i`` of the output depends on row ``i`` of every
    input only) evaluated over blocks of ``rows`` rows in one traced loop,
    recomputing each block in the backward (first derivatives with respect to the floating inputs; ``fn``'s
    weights frozen). Output ``[N, ...]`` of ``fn``'s dtype."""
    params = frozen_parameters(fn)
    return _BlockedRows.apply(fn, params, rows, *inputs)


def _block_inputs(inputs: Sequence[torch.Tensor], idx: torch.Tensor) -> list[torch.Tensor]:
    return [t.index_select(0, idx) for t in inputs]


class _BlockedRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fn, params, rows, *inputs):  # type: ignore[override]
        ctx.save_for_backward(*inputs)
        ctx.fn, ctx.params, ctx.rows = fn, params, rows
        total = inputs[0].shape[0]
        size = block_size(total, rows)
        names, values = list(params), list(params.values())
        probe = torch.func.functional_call(fn, params, tuple(t[:1] for t in inputs))
        out = probe.new_zeros(total, *probe.shape[1:])

        def body(step, out, *state):  # noqa: ANN001
            ins, ws = state[: len(inputs)], state[len(inputs) :]
            idx, _ = block_rows(step, size, total)
            block = torch.func.functional_call(
                fn, dict(zip(names, ws, strict=True)), tuple(_block_inputs(ins, idx))
            )
            # clamped rows repeat the last row: the same values are written again
            return (out.index_copy(0, idx, block),)

        (out,) = loop_blocks(body, total, size, [out], [*inputs, *values], out.device)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        inputs = ctx.saved_tensors
        wanted = [
            w and t.dtype.is_floating_point for w, t in zip(ctx.needs_input_grad[3:], inputs, strict=True)
        ]
        live = [i for i, w in enumerate(wanted) if w]
        total = inputs[0].shape[0]
        size = block_size(total, ctx.rows)
        names, values = list(ctx.params), list(ctx.params.values())
        autograd = BodyAutograd()
        fn = ctx.fn

        def body(step, *state):  # noqa: ANN001
            grads, rest = state[: len(live)], state[len(live) :]
            ins, g_out, ws = rest[: len(inputs)], rest[len(inputs)], rest[len(inputs) + 1 :]
            idx, valid = block_rows(step, size, total)
            with autograd():
                block = [t.detach().requires_grad_(i in live) for i, t in enumerate(_block_inputs(ins, idx))]
                out = torch.func.functional_call(fn, dict(zip(names, ws, strict=True)), tuple(block))
                mask = valid.to(out.dtype).view(-1, *([1] * (out.dim() - 1)))
                parts = torch.autograd.grad(
                    out, [block[i] for i in live], g_out.index_select(0, idx) * mask, allow_unused=True
                )
            return tuple(
                g.clone() if p is None else g.index_add(0, idx, p) for g, p in zip(grads, parts, strict=True)
            )

        # contiguous: the body's index_add returns contiguous sums whatever the input's strides
        zeros = [torch.zeros_like(inputs[i], memory_format=torch.contiguous_format) for i in live]
        grads = iter(loop_blocks(body, total, size, zeros, [*inputs, grad_out, *values], grad_out.device))
        return (None, None, None, *(next(grads) if w else None for w in wanted))


def lift_loop_constants(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Make the tensor constants that loop bodies read (cached tables of the layers, stored as attributes
    of the traced cond/body subgraphs) explicit operands of their ``while_loop`` nodes, in place, and
    return ``graph``. ``torch.export`` lifts and keeps the constants of the top graph only: inside a
    subgraph they would be replaced by fake tensors."""
    loop = torch.ops.higher_order.while_loop
    for node in [n for n in graph.graph.nodes if n.op == "call_function" and n.target is loop]:
        cond_node, body_node, carries, operands = node.args[:4]
        # private copies: tracing shares one subgraph among loops of the same code (every cond_fn)
        subgraphs = []
        for old in (cond_node, body_node):
            sub = getattr(graph, old.target)
            sub = lift_loop_constants(torch.fx.GraphModule(sub, copy.deepcopy(sub.graph)))
            name = _fresh_name(graph, old.target)
            graph.add_submodule(name, sub)
            with graph.graph.inserting_before(node):
                new = graph.graph.get_attr(name)
            node.replace_input_with(old, new)
            subgraphs.append(sub)
        cond_node, body_node = node.args[:2]
        # (subgraph, attribute) pairs: cond and body may each hold a different "_tensor_constant0"
        owned = [
            (i, n.target)
            for i, sub in enumerate(subgraphs)
            for n in sub.graph.nodes
            if n.op == "get_attr" and isinstance(getattr(sub, n.target), torch.Tensor)
        ]
        owned = list(dict.fromkeys(owned))
        lifted = []
        for i, name in owned:
            top = _fresh_name(graph, "_loop_constant")
            graph.register_buffer(top, getattr(subgraphs[i], name), persistent=False)
            with graph.graph.inserting_before(node):
                lifted.append(graph.graph.get_attr(top))
        for i, sub in enumerate(subgraphs):  # both take every lifted operand, in the same order
            last = [n for n in sub.graph.nodes if n.op == "placeholder"][-1]
            for k, (j, name) in reversed(list(enumerate(owned))):
                with sub.graph.inserting_after(last):
                    arg = sub.graph.placeholder(f"lifted_constant_{k}")
                if j != i:
                    continue
                for n in [n for n in sub.graph.nodes if n.op == "get_attr" and n.target == name]:
                    n.replace_all_uses_with(arg)
                    sub.graph.erase_node(n)
            sub.recompile()
        node.args = (cond_node, body_node, carries, (*operands, *lifted), *node.args[4:])
    graph.recompile()
    return graph


def _fresh_name(module: torch.nn.Module, prefix: str) -> str:
    count = 0
    while hasattr(module, f"{prefix}_{count}"):
        count += 1
    return f"{prefix}_{count}"


SIZE_QUERIES = (torch.ops.aten.sym_size.int, torch.ops.aten.sym_stride.int, torch.ops.aten.sym_numel.default)


def inplace_loop_carries(graph: torch.fx.Graph) -> None:
    """An Inductor post-grad pass (``post_grad_custom_pre_pass``): in every ``while_loop`` body, a carry
    whose new value is an ``index_put`` into the old one (a block's ``index_add`` into a sum, or its
    ``index_copy`` into an output) and whose values the body reads nowhere else is updated in place,
    instead of being copied whole once per block. Each such carry's initial value is cloned once before
    the loop, so the loop owns the buffer it writes."""
    module = graph.owning_module
    loops = [
        n for n in graph.nodes if n.op == "call_function" and n.target is torch.ops.higher_order.while_loop
    ]
    for node in loops:
        body = getattr(module, node.args[1].target)
        carries = list(node.args[2])
        holders = [n for n in body.graph.nodes if n.op == "placeholder"][: len(carries)]
        outputs = body.graph.output_node().args[0]
        changed = False
        for k, (holder, new) in enumerate(zip(holders, outputs, strict=False)):
            if (
                isinstance(new, torch.fx.Node)
                and new.target is torch.ops.aten.index_put.default
                and new.args[0] is holder
                and all(user is new or user.target in SIZE_QUERIES for user in holder.users)
            ):
                new.target = torch.ops.aten.index_put_.default
                with graph.inserting_before(node):
                    owned = graph.call_function(torch.ops.aten.clone.default, (carries[k],))
                owned.meta = dict(carries[k].meta)
                carries[k] = owned
                changed = True
        if changed:
            node.args = (node.args[0], node.args[1], tuple(carries), *node.args[3:])
            body.recompile()
