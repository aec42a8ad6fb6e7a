"""Clebsch-Gordan tensor product (e3nn semantics): reference, fast torch and Triton backends."""

from mlip.kernels.tensor_product.descriptor import TPDescriptor, build_descriptor, uvu_instructions
from mlip.kernels.tensor_product.module import TensorProduct

__all__ = ["TPDescriptor", "TensorProduct", "build_descriptor", "uvu_instructions"]
