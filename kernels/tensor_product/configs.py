"""The standard kernel benchmark set (ARCHITECTURE.md): irreps of each configuration, shared by tests and
``benchmarks/tp.py``. Channelwise configs use :func:`uvu_instructions` (one output block per path, as
MACE and NequIP build their convolutions); the ``uvw`` configs connect every allowed path."""

from __future__ import annotations

from mlip.kernels.tensor_product.descriptor import uvu_instructions
from mlip.kernels.tensor_product.module import TensorProduct
from mlip.o3 import Irreps

# name: (irreps_in1, irreps_in2 (edge SH), target irreps of the output)
CHANNELWISE = {
    "mace-large": ("128x0e+128x1o+128x2e", "0e+1o+2e+3o", "0e+1o+2e+3o"),
    "mace-medium": ("128x0e+128x1o", "0e+1o+2e+3o", "0e+1o+2e"),
    "nequip-lips": ("32x0o+32x0e+32x1o+32x1e+32x2o+32x2e", "0e+1o+2e", None),
    "nequip-aspirin": ("64x0o+64x0e+64x1o+64x1e", "0e+1o", None),
    "nequip-toluene": ("64x0o+64x0e+64x1o+64x1e+64x2o+64x2e", "0e+1o+2e", None),
    "nequip-benzene": ("64x0o+64x0e+64x1o+64x1e+64x2o+64x2e+64x3o+64x3e", "0e+1o+2e+3o", None),
    "nequip-water": ("32x0o+32x0e+32x1o+32x1e", "0e+1o", None),
}
FULLY_CONNECTED = {
    "uvw": ("10x1o+10x1e+48x0e+48x0o", "0e+1o", "10x1o+10x1e+48x0e+48x0o"),
    "uvw-l2": ("10x1o+10x1e+48x0e+48x0o", "0e+1o+2e", "10x1o+10x1e+48x0e+48x0o"),
}
CONFIGS = {**CHANNELWISE, **FULLY_CONNECTED}


def shape_instructions(
    in1: str, in2: str, out: str | None, channelwise: bool
) -> tuple[str, str, Irreps, list[tuple]]:
    """``(irreps_in1, irreps_in2, irreps_out, instructions)`` of any shape: channelwise (``uvu``, MACE's
    output blocks, ``out`` the target irreps, default ``in1``) or fully connected (``uvw``, every allowed
    path into the given ``out``)."""
    if channelwise:
        irreps_out, instructions = uvu_instructions(in1, in2, out or in1)
        return in1, in2, irreps_out, instructions
    if out is None:
        raise ValueError("a uvw shape needs its output irreps")
    a, b, c = Irreps(in1), Irreps(in2), Irreps(out)
    instructions = [
        (i, j, k, "uvw", True)
        for i, (_, ir1) in enumerate(a)
        for j, (_, ir2) in enumerate(b)
        for k, (_, ir) in enumerate(c)
        if ir in list(ir1 * ir2)
    ]
    return in1, in2, c, instructions


def config_instructions(name: str) -> tuple[str, str, Irreps, list[tuple]]:
    """``(irreps_in1, irreps_in2, irreps_out, instructions)`` of a named configuration."""
    return shape_instructions(*CONFIGS[name], channelwise=name in CHANNELWISE)


def make_tp(name: str, backend: str = "auto", shared_weights: bool = False) -> TensorProduct:
    """The :class:`TensorProduct` of a named configuration with external weights, per sample
    (``[B, weight_numel]``) or shared (``[weight_numel]``)."""
    return TensorProduct(*config_instructions(name), shared_weights=shared_weights, backend=backend)
