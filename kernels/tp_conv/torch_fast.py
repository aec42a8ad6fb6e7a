"""Fast torch convolution: layout change on nodes, gather, grouped coupling GEMM + bmm, index_add.

Edges are processed in chunks (see :mod:`mlip.kernels.tensor_product.torch_fast`) so the ``[E, U, K]``
temporaries stay bounded in inference; node features are converted to the channels-last ``[N, D1, U]`` layout
once, before the gather, and the output is converted back once, after the scatter. Descriptors that are
not channelwise (``uvw``, ``mul2 > 1``) gather node features per chunk of edges and use the general
pair/GEMM product.

:func:`tp_conv_chunked` is the memory-bounded inference mode: the per-edge weights come from a weight
function (the radial MLP) evaluated per chunk of edges, and the backward recomputes each chunk's
intermediates instead of storing them, so no per-edge tensor of a layer (``E x channels x Σ(2l+1)``,
gigabytes for a 1000-atom box) exists at full size in the forward or the force backward. First
derivatives only (``once_differentiable``): training, which differentiates forces, takes the plain path.
:func:`tp_conv_blocked` is the same mode for a symbolic edge count (``make_fx`` / ``torch.export``
tracing, the compiled step): the chunk loop is one traced ``while_loop`` over blocks of the same size
(:mod:`mlip.kernels.blocks`).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from mlip.kernels import blocks
from mlip.kernels.tensor_product import torch_fast as fast
from mlip.kernels.tensor_product.descriptor import TPDescriptor
from mlip.kernels.tp_conv import fused
from mlip.kernels.tp_conv.reference import scatter_sum


def tp_conv_fast(
    desc: TPDescriptor,
    node_feats: torch.Tensor,
    edge_sh: torch.Tensor,
    edge_weights: torch.Tensor | None,
    edge_src: torch.Tensor,
    edge_dst: torch.Tensor,
    num_nodes: int,
    deterministic: bool = False,
) -> torch.Tensor:
    """Same contract as :func:`~mlip.kernels.tp_conv.reference.tp_conv_reference`: the fused compiled
    kernels (:mod:`mlip.kernels.tp_conv.fused`) where they apply, else :func:`tp_conv_aten`."""
    if node_feats.shape[0] == num_nodes and fused.applies(desc, node_feats, edge_sh, edge_weights, edge_src):
        out = fused.tp_conv_fused(desc, node_feats, edge_sh, edge_weights, edge_src, edge_dst)
        if out is not None:
            return out
    return tp_conv_aten(desc, node_feats, edge_sh, edge_weights, edge_src, edge_dst, num_nodes, deterministic)


def tp_conv_aten(
    desc: TPDescriptor,
    node_feats: torch.Tensor,
    edge_sh: torch.Tensor,
    edge_weights: torch.Tensor | None,
    edge_src: torch.Tensor,
    edge_dst: torch.Tensor,
    num_nodes: int,
    deterministic: bool = False,
) -> torch.Tensor:
    """:func:`tp_conv_fast` in ATen ops (differentiable to any order; traced by export and compile)."""
    in_place = not deterministic or node_feats.device.type == "cpu"  # index_add_ is deterministic on CPU
    if not desc.channelwise:
        out = node_feats.new_zeros(num_nodes, desc.irreps_out.dim)
        sizes = fast.general_chunks(desc, edge_src.numel())
        weights = fast.split_weights(edge_weights, sizes)
        for src, sh, ws, dst in zip(
            edge_src.split(sizes), edge_sh.split(sizes), weights, edge_dst.split(sizes), strict=True
        ):
            msg = fast.tensor_product_general(desc, node_feats.index_select(0, src), sh, ws)
            if in_place:
                out.index_add_(0, dst, msg)
            else:
                out = out + scatter_sum(msg, dst, num_nodes, deterministic)
        return out
    blocks: dict[int, torch.Tensor] = {}
    for g, weights in zip(fast.plan(desc), fast.group_weights(desc, edge_weights), strict=True):
        xc = fast.to_channels(node_feats, desc, g)  # [N, D1, U]
        sums = [xc.new_zeros(num_nodes, run.width, g.mul) for run in g.runs]
        sizes = fast.chunks(edge_src.numel(), g)  # split, not sliced (see fast.chunk_sizes)
        gathered = xc.index_select(0, edge_src).split(sizes)
        for xs, ys, ws, dst in zip(
            gathered, edge_sh.split(sizes), fast.split_run_weights(weights, sizes), edge_dst.split(sizes),
            strict=True,
        ):  # fmt: skip
            for n, msg in enumerate(fast.messages(desc, g, xs, ys, ws)):
                if in_place:
                    sums[n].index_add_(0, dst, msg)
                else:
                    sums[n] = sums[n] + scatter_sum(msg, dst, num_nodes, deterministic)
        fast.from_channels(sums, desc, g, blocks)
    return fast.assemble(desc, blocks, num_nodes, node_feats)


EDGES_PER_CHUNK = 4096


def chunk_edges(desc: TPDescriptor) -> int:
    """Edges per chunk: at most ``EDGES_PER_CHUNK``, with ``[edges, U, K]`` message temporaries of about
    ``torch_fast.CHUNK_ELEMENTS`` elements (channelwise descriptors; small enough to stay in cache)."""
    widest = max(g.mul * g.width for g in fast.plan(desc))
    return max(1, min(EDGES_PER_CHUNK, fast.CHUNK_ELEMENTS // widest))


def chunk_slices(desc: TPDescriptor, num_edges: int, max_chunks: int | None = None) -> list[slice]:
    """Slices of :func:`chunk_edges` edges covering ``num_edges``; larger ones when that would make more
    than ``max_chunks`` of them."""
    step = chunk_edges(desc)
    if max_chunks is not None:
        step = max(step, -(-num_edges // max_chunks))
    return [slice(s, min(s + step, num_edges)) for s in range(0, num_edges, step)]


def tp_conv_chunked(
    desc: TPDescriptor,
    node_feats: torch.Tensor,
    edge_sh: torch.Tensor,
    weight_fn: torch.nn.Module,
    weight_inputs: torch.Tensor,
    edge_src: torch.Tensor,
    edge_dst: torch.Tensor,
) -> torch.Tensor:
    """:func:`tp_conv_fast` with edge weights ``weight_fn(weight_inputs)`` ``[E, weight_numel]``, computed
    and used one chunk of edges at a time (``weight_inputs`` ``[E, B]``: the radial basis); channelwise
    descriptors, first derivatives with respect to every input and ``weight_fn``'s parameters."""
    if fused.applies(desc, node_feats, edge_sh, None, edge_src):
        slices = chunk_slices(desc, edge_src.numel(), fused.MAX_CHUNKS)
        out = fused.tp_conv_fused_chunked(
            desc, node_feats, edge_sh, weight_fn, weight_inputs, edge_src, edge_dst, slices
        )
        if out is not None:
            return out
    params = list(weight_fn.parameters())
    return _ChunkedConvolution.apply(
        node_feats, edge_sh, weight_inputs, edge_src, edge_dst, weight_fn, desc, *params
    )


class _ChunkedConvolution(torch.autograd.Function):
    """Node features are converted to the ``[N, D1, U]`` channels-last layout of each group of
    :mod:`mlip.kernels.tensor_product.torch_fast` once, messages of each chunk of edges are added into one
    ``[N, K, U]`` buffer per run, and the backward converts the output gradient to that layout once:
    per chunk only edge-sized tensors are made (no node-sized temporaries per chunk)."""

    @staticmethod
    def forward(ctx, x, sh, radial, src, dst, weight_fn, desc, *params):  # type: ignore[override]
        ctx.save_for_backward(x, sh, radial, src, dst, *params)
        ctx.weight_fn, ctx.desc = weight_fn, desc
        groups = fast.plan(desc)
        nodes = [fast.to_channels(x, desc, g) for g in groups]
        sums = [[x.new_zeros(x.shape[0], run.width, g.mul) for run in g.runs] for g in groups]
        for s in chunk_slices(desc, src.numel()):
            weights = fast.group_weights(desc, weight_fn(radial[s]))
            for g, xc, totals, ws in zip(groups, nodes, sums, weights, strict=True):
                msgs = fast.messages(desc, g, xc.index_select(0, src[s]), sh[s], ws)
                for total, msg in zip(totals, msgs, strict=True):
                    total.index_add_(0, dst[s], msg)
        blocks: dict[int, torch.Tensor] = {}
        for g, totals in zip(groups, sums, strict=True):
            fast.from_channels(totals, desc, g, blocks)
        return fast.assemble(desc, blocks, x.shape[0], x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        x, sh, radial, src, dst, *params = ctx.saved_tensors
        desc = ctx.desc
        groups = fast.plan(desc)
        want_x, want_sh, want_radial = ctx.needs_input_grad[:3]
        param_wanted = list(ctx.needs_input_grad[7:])
        live_params = [p for p, w in zip(ctx.weight_fn.parameters(), param_wanted, strict=True) if w]
        nodes = [fast.to_channels(x, desc, g) for g in groups]
        grad_sums = [fast.to_out_channels(grad_out, desc, g) for g in groups]
        grad_nodes = [torch.zeros_like(xc) for xc in nodes]
        grad_sh = torch.zeros_like(sh) if want_sh else None
        grad_radial = torch.zeros_like(radial) if want_radial else None
        grad_params = [torch.zeros_like(p) for p in live_params]
        for s in chunk_slices(desc, src.numel()):
            with torch.enable_grad():
                shd = sh[s].detach().requires_grad_(want_sh)
                rd = radial[s].detach().requires_grad_(want_radial)
                weights = fast.group_weights(desc, ctx.weight_fn(rd))
                gathered = [xc.index_select(0, src[s]).requires_grad_(want_x) for xc in nodes]
                messages = [
                    msg
                    for g, xs, ws in zip(groups, gathered, weights, strict=True)
                    for msg in fast.messages(desc, g, xs, shd, ws)
                ]
                inputs = [t for t, w in zip((shd, rd), (want_sh, want_radial), strict=True) if w]
                inputs += (gathered if want_x else []) + live_params
                grads = list(
                    torch.autograd.grad(
                        messages,
                        inputs,
                        [g.index_select(0, dst[s]) for per_group in grad_sums for g in per_group],
                        allow_unused=True,
                    )
                )
            if want_sh:
                _accumulate(grad_sh, grads.pop(0), s)
            if want_radial:
                _accumulate(grad_radial, grads.pop(0), s)
            if want_x:
                for grad_node in grad_nodes:
                    g = grads.pop(0)
                    if g is not None:
                        grad_node.index_add_(0, src[s], g)
            for total in grad_params:
                _accumulate(total, grads.pop(0), slice(None))
        grad_x = fast.from_in_channels(grad_nodes, desc, groups) if want_x else None
        merged = iter(grad_params)
        all_params = [next(merged) if w else None for w in param_wanted]
        return (grad_x, grad_sh, grad_radial, None, None, None, None, *all_params)


def _accumulate(total: torch.Tensor, grad: torch.Tensor | None, index: slice) -> None:
    if grad is not None:
        total[index] += grad


def tp_conv_blocked(
    desc: TPDescriptor,
    node_feats: torch.Tensor,
    edge_sh: torch.Tensor,
    weight_fn: torch.nn.Module,
    weight_inputs: torch.Tensor,
    edge_src: torch.Tensor,
    edge_dst: torch.Tensor,
    block: int | None = None,
) -> torch.Tensor:
    """:func:`tp_conv_chunked` as one traced loop over blocks of ``block`` edges (default
    :func:`chunk_edges`, the eager chunk; the last block padded with masked copies of the last edge),
    for symbolic edge counts; first derivatives with respect to the node features, harmonics and weight
    inputs, with ``weight_fn``'s weights frozen. A block's products are the fused path's per-path loops
    (:class:`~mlip.kernels.tp_conv.fused.TracedBlocks`), which AOTInductor compiles into the package."""
    params = blocks.frozen_parameters(weight_fn)
    return _BlockedConvolution.apply(
        node_feats,
        edge_sh,
        weight_inputs,
        edge_src,
        edge_dst,
        weight_fn,
        params,
        fused.TracedBlocks(desc, node_feats),
        block or chunk_edges(desc),
    )


def _edge_block(step, size, src, dst, sh, radial):  # noqa: ANN001, ANN202
    """One block's edge positions, gathered edges, validity, masked harmonics (padding edges get zero
    harmonics, so their messages and every gradient through them are zero) and weight inputs."""
    idx, valid = blocks.block_rows(step, size, src.shape[0])
    mask = valid[:, None].to(sh.dtype)
    return (
        idx,
        src.index_select(0, idx),
        dst.index_select(0, idx),
        mask,
        sh.index_select(0, idx) * mask,
        radial.index_select(0, idx),
    )


class _BlockedConvolution(torch.autograd.Function):
    """:class:`_ChunkedConvolution`'s scheme with the chunk loops as ``while_loop`` ops, the products of a
    block given by :class:`~mlip.kernels.tp_conv.fused.TracedBlocks`: the forward carries its output
    sums, the backward the node-feature gradients in its node layout and the ``[E, ...]``
    gradients of the harmonics and the weight inputs."""

    @staticmethod
    def forward(ctx, x, sh, radial, src, dst, weight_fn, params, form, block):  # type: ignore[override]
        ctx.save_for_backward(x, sh, radial, src, dst)
        ctx.weight_fn, ctx.params, ctx.form, ctx.block = weight_fn, params, form, block
        names = list(params)
        size = blocks.block_size(src.shape[0], block)
        nodes, sums = form.nodes(x), form.zeros(x)
        n, m = len(sums), len(nodes)

        def body(step, *state):  # noqa: ANN001
            totals, xcs = state[:n], state[n : n + m]
            sh_, radial_, src_, dst_, *ws = state[n + m :]
            _, src_b, dst_b, _, sh_b, radial_b = _edge_block(step, size, src_, dst_, sh_, radial_)
            weights = torch.func.functional_call(weight_fn, dict(zip(names, ws, strict=True)), (radial_b,))
            return tuple(form.accumulate(totals, xcs, sh_b, weights, src_b, dst_b))

        inputs = [*nodes, sh, radial, src, dst, *params.values()]
        return form.output(blocks.loop_blocks(body, src.shape[0], size, sums, inputs, x.device), x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        x, sh, radial, src, dst = ctx.saved_tensors
        form, weight_fn, names = ctx.form, ctx.weight_fn, list(ctx.params)
        want = tuple(ctx.needs_input_grad[:3])
        size = blocks.block_size(src.shape[0], ctx.block)
        autograd = blocks.BodyAutograd()
        nodes, gos = form.nodes(x), form.grad_outputs(grad_out)
        n, m = len(nodes), len(gos)

        def body(step, *state):  # noqa: ANN001
            grad_nodes, grad_sh, grad_radial = state[:n], state[n], state[n + 1]
            xcs, gss = state[n + 2 : 2 * n + 2], state[2 * n + 2 : 2 * n + 2 + m]
            sh_, radial_, src_, dst_, *ws = state[2 * n + 2 + m :]
            with autograd():
                idx, src_b, dst_b, mask, sh_b, radial_b = _edge_block(step, size, src_, dst_, sh_, radial_)
                radial_b = radial_b.requires_grad_(want[2])
                params = dict(zip(names, ws, strict=True))
                weights = torch.func.functional_call(weight_fn, params, (radial_b,))
                g_sh, g_w, g_x = form.adjoints(xcs, gss, sh_b, weights.detach(), src_b, dst_b, want)
                g_radial = torch.autograd.grad(weights, radial_b, g_w)[0] if want[2] else None
            new_sh = grad_sh.clone() if g_sh is None else grad_sh.index_add(0, idx, g_sh * mask)
            new_radial = grad_radial.clone() if g_radial is None else grad_radial.index_add(0, idx, g_radial)
            new_nodes = [
                g.clone() if g_x is None else g.index_add(0, src_b, p)
                for g, p in zip(grad_nodes, g_x or grad_nodes, strict=True)
            ]
            return (*new_nodes, new_sh, new_radial)

        carries = [*(torch.zeros_like(xc) for xc in nodes), torch.zeros_like(sh), torch.zeros_like(radial)]
        inputs = [*nodes, *gos, sh, radial, src, dst, *ctx.params.values()]
        *grad_nodes, grad_sh, grad_radial = blocks.loop_blocks(
            body, src.shape[0], size, carries, inputs, x.device
        )
        grad_x = form.grad_input(grad_nodes, x) if want[0] else None
        return (
            grad_x,
            grad_sh if want[1] else None,
            grad_radial if want[2] else None,
            None,
            None,
            None,
            None,
            None,
            None,
        )
