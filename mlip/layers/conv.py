"""Memory-bounded message passing for inference: the radial MLP and ``mlip.kernels.tp_conv`` evaluated
over chunks of edges, with the per-edge intermediates recomputed in the backward pass instead of stored.

Per-edge tensors of a MACE layer (``E x channels x Σ(2l+1)``, gigabytes for a 1000-atom box) then never
exist at full size, in the forward or the force backward; the working set stays in cache. First
derivatives only (``once_differentiable``): training, which differentiates forces, uses the plain
autograd path (:func:`edge_convolution` picks it when ``chunked=False``).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from mlip.kernels import ConvGraph, TensorProduct, tp_conv

EDGES_PER_CHUNK = 4096


def _chunks(num_edges: int) -> list[slice]:
    return [slice(s, min(s + EDGES_PER_CHUNK, num_edges)) for s in range(0, num_edges, EDGES_PER_CHUNK)]


class _ChunkedConvolution(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, sh, radial, src, dst, radial_mlp, tp, *params):  # type: ignore[override]
        ctx.save_for_backward(x, sh, radial, src, dst, *params)
        ctx.radial_mlp, ctx.tp = radial_mlp, tp
        out = x.new_zeros(x.shape[0], tp.irreps_out.dim)
        for s in _chunks(src.numel()):
            out += tp_conv(x, sh[s], radial_mlp(radial[s]), src[s], dst[s], x.shape[0], tp)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        x, sh, radial, src, dst, *params = ctx.saved_tensors
        wanted = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]]
        param_wanted = list(ctx.needs_input_grad[7:])
        grad_x = torch.zeros_like(x) if wanted[0] else None
        grad_sh = torch.zeros_like(sh) if wanted[1] else None
        grad_radial = torch.zeros_like(radial) if wanted[2] else None
        grad_params = [torch.zeros_like(p) if w else None for p, w in zip(params, param_wanted, strict=True)]
        live_params = [p for p, w in zip(ctx.radial_mlp.parameters(), param_wanted, strict=True) if w]
        for s in _chunks(src.numel()):
            with torch.enable_grad():
                xd = x.detach().requires_grad_(wanted[0])
                shd = sh[s].detach().requires_grad_(wanted[1])
                rd = radial[s].detach().requires_grad_(wanted[2])
                out = tp_conv(xd, shd, ctx.radial_mlp(rd), src[s], dst[s], x.shape[0], ctx.tp)
                inputs = [t for t, w in zip((xd, shd, rd), wanted, strict=True) if w] + live_params
                grads = list(torch.autograd.grad(out, inputs, grad_out, allow_unused=True))
            for flag, target, index in (
                (wanted[0], grad_x, None),
                (wanted[1], grad_sh, s),
                (wanted[2], grad_radial, s),
            ):
                if flag:
                    g = grads.pop(0)
                    if g is not None:
                        target[index if index is not None else slice(None)] += g
            for i, w in enumerate(param_wanted):
                if w:
                    g = grads.pop(0)
                    if g is not None:
                        grad_params[i] += g
        return (grad_x, grad_sh, grad_radial, None, None, None, None, *grad_params)


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
    if not chunked or x.device.type != "cpu" or src.numel() <= EDGES_PER_CHUNK:
        return tp_conv(x, sh, radial_mlp(radial), src, dst, x.shape[0], tp, graph=graph)
    params = list(radial_mlp.parameters())
    return _ChunkedConvolution.apply(x, sh, radial, src, dst, radial_mlp, tp, *params)
