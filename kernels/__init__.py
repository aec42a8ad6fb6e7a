"""Tensor-product and spherical-grid kernels: torch references and fused Triton implementations."""
