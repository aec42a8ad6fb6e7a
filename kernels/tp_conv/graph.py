"""``ConvGraph``: the edge list of a convolution with its node-sorted orders, computed once per graph."""

from __future__ import annotations

import torch

SORT_KEYS = ("dst", "src")


class ConvGraph:
    """Edges ``src -> dst`` of one neighbour list and their CSR orders, built lazily and kept.

    The fused Triton convolution sums each node's edges in registers, so it needs the edges grouped by
    destination (forward) and by source (gradient with respect to the node features): an ``argsort``
    plus a ``searchsorted`` each. A ``ConvGraph`` computes them on first use and keeps them; passing the same
    object to every :func:`~mlip.kernels.tp_conv` call on a graph (all interaction layers of a model, and
    their backward and double-backward passes, which reuse it automatically) sorts once per graph
    instead of once per call. Building one costs nothing until a kernel asks for an order, so the CPU
    path (which scatters with ``index_add``) pays nothing.

    Args:
        edge_src, edge_dst: ``[E]`` int64 node indices (message from ``src`` to ``dst``). They must not be
            modified in place while the graph is in use: the cached orders would go stale.
        num_nodes: ``N``, number of destination nodes (rows of the convolution output).
        num_src: number of source nodes (rows of the node features); defaults to ``num_nodes``.
        gather: ``False`` for the identity pairing of a plain batched tensor product (see
            :meth:`identity`), where no CSR is ever built.
    """

    def __init__(
        self,
        edge_src: torch.Tensor,
        edge_dst: torch.Tensor,
        num_nodes: int,
        num_src: int | None = None,
        gather: bool = True,
    ) -> None:
        if edge_src.dim() != 1 or edge_src.shape != edge_dst.shape:
            raise ValueError(
                f"edge_src and edge_dst must be [E], got {tuple(edge_src.shape)}, {tuple(edge_dst.shape)}"
            )
        self.src, self.dst, self.gather = edge_src, edge_dst, gather
        self.num_nodes = _size(num_nodes)
        self.num_src = self.num_nodes if num_src is None else _size(num_src)
        self.num_edges = edge_src.numel()
        self._csr: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def with_orders(
        cls,
        edge_src: torch.Tensor,
        edge_dst: torch.Tensor,
        num_nodes: int,
        num_src: int,
        gather: bool,
        orders: dict[str, tuple[torch.Tensor, torch.Tensor]],
    ) -> ConvGraph:
        """A graph whose CSR orders (``by -> (rowptr, perm)``, as :meth:`csr` returns them) are already
        known: how a kernel op, which receives the orders as tensors, sees its graph."""
        graph = cls(edge_src, edge_dst, num_nodes, num_src, gather)
        graph._csr.update(orders)
        return graph

    @classmethod
    def identity(cls, batch: int, device: torch.device) -> ConvGraph:
        """Edge ``e`` pairs row ``e`` with row ``e`` (a batched tensor product as a degenerate graph)."""
        index = torch.arange(batch, device=device)
        return cls(index, index, batch, batch, gather=False)

    def csr(self, by: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rowptr [rows + 1], perm [E])`` of the edges grouped by ``by`` (``"dst"`` or ``"src"``):
        the edges of node ``i`` are ``perm[rowptr[i]:rowptr[i + 1]]``, in their original order."""
        if by not in SORT_KEYS:
            raise ValueError(f"by must be one of {SORT_KEYS}, got {by!r}")
        if by not in self._csr:
            index, rows = (self.dst, self.num_nodes) if by == "dst" else (self.src, self.num_src)
            perm = torch.argsort(index, stable=True)
            # searchsorted, not bincount: the shape [rows + 1] does not depend on the values (no host sync)
            boundaries = torch.arange(rows + 1, dtype=index.dtype, device=index.device)
            rowptr = torch.searchsorted(index.index_select(0, perm), boundaries)
            self._csr[by] = (rowptr, perm)
        return self._csr[by]

    def check(self, edge_src: torch.Tensor, edge_dst: torch.Tensor, num_nodes: int) -> None:
        """Raise ``ValueError`` unless this graph was built from these very edge tensors (same storage,
        shape and node count): a cheap guard against passing the graph of another neighbour list."""
        same = (
            self.num_nodes == num_nodes
            and self.src.shape == edge_src.shape
            and self.dst.shape == edge_dst.shape
            and self.src.device == edge_src.device
            and _same_storage(self.src, edge_src)
            and _same_storage(self.dst, edge_dst)
        )
        if not same:
            raise ValueError("graph was built from other edge_src/edge_dst tensors or another num_nodes")

    def __repr__(self) -> str:
        return (
            f"ConvGraph(num_edges={self.num_edges}, num_nodes={self.num_nodes}, sorted={sorted(self._csr)})"
        )


def _same_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``a`` is ``b`` or views the same memory; traced (fake) tensors have no memory: identity only."""
    if a is b:
        return True
    from torch._subclasses.fake_tensor import is_fake

    return not (is_fake(a) or is_fake(b)) and a.data_ptr() == b.data_ptr()


def _size(n: int | torch.SymInt) -> int | torch.SymInt:
    """A node count as an ``int``; a symbolic size (tracing with dynamic shapes) stays symbolic."""
    return n if isinstance(n, torch.SymInt) else int(n)
