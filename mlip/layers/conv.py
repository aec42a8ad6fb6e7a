"""The edge side of message passing, shared by the models: :class:`EdgeEmbedding` (graph, harmonics,
radial basis of a neighbour list) and :class:`EdgeConvolution` (linear, tensor-product convolution with
the edge harmonics weighted by a learned radial function, linear).

In eval mode the convolution runs :func:`mlip.kernels.tp_conv`'s memory-bounded chunked mode (first
derivatives only, enough for forces and stress); training, which differentiates forces with respect to
the weights, takes the plain path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from mlip.kernels import ConvGraph, TensorProduct, tp_conv, uvu_instructions
from mlip.layers.linear import Linear
from mlip.o3 import Irreps, spherical_harmonics


class Edges(NamedTuple):
    """One neighbour list as the layers see it.

    src, dst: ``[E]`` int64 (messages flow ``src -> dst``); graph: the :class:`~mlip.kernels.ConvGraph`
    of ``src``/``dst`` (edges sorted once, shared by every layer); sh: component-normalized spherical
    harmonics of the edge directions ``[E, (lmax+1)²]`` (e3nn layout); radial: the radial basis
    ``[E, B]``, or the edge lengths ``[E]`` (Å) when the model has no fixed basis.
    """

    src: torch.Tensor
    dst: torch.Tensor
    graph: ConvGraph
    sh: torch.Tensor
    radial: torch.Tensor


class EdgeEmbedding(torch.nn.Module):
    """Edge index ``[2, E]`` and edge vectors ``[E, 3]`` (Å, dst - src) -> :class:`Edges`.

    Args: ``lmax`` of the harmonics; ``radial_basis``: module ``r [E] -> [E, B]`` (``None``: ``radial``
    holds the lengths themselves, for models whose radial functions take ``r``).
    """

    def __init__(self, lmax: int, radial_basis: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.lmax = lmax
        self.radial_basis = radial_basis

    def forward(self, edge_index: torch.Tensor, edge_vectors: torch.Tensor, num_nodes: int) -> Edges:
        src, dst = edge_index[0], edge_index[1]
        sh = spherical_harmonics(self.lmax, edge_vectors, normalize=True, normalization="component")
        r = edge_vectors.norm(dim=-1)
        radial = r if self.radial_basis is None else self.radial_basis(r)
        return Edges(src, dst, ConvGraph(src, dst, num_nodes), sh, radial)


class EdgeConvolution(torch.nn.Module):
    """``linear_out(tp_conv(linear_up(h), Y, radial(basis))) / avg_num_neighbors`` (e3nn layout).

    The tensor product is channelwise (uvu) from ``irreps_in x sh_irreps`` to the irreps of ``target``
    it can reach (``irreps_mid``); ``linear_out`` maps those to ``irreps_out``.

    Args:
        irreps_in: node features ``h`` ``[N, irreps_in.dim]``; sh_irreps: edge harmonics.
        target: irreps the tensor product aims at; irreps_out: of the returned messages.
        radial: builds the radial function from its output width (the TP's ``weight_numel``): a module
            mapping ``Edges.radial`` to per-edge weights ``[E, weight_numel]``.
        avg_num_neighbors: message normalization.
    """

    def __init__(
        self,
        irreps_in: Irreps,
        sh_irreps: Irreps,
        target: Irreps,
        irreps_out: Irreps,
        radial: Callable[[int], torch.nn.Module],
        avg_num_neighbors: float,
    ) -> None:
        super().__init__()
        self.linear_up = Linear(irreps_in, irreps_in)
        self.irreps_mid, instructions = uvu_instructions(irreps_in, sh_irreps, target)
        self.tp = TensorProduct(
            irreps_in, sh_irreps, self.irreps_mid, instructions, shared_weights=False, internal_weights=False
        )
        self.radial = radial(self.tp.weight_numel)
        self.linear_out = Linear(self.irreps_mid, irreps_out)
        self.inv_avg_neighbors = 1.0 / avg_num_neighbors

    def forward(self, h: torch.Tensor, edges: Edges) -> torch.Tensor:
        msg = tp_conv(
            self.linear_up(h),
            edges.sh,
            edges.radial,
            edges.src,
            edges.dst,
            h.shape[0],
            self.tp,
            graph=edges.graph,
            weight_fn=self.radial,
            chunked=not self.training,
        )
        return self.linear_out(msg) * self.inv_avg_neighbors
