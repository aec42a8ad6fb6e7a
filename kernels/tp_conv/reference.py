"""Reference convolution: gather, per-edge tensor product (reference), scatter-sum over destinations."""

from __future__ import annotations

import torch

from mlip.kernels.tensor_product.descriptor import TPDescriptor
from mlip.kernels.tensor_product.reference import tensor_product_reference


def scatter_sum(
    values: torch.Tensor, index: torch.Tensor, num: int, deterministic: bool = False
) -> torch.Tensor:
    """``out[i] = sum_{e: index[e] = i} values[e]`` -> ``[num, *values.shape[1:]]``.

    ``index_add`` is deterministic on the CPU. On CUDA it uses atomics, so ``deterministic=True`` there
    sorts the rows by index and writes them into a padded ``[num, max_degree, ...]`` buffer (each slot
    written once) that is summed in a fixed order: bit-identical results across runs.
    """
    out_shape = (num, *values.shape[1:])
    if not deterministic or values.device.type == "cpu":
        return values.new_zeros(out_shape).index_add(0, index, values)
    order = torch.argsort(index, stable=True)
    sorted_index = index[order]
    counts = torch.bincount(index, minlength=num)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(index.numel(), device=index.device) - starts[sorted_index]
    width = int(counts.max()) if index.numel() else 0
    padded = values.new_zeros(num, width, *values.shape[1:])
    padded = padded.index_put((sorted_index, rank), values[order])
    return padded.sum(dim=1)


def tp_conv_reference(
    desc: TPDescriptor,
    node_feats: torch.Tensor,
    edge_sh: torch.Tensor,
    edge_weights: torch.Tensor | None,
    edge_src: torch.Tensor,
    edge_dst: torch.Tensor,
    num_nodes: int,
    deterministic: bool = False,
) -> torch.Tensor:
    """``out[i] = sum_{e: dst(e) = i} TP(x[src(e)], sh[e], w[e])`` -> ``[N, dim_out]``."""
    messages = tensor_product_reference(desc, node_feats.index_select(0, edge_src), edge_sh, edge_weights)
    return scatter_sum(messages, edge_dst, num_nodes, deterministic)
