"""Row-chunked evaluation with recomputation, for the memory of node-wise layers in inference.

A node-wise layer such as the symmetric contraction keeps intermediates of ``N x C x (hundreds)``
elements for its backward pass (gigabytes at 10k atoms). :func:`checkpointed_rows` evaluates it on
chunks of rows, saving only each chunk's inputs and recomputing its intermediates when forces are
taken: peak memory then holds one chunk's intermediates, at the price of a second forward of the layer.

Chunk sizes differ by device: on the CPU a small chunk bounds the memory (roughly halving the peak of a
MACE product basis) for a recomputation cost that does not depend on the chunk size; on a GPU every
chunk costs kernel launches, which bound these models at small sizes, so CUDA chunks are as large as a few
GB of intermediates allow. The measurements are in ``benchmarks/notes/chunking.md``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.checkpoint import checkpoint

from mlip.kernels import blocked_rows

# rows per checkpointed chunk, by device type (others use the CPU figure)
ROWS_PER_CHUNK = {"cpu": 64, "cuda": 4096}


def checkpointed_rows(
    fn: Callable[..., torch.Tensor], *inputs: torch.Tensor, rows: int | None = None
) -> torch.Tensor:
    """``fn(*inputs)`` for a row-wise ``fn`` (row ``i`` of the output depends on row ``i`` of every input
    only), evaluated over chunks of ``rows`` rows (default: ``ROWS_PER_CHUNK`` of the inputs' device),
    each under :func:`torch.utils.checkpoint.checkpoint`; the chunks' outputs are concatenated along
    dim 0. A single chunk is evaluated directly. A symbolic row count (tracing with dynamic shapes, the
    compiled step) runs :func:`mlip.kernels.blocked_rows` (one traced loop over blocks of ``rows``
    rows; ``fn`` a module with frozen weights)."""
    if rows is None:
        rows = ROWS_PER_CHUNK.get(inputs[0].device.type, ROWS_PER_CHUNK["cpu"])
    total = inputs[0].shape[0]
    if isinstance(total, torch.SymInt):
        return blocked_rows(fn, *inputs, rows=rows)
    if total <= rows:
        return fn(*inputs)
    # torch.split, not slicing: the backward of a slice fills a zero gradient of the whole input per chunk
    # (quadratic in the rows), a split's backward is one concatenation
    chunks = zip(*(t.split(rows) for t in inputs), strict=True)
    return torch.cat([checkpoint(fn, *chunk, use_reentrant=False) for chunk in chunks])
