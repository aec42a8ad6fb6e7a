"""Fused tensor-product convolution ``out[i] = sum_{e: dst(e)=i} TP(x[src(e)], sh[e], w[e])``.

Paths: ``reference.py`` (the definition), ``torch_fast.py`` (the CPU path, and its memory-bounded
chunked inference mode), ``triton.py`` (segment reductions over a CSR of edges, CUDA).
"""

from __future__ import annotations

import torch

from mlip.kernels.tensor_product.module import TensorProduct, check_dtype, resolve_backend
from mlip.kernels.tp_conv.graph import ConvGraph
from mlip.kernels.tp_conv.reference import tp_conv_reference
from mlip.kernels.tp_conv.torch_fast import chunk_slices, tp_conv_blocked, tp_conv_chunked, tp_conv_fast

__all__ = ["ConvGraph", "tp_conv"]


def tp_conv(
    node_feats: torch.Tensor,
    edge_sh: torch.Tensor,
    edge_weights: torch.Tensor | None,
    edge_src: torch.Tensor,
    edge_dst: torch.Tensor,
    num_nodes: int,
    tp: TensorProduct,
    deterministic: bool = False,
    backend: str | None = None,
    graph: ConvGraph | None = None,
    weight_fn: torch.nn.Module | None = None,
    chunked: bool = False,
) -> torch.Tensor:
    """Message passing with a tensor product: ``out[i] = sum_{e: dst(e)=i} tp(x[src(e)], sh[e], w[e])``.

    Args:
        node_feats: ``[N, tp.irreps_in1.dim]`` node features (``x``).
        edge_sh: ``[E, tp.irreps_in2.dim]`` per-edge second operand (usually spherical harmonics).
        edge_weights: ``[E, tp.weight_numel]`` per-edge weights (radial MLP output), or ``None`` for a
            ``tp`` with internal/shared weights (then ``tp.weight`` is used).
        edge_src, edge_dst: ``[E]`` int64 node indices (message from ``src`` to ``dst``).
        num_nodes: ``N``, rows of the output.
        tp: the :class:`TensorProduct` giving irreps, paths and normalization.
        deterministic: bit-reproducible summation order (no atomics). The CPU and Triton paths are
            always deterministic; on CUDA the torch path then sorts edges and sums a padded buffer.
        backend: overrides ``tp.backend`` (``"auto"``, ``"torch"``, ``"triton"``, ``"reference"``).
        graph: optional :class:`ConvGraph` built from these ``edge_src``/``edge_dst`` and ``num_nodes``
            (checked: same storage, shape and node count). Its destination/source-sorted edge orders are
            computed on first use and kept, so a model that builds one per neighbour list and passes it
            to every layer sorts the edges once per graph instead of once per call (Triton path; the
            torch paths scatter with ``index_add`` and do not sort). ``None``: a fresh one per call.
        weight_fn: a module mapping ``edge_weights`` (then its per-edge inputs, e.g. the radial
            basis, ``[E, B]`` or ``[E]``) to the weights ``[E, tp.weight_numel]`` (e.g. the radial MLP).
        chunked: with ``weight_fn``, the memory-bounded inference mode: weights and messages computed per
            chunk of edges and recomputed in the backward, first derivatives only
            (:func:`~mlip.kernels.tp_conv.torch_fast.tp_conv_chunked`). Taken on the CPU's fast torch path
            when there is more than one chunk, and for a symbolic edge count (tracing with dynamic
            shapes: one traced loop over edge blocks, ``tp_conv_blocked``, with ``weight_fn`` frozen);
            elsewhere the plain path runs (on CUDA the Triton ``tp_conv`` never stores per-edge
            messages: nothing to bound).

    Returns ``[N, tp.irreps_out.dim]`` in the dtype of ``node_feats`` (float32 or float64).
    The Triton path never materializes per-edge messages; differentiable to any order.
    """
    if node_feats.dim() != 2 or node_feats.shape[1] != tp.irreps_in1.dim:
        raise ValueError(f"node_feats must be [N, {tp.irreps_in1.dim}], got {tuple(node_feats.shape)}")
    if node_feats.shape[0] != num_nodes:
        raise ValueError(f"node_feats has {node_feats.shape[0]} rows but num_nodes={num_nodes}")
    num_edges = edge_src.numel()
    if edge_sh.shape != (num_edges, tp.irreps_in2.dim) or edge_dst.shape != edge_src.shape:
        raise ValueError(f"edge_sh must be [E={num_edges}, {tp.irreps_in2.dim}] and edge_dst [E]")
    check_dtype(node_feats, edge_sh)
    desc = tp.descriptor
    path = resolve_backend(tp.backend if backend is None else backend, desc, node_feats.device)
    if weight_fn is not None:
        if edge_weights is None or edge_weights.shape[0] != num_edges:
            raise ValueError(f"weight_fn needs its inputs [E={num_edges}, ...] as edge_weights")
        cpu = node_feats.device.type == "cpu"
        if chunked and cpu and path == "fast" and desc.channelwise:
            args = (desc, node_feats, edge_sh, weight_fn, edge_weights, edge_src, edge_dst)
            if isinstance(num_edges, torch.SymInt):
                return tp_conv_blocked(*args)
            if len(chunk_slices(desc, num_edges)) > 1:
                return tp_conv_chunked(*args)
        edge_weights = weight_fn(edge_weights)
    elif chunked:
        raise ValueError("chunked=True needs weight_fn (the weights are computed per chunk of edges)")
    weight = tp.resolve_weight(edge_weights, num_edges)
    if weight is not None:
        check_dtype(weight)
    if graph is not None:
        graph.check(edge_src, edge_dst, num_nodes)
    args = (desc, node_feats, edge_sh, weight, edge_src, edge_dst, num_nodes)
    if path == "triton":
        from mlip.kernels.tp_conv.triton import tp_conv_triton

        graph = ConvGraph(edge_src, edge_dst, num_nodes) if graph is None else graph
        return tp_conv_triton(desc, node_feats, edge_sh, weight, graph)
    if path == "fast":
        return tp_conv_fast(*args, deterministic=deterministic)
    return tp_conv_reference(*args, deterministic=deterministic)
