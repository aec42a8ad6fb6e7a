"""Fused Triton convolution: segment reductions over a CSR of edges, no per-edge messages in memory.

The kernels are those of :mod:`mlip.kernels.tensor_product.triton`, generated with gathers through
``edge_src`` / ``edge_dst``; see that module for the design (roles, transposed descriptors, chunks).
"""

from __future__ import annotations

import torch
from mlip.kernels.tensor_product.descriptor import TPDescriptor
from mlip.kernels.tensor_product.triton import Graph, compute, weight_slot


def tp_conv_triton(
    desc: TPDescriptor,
    node_feats: torch.Tensor,
    edge_sh: torch.Tensor,
    edge_weights: torch.Tensor | None,
    edge_src: torch.Tensor,
    edge_dst: torch.Tensor,
    num_nodes: int,
) -> torch.Tensor:
    """Same contract as :func:`~mlip.kernels.tp_conv.reference.tp_conv_reference`; always deterministic."""
    graph = Graph(edge_src, edge_dst, num_nodes, node_feats.shape[0], gather=True)
    w = weight_slot(desc, edge_weights, edge_src.numel(), node_feats)
    return compute(desc, graph, "o", {"x": node_feats, "y": edge_sh, "w": w})
