"""Tensor-product and spherical-grid kernels: torch references and fused Triton implementations."""

from mlip.kernels.tensor_product import TensorProduct, uvu_instructions
from mlip.kernels.tp_conv import tp_conv

__all__ = ["TensorProduct", "tp_conv", "uvu_instructions"]
