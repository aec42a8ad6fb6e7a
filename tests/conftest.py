"""Suite-wide setup, loaded by pytest before any test module is imported.

Triton chooses between compiling and interpreting a ``@triton.jit`` function when the function is
defined, i.e. when its module is first imported. Without a GPU the Triton code paths can only run in the
interpreter, so ``TRITON_INTERPRET=1`` is set here, before any test imports ``mlip.kernels``; on a CUDA
machine the kernels compile and the same tests run at full speed.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# the fast torch kernels' formulation tuner times candidates on first use: tests take the cost model's
# deterministic choice instead (tests/kernels/test_formulation.py turns the tuner on where it tests it)
os.environ.setdefault("MLIP_TP_TUNE", "0")
# the fused CPU convolution compiles (seconds) on first use above a size: tests run the ATen path unless
# they test the fused one (tests/kernels/test_tp_conv_fused.py)
os.environ.setdefault("MLIP_TP_INDUCTOR", "0")


@pytest.fixture
def two_group_tp():
    """A channelwise ``TensorProduct`` with two multiplicities (two channel groups) and an unweighted
    path (the weights' column of ones)."""
    from mlip.kernels import TensorProduct

    paths = [(0, 1, 0, "uvu", False), (1, 0, 0, "uvu", True), (1, 1, 1, "uvu", True),
             (0, 0, 1, "uvu", True), (2, 1, 3, "uvu", True), (2, 0, 2, "uvu", True)]  # fmt: skip
    return TensorProduct("3x0e+3x1o+2x1e", "0e+1o", "3x1o+3x0e+2x1e+2x0o", paths)


@pytest.fixture
def chunked_conv_problem(two_group_tp):
    """``two_group_tp``, a radial MLP for its weights (float64) and inputs that require grad: ``(tp, mlp,
    x, sh, radial, src, dst, probe)``, 6 nodes and 23 edges (several chunks at a small chunk size)."""
    from mlip.layers.radial import RadialMLP

    tp = two_group_tp
    g = torch.Generator().manual_seed(0)
    mlp = RadialMLP([4, 8, tp.weight_numel]).double()
    nodes, edges = 6, 23
    x = torch.randn(nodes, tp.irreps_in1.dim, generator=g, dtype=torch.float64, requires_grad=True)
    sh = torch.randn(edges, tp.irreps_in2.dim, generator=g, dtype=torch.float64, requires_grad=True)
    radial = torch.randn(edges, 4, generator=g, dtype=torch.float64, requires_grad=True)
    src, dst = torch.randint(0, nodes, (2, edges), generator=g)
    probe = torch.randn(nodes, tp.irreps_out.dim, generator=g, dtype=torch.float64)
    return tp, mlp, x, sh, radial, src, dst, probe
