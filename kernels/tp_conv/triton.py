"""Fused Triton convolution: segment reductions over a CSR of edges, no per-edge messages in memory.

The kernels are those of :mod:`mlip.kernels.tensor_product.triton`, generated with gathers through
``edge_src`` / ``edge_dst``; see that package for the design (roles, forms, sections) and its custom op.
"""

from __future__ import annotations

import torch

from mlip.kernels.tensor_product.descriptor import TPDescriptor
from mlip.kernels.tensor_product.triton import compute, weight_slot
from mlip.kernels.tp_conv.graph import ConvGraph


def tp_conv_triton(
    desc: TPDescriptor,
    node_feats: torch.Tensor,
    edge_sh: torch.Tensor,
    edge_weights: torch.Tensor | None,
    graph: ConvGraph,
) -> torch.Tensor:
    """:func:`~mlip.kernels.tp_conv.reference.tp_conv_reference` over ``graph`` (its CSR orders are built on
    first use and kept in it); always deterministic."""
    w = weight_slot(desc, edge_weights, graph.num_edges, node_feats)
    return compute(desc, graph, "o", {"x": node_feats, "y": edge_sh, "w": w})
