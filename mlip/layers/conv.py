"""Memory-bounded message passing for inference: the radial MLP and the channelwise messages of the fast
torch tensor product (:mod:`mlip.kernels.tensor_product.torch_fast`) evaluated over chunks of edges, with
the per-edge intermediates recomputed in the backward pass instead of stored.

Per-edge tensors of a MACE layer (``E x channels x Σ(2l+1)``, gigabytes for a 1000-atom box) then never
exist at full size, in the forward or the force backward; the working set stays in cache. First
derivatives only (``once_differentiable``): training, which differentiates forces, uses the plain
autograd path (:func:`edge_convolution` picks it when ``chunked=False``).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from mlip.kernels import ConvGraph, TensorProduct, tp_conv
from mlip.kernels.tensor_product import torch_fast as fast
from mlip.kernels.tensor_product.module import resolve_backend

EDGES_PER_CHUNK = 4096


def _chunks(num_edges: int, tp: TensorProduct) -> list[slice]:
    """Edge slices of at most ``EDGES_PER_CHUNK`` edges whose ``[edges, U, K]`` message temporaries hold
    about ``torch_fast.CHUNK_ELEMENTS`` elements."""
    widest = max(g.mul * g.width for g in fast.plan(tp.descriptor))
    step = max(1, min(EDGES_PER_CHUNK, fast.CHUNK_ELEMENTS // widest))
    return [slice(s, min(s + step, num_edges)) for s in range(0, num_edges, step)]


class _ChunkedConvolution(torch.autograd.Function):
    """Channelwise descriptors only. Node features are converted to the ``[N, U, D1]`` channel layout of
    each group of :mod:`mlip.kernels.tensor_product.torch_fast` once, messages of each chunk of edges are
    added into one ``[N, U, K]`` buffer per group, and the backward converts the output gradient to that
    layout once: per chunk only edge-sized tensors are made (no node-sized temporaries per chunk)."""

    @staticmethod
    def forward(ctx, x, sh, radial, src, dst, radial_mlp, tp, *params):  # type: ignore[override]
        ctx.save_for_backward(x, sh, radial, src, dst, *params)
        ctx.radial_mlp, ctx.tp = radial_mlp, tp
        desc = tp.descriptor
        groups = fast.plan(desc)
        nodes = [fast.to_channels(x, desc, g) for g in groups]
        sums = [x.new_zeros(x.shape[0], g.mul, g.out_width) for g in groups]
        for s in _chunks(src.numel(), tp):
            weights = fast.extend_weights(desc, radial_mlp(radial[s]), x)
            for g, xc, total in zip(groups, nodes, sums, strict=True):
                total.index_add_(
                    0, dst[s], fast.messages(desc, g, xc.index_select(0, src[s]), sh[s], weights)
                )
        blocks: dict[int, torch.Tensor] = {}
        for g, total in zip(groups, sums, strict=True):
            blocks.update(fast.from_channels(total, desc, g))
        return fast.assemble(desc, blocks, x.shape[0], x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        x, sh, radial, src, dst, *params = ctx.saved_tensors
        tp = ctx.tp
        desc = tp.descriptor
        groups = fast.plan(desc)
        want_x, want_sh, want_radial = ctx.needs_input_grad[:3]
        param_wanted = list(ctx.needs_input_grad[7:])
        live_params = [p for p, w in zip(ctx.radial_mlp.parameters(), param_wanted, strict=True) if w]
        nodes = [fast.to_channels(x, desc, g) for g in groups]
        grad_sums = [fast.to_out_channels(grad_out, desc, g) for g in groups]
        grad_nodes = [torch.zeros_like(xc) for xc in nodes]
        grad_sh = torch.zeros_like(sh) if want_sh else None
        grad_radial = torch.zeros_like(radial) if want_radial else None
        grad_params = [torch.zeros_like(p) for p in live_params]
        for s in _chunks(src.numel(), tp):
            with torch.enable_grad():
                shd = sh[s].detach().requires_grad_(want_sh)
                rd = radial[s].detach().requires_grad_(want_radial)
                weights = fast.extend_weights(desc, ctx.radial_mlp(rd), x)
                gathered = [xc.index_select(0, src[s]).requires_grad_(want_x) for xc in nodes]
                messages = [
                    fast.messages(desc, g, xs, shd, weights) for g, xs in zip(groups, gathered, strict=True)
                ]
                inputs = [t for t, w in zip((shd, rd), (want_sh, want_radial), strict=True) if w]
                inputs += (gathered if want_x else []) + live_params
                grads = list(
                    torch.autograd.grad(
                        messages,
                        inputs,
                        [g.index_select(0, dst[s]) for g in grad_sums],
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


def edge_convolution(
    x: torch.Tensor,
    sh: torch.Tensor,
    radial: torch.Tensor,
    src: torch.Tensor,
    dst: torch.Tensor,
    radial_mlp: torch.nn.Module,
    tp: TensorProduct,
    chunked: bool,
    graph: ConvGraph | None = None,
) -> torch.Tensor:
    """``tp_conv(x, sh, radial_mlp(radial), src, dst)``: ``[N, tp.irreps_out.dim]``.

    Args:
        x: node features ``[N, tp.irreps_in1.dim]``; sh: edge harmonics ``[E, tp.irreps_in2.dim]``;
        radial: radial basis ``[E, B]`` fed to ``radial_mlp`` (weights ``[E, tp.weight_numel]``);
        src, dst: ``[E]``; chunked: memory-bounded, first-derivative-only evaluation (inference) on
        the CPU (on CUDA the Triton ``tp_conv`` never stores per-edge messages: no chunking needed);
        graph: the neighbour list's :class:`~mlip.kernels.ConvGraph` (edges sorted once, shared by all
        layers); not used by the chunked path.
    """
    path = resolve_backend(tp.backend, tp.descriptor, x.device)
    if not chunked or x.device.type != "cpu" or path != "fast" or len(_chunks(src.numel(), tp)) <= 1:
        return tp_conv(x, sh, radial_mlp(radial), src, dst, x.shape[0], tp, graph=graph)
    params = list(radial_mlp.parameters())
    return _ChunkedConvolution.apply(x, sh, radial, src, dst, radial_mlp, tp, *params)
