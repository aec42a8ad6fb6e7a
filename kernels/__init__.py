"""Tensor-product and spherical-grid kernels: torch references and fused Triton implementations.

Every kernel-using module holds its choice of implementation in a ``backend`` attribute
(``"auto" | "torch" | "triton"``); :func:`set_backend` sets it on every such module of a model, after
construction: the backend belongs to the machine a model runs on, not to its architecture or its file.
"""

from __future__ import annotations

import torch

from mlip.kernels.blocks import blocked_rows
from mlip.kernels.gaunt import gaunt_tp
from mlip.kernels.gemm import matmul
from mlip.kernels.inductor import inductor_options
from mlip.kernels.s2_activation import s2_activation, symmetric_product
from mlip.kernels.tensor_product import TensorProduct, uvu_instructions
from mlip.kernels.tp_conv import ConvGraph, tp_conv

__all__ = [
    "BACKENDS",
    "ConvGraph",
    "TensorProduct",
    "blocked_rows",
    "gaunt_tp",
    "inductor_options",
    "matmul",
    "s2_activation",
    "set_backend",
    "symmetric_product",
    "tp_conv",
    "uvu_instructions",
]

BACKENDS = ("auto", "torch", "triton")


def set_backend(model: torch.nn.Module, backend: str) -> torch.nn.Module:
    """Set ``backend`` on every kernel-using submodule of ``model`` (tensor products, spherical-grid
    layers); returns ``model``.

    ``"auto"``: Triton on CUDA where it is the faster path, the fast torch path otherwise (always on the
    CPU); ``"torch"``: the torch paths; ``"triton"``: the fused kernels (channelwise tensor products only:
    ``ValueError`` here for a model holding another kind). Weights are the same for every backend.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    users = [m for m in model.modules() if isinstance(getattr(m, "backend", None), str)]
    if backend == "triton":
        for m in users:
            if isinstance(m, TensorProduct) and not m.descriptor.channelwise:
                raise ValueError(f"backend='triton': {m.irreps_in1} x {m.irreps_in2} is not channelwise")
    for m in users:
        m.backend = backend
    return model
