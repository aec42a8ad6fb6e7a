"""``TensorProduct``: the public module, one weight layout for every backend."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from mlip.kernels.tensor_product.descriptor import InstructionLike, TPDescriptor, build_descriptor
from mlip.kernels.tensor_product.reference import tensor_product_reference
from mlip.kernels.tensor_product.torch_fast import tensor_product_fast
from mlip.o3 import Irreps, IrrepsLike

log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "triton", "reference")
_LOGGED: set[str] = set()


def log_once(message: str) -> None:
    """Log ``message`` at INFO level the first time it is seen in this process."""
    if message not in _LOGGED:
        _LOGGED.add(message)
        log.info(message)


def check_dtype(*tensors: torch.Tensor) -> None:
    """Only float32 and float64 are supported; bfloat16/float16 are rejected (see ``TensorProduct``)."""
    for t in tensors:
        if t.dtype not in (torch.float32, torch.float64):
            raise TypeError(
                f"tensor products take float32 or float64 tensors, got {t.dtype}; "
                "cast low-precision features to float32 first"
            )


TRITON_UNSUPPORTED = (
    "the Triton backend handles channelwise descriptors only (every path uvu with mul(in2) == 1); "
    "uvw and uvu with mul(in2) > 1 run on the fast torch backend (backend='auto' or 'torch')"
)


def resolve_backend(backend: str, desc: TPDescriptor, device: torch.device) -> str:
    """Map ``auto``/``torch`` to a concrete path: ``triton``, ``fast`` (torch) or ``reference``.

    ``auto`` takes Triton on CUDA for channelwise descriptors and the fast torch path otherwise (CPU, or
    ``uvw`` / ``mul2 > 1`` anywhere), so it never selects a backend that cannot run the descriptor.
    ``triton`` raises ``ValueError`` for descriptors that are not channelwise.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "reference":
        return "reference"
    if backend == "triton":
        if not desc.channelwise:
            raise ValueError(TRITON_UNSUPPORTED)
        return "triton"
    if backend == "auto":
        if device.type == "cuda" and desc.channelwise:
            return "triton"
        log_once(f"tensor product on {device.type}: using the fast torch backend")
    return "fast"


class TensorProduct(torch.nn.Module):
    """Clebsch-Gordan tensor product, numerically equal to e3nn's ``o3.TensorProduct`` with
    ``irrep_normalization="component"`` and ``path_normalization="element"``.

    Args:
        irreps_in1, irreps_in2, irreps_out: irreps of the two inputs and the output (e3nn layout).
        instructions: ``(i_in1, i_in2, i_out, mode, has_weight[, path_weight])`` with mode ``"uvu"``
            (channelwise) or ``"uvw"`` (fully connected), as in e3nn.
        shared_weights: one weight vector for the whole batch instead of one per sample.
        internal_weights: hold the (shared) weights as the parameter ``weight`` (``randn`` init, as e3nn).
        backend: ``"auto"`` (Triton on CUDA for channelwise descriptors, fast torch otherwise),
            ``"torch"`` (fast torch path, every descriptor), ``"triton"`` (channelwise descriptors only:
            ``ValueError`` for ``uvw`` or ``mul(in2) > 1``) or ``"reference"``.

    Inputs ``x [B, irreps_in1.dim]``, ``y [B, irreps_in2.dim]``, ``weight [B, weight_numel]`` (or
    ``[weight_numel]`` when shared); returns ``[B, irreps_out.dim]`` in the input dtype. Only float32 and
    float64 are accepted: bfloat16 inputs raise ``TypeError`` (cast to float32 first).
    """

    def __init__(
        self,
        irreps_in1: IrrepsLike,
        irreps_in2: IrrepsLike,
        irreps_out: IrrepsLike,
        instructions: Sequence[InstructionLike],
        shared_weights: bool = False,
        internal_weights: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if internal_weights and not shared_weights:
            raise ValueError("internal weights are shared: pass shared_weights=True")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.descriptor = build_descriptor(irreps_in1, irreps_in2, irreps_out, instructions)
        self.irreps_in1: Irreps = self.descriptor.irreps_in1
        self.irreps_in2: Irreps = self.descriptor.irreps_in2
        self.irreps_out: Irreps = self.descriptor.irreps_out
        self.shared_weights = shared_weights
        self.internal_weights = internal_weights
        self.backend = backend
        self.weight_numel = self.descriptor.weight_numel
        if internal_weights and self.weight_numel > 0:
            self.weight = torch.nn.Parameter(torch.randn(self.weight_numel))
        else:
            self.weight = None

    @property
    def instructions(self):
        return self.descriptor.instructions

    def resolve_weight(self, weight: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """The weight tensor to use: internal, shared ``[numel]`` or per sample ``[batch, numel]``."""
        if self.weight_numel == 0:
            return None
        if weight is None:
            if self.weight is None:
                raise ValueError("this TensorProduct has external weights: pass weight=")
            return self.weight
        if self.internal_weights:
            raise ValueError("this TensorProduct has internal weights: do not pass weight=")
        expected = (self.weight_numel,) if self.shared_weights else (batch, self.weight_numel)
        if tuple(weight.shape) != expected:
            raise ValueError(f"weight must have shape {expected}, got {tuple(weight.shape)}")
        return weight

    def check_inputs(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
            raise ValueError(f"expected x [B, {self.irreps_in1.dim}] and y [B, {self.irreps_in2.dim}]")
        if x.shape[1] != self.irreps_in1.dim or y.shape[1] != self.irreps_in2.dim:
            raise ValueError(
                f"feature sizes {x.shape[1]}, {y.shape[1]} != {self.irreps_in1.dim}, {self.irreps_in2.dim}"
            )
        check_dtype(x, y)

    def forward(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        self.check_inputs(x, y)
        w = self.resolve_weight(weight, x.shape[0])
        if w is not None:
            check_dtype(w)
        path = resolve_backend(self.backend, self.descriptor, x.device)
        if path == "triton":
            from mlip.kernels.tensor_product.triton import tensor_product_triton

            return tensor_product_triton(self.descriptor, x, y, w)
        if path == "fast":
            return tensor_product_fast(self.descriptor, x, y, w)
        return tensor_product_reference(self.descriptor, x, y, w)

    def extra_repr(self) -> str:
        return (
            f"{self.irreps_in1} x {self.irreps_in2} -> {self.irreps_out}, "
            f"{len(self.instructions)} paths, weight_numel={self.weight_numel}"
        )
