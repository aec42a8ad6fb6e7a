"""Triton tensor product and convolution for channelwise descriptors (``uvu``, ``mul2 == 1``).

The product is a quadrilinear form ``T(x, y, w, o) = sum coef C[i,j,k] x[src,u,i] y[e,j] w[e,p,u] o[dst,u,k]``
over edges ``e``, paths ``p`` and channels ``u``. The forward is ``dT/do``; the gradient with respect to
any other slot is ``dT/d(slot)`` with ``o`` replaced by the incoming gradient. So one generated kernel
family, parametrized by the *role* (the slot it computes) and summing one or more *forms* (which operand
fills each other slot), gives forward (role ``o``), backward (roles ``x``, ``y``, ``w``) and, because
the gradient of a sum of forms is again a sum of forms, double backward and beyond, with no
hand-written derivative kernels.

Kernels are generated per descriptor: the sparse Wigner-3j entries are unrolled into straight-line code
over tiles ``[BE edges, BU channels]`` read directly in e3nn's layout; the coefficients are compile-time
constants in the tensors' dtype (exact in float64). Node-indexed outputs (roles ``o`` and ``x`` of a
convolution) are segment reductions over a CSR of edges sorted by ``dst`` (resp. ``src``): each program
owns one node and a channel tile, sums its edges in registers and writes once. There are no atomics,
so results are deterministic, and per-edge messages never reach global memory. Paths are split into
chunks of bounded accumulated components to bound register use; the chunks are consecutive sections of
one kernel (one launch per role), each writing its own components. Requests for two or three of the
slots ``x``, ``y``, ``w`` of a convolution (every backward and double backward) run as one fused kernel
over the edges sorted by ``src``, which gathers the shared operands once instead of once per slot.

Modules, top-down: ``_autograd`` (differentiable requests) -> ``_launch`` (one launch per request,
operand numbering) -> ``_cache`` (generated source files, imported once) -> ``_codegen`` (the kernel
text) -> ``_tuning`` (path sections, block-size candidates) -> ``_layout`` (slots, components, columns).

Environment:
    ``MLIP_TRITON_KERNEL_DIR``: folder the generated kernel sources are written to (Triton compiles from
        a file), one file per kernel named by the hash of its text; default
        ``{tempfile.gettempdir()}/mlip_triton_tp_{uid}``.
    ``MLIP_TP_AUTOTUNE=0``: no block-size tuning (the first candidate, as in the interpreter). Tuning is
        keyed on the edge count rounded up to a power of two.
"""

from __future__ import annotations

import torch

from mlip.kernels.tensor_product.descriptor import TPDescriptor
from mlip.kernels.tensor_product.triton._autograd import compute, evaluate
from mlip.kernels.tensor_product.triton._layout import weight_slot
from mlip.kernels.tp_conv.graph import ConvGraph

__all__ = ["compute", "evaluate", "tensor_product_triton", "weight_slot"]


def tensor_product_triton(
    desc: TPDescriptor, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None
) -> torch.Tensor:
    """Same contract as :func:`~mlip.kernels.tensor_product.reference.tensor_product_reference`."""
    graph = ConvGraph.identity(x.shape[0], x.device)
    return compute(desc, graph, "o", {"x": x, "y": y, "w": weight_slot(desc, weight, x.shape[0], x)})
