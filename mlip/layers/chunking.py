"""Row-chunked evaluation with recomputation, for the memory of node-wise layers in inference.

A node-wise layer such as the symmetric contraction keeps intermediates of ``N x C x (hundreds)``
elements for its backward pass (gigabytes at 10k atoms). :func:`checkpointed_rows` evaluates it on
chunks of rows, saving only each chunk's inputs and recomputing its intermediates when forces are
taken: peak memory then holds one chunk's intermediates, at the price of a second forward of the layer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.checkpoint import checkpoint

ROWS_PER_CHUNK = 64


def checkpointed_rows(
    fn: Callable[..., torch.Tensor], *inputs: torch.Tensor, rows: int | None = None
) -> torch.Tensor:
    """``fn(*inputs)`` for a row-wise ``fn`` (row ``i`` of the output depends on row ``i`` of every input
    only), evaluated over chunks of ``rows`` rows (default ``ROWS_PER_CHUNK``), each under
    :func:`torch.utils.checkpoint.checkpoint`; the chunks' outputs are concatenated along dim 0. A single
    chunk is evaluated directly."""
    rows = ROWS_PER_CHUNK if rows is None else rows
    total = inputs[0].shape[0]
    if total <= rows:
        return fn(*inputs)
    parts = [
        checkpoint(fn, *(t[start : start + rows] for t in inputs), use_reentrant=False)
        for start in range(0, total, rows)
    ]
    return torch.cat(parts)
