"""Fast torch convolution: layout change on nodes, gather, grouped coupling GEMM + bmm, index_add.

Edges are processed in chunks (see :mod:`mlip.kernels.tensor_product.torch_fast`) so the ``[E, U, K]``
temporaries stay bounded in inference; node features are converted to the ``[N, U, D1]`` channel layout
once, before the gather, and the output is converted back once, after the scatter. Descriptors that are
not channelwise (``uvw``, ``mul2 > 1``) gather node features per chunk of edges and use the general
pair/GEMM product.
"""

from __future__ import annotations

import torch

from mlip.kernels.tensor_product import torch_fast as fast
from mlip.kernels.tensor_product.descriptor import TPDescriptor
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
    """Same contract as :func:`~mlip.kernels.tp_conv.reference.tp_conv_reference`."""
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
    weight_ext = fast.extend_weights(desc, edge_weights, node_feats)
    blocks: dict[int, torch.Tensor] = {}
    for g in fast.plan(desc):
        xc = fast.to_channels(node_feats, desc, g)
        agg = xc.new_zeros(num_nodes, g.mul, g.out_width)
        sizes = fast.chunks(edge_src.numel(), g)  # split, not sliced (see fast.chunk_sizes)
        gathered = xc.index_select(0, edge_src).split(sizes)
        weights = fast.split_weights(weight_ext, sizes)
        for xs, ys, ws, dst in zip(
            gathered, edge_sh.split(sizes), weights, edge_dst.split(sizes), strict=True
        ):
            msg = fast.messages(desc, g, xs, ys, ws)
            if in_place:
                agg.index_add_(0, dst, msg)
            else:
                agg = agg + scatter_sum(msg, dst, num_nodes, deterministic)
        blocks.update(fast.from_channels(agg, desc, g))
    return fast.assemble(desc, blocks, num_nodes, node_feats)
