"""Tensor-product and spherical-grid kernels: torch references and fused Triton implementations."""

from mlip.kernels.gaunt import gaunt_tp
from mlip.kernels.s2_activation import s2_activation, symmetric_product
from mlip.kernels.tensor_product import TensorProduct, uvu_instructions
from mlip.kernels.tp_conv import ConvGraph, tp_conv

__all__ = [
    "ConvGraph",
    "TensorProduct",
    "gaunt_tp",
    "s2_activation",
    "symmetric_product",
    "tp_conv",
    "uvu_instructions",
]
