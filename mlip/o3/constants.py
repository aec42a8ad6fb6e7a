"""A cache of constant tables (Clebsch-Gordan, grids, ...) per dtype and device.

Tables are built once in float64 on the CPU, then converted on first use for each ``(dtype, device)``,
so hot paths never recompute or re-transfer them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import torch
from torch.utils._python_dispatch import _disable_current_modes

_CACHE: dict[tuple[Hashable, torch.dtype, str], torch.Tensor] = {}


def cached_constant(
    key: Hashable,
    build: Callable[[], torch.Tensor],
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The table ``build()`` (float64, CPU) cast to ``dtype`` (default: torch's) on ``device`` (default cpu).

    The returned tensor is shared: callers must not modify it in place.
    """
    dtype = torch.get_default_dtype() if dtype is None else dtype
    device = torch.device("cpu" if device is None else device)
    cache_key = (key, dtype, str(device))
    table = _CACHE.get(cache_key)
    if table is None:
        with _disable_current_modes():  # real values even when first asked for while tracing
            table = build().to(dtype=dtype, device=device).contiguous()
        _CACHE[cache_key] = table
    return table
