"""Inductor settings that every CPU compile of this package needs: the workaround for a torch 2.13
Inductor bug, in one place for the fused convolution kernels (:mod:`mlip.kernels.tp_conv.fused`),
``EquivariantModel.compile_energies`` and the AOTInductor packages (:mod:`mlip.compile.package`).

With more than one thread, Inductor's C++ turns scatter-adds (``index_add``) inside loops into atomic
vector adds at wrong offsets: wrong results and writes past the buffer (benchmarks/notes/compile.md). So
Inductor's own C++ kernels run on one thread (``cpp.threads = 1``); the matrix products stay ATen calls
and still use every thread. The setting only concerns generated C++ (CPU) code.
"""

from __future__ import annotations

from typing import Any

import torch

CPU_WORKAROUNDS: dict[str, Any] = {"cpp.threads": 1}


def inductor_options(mode: str | None = None, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``options`` of ``torch.compile(..., options=)`` for ``mode`` (its Inductor settings, which
    ``torch.compile`` cannot take together with ``options``) with :data:`CPU_WORKAROUNDS`; the caller's
    ``options`` win over both."""
    base = torch._inductor.list_mode_options(mode) if mode is not None else {}
    return {**base, **CPU_WORKAROUNDS, **(options or {})}
