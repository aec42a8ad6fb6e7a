"""Suite-wide setup, loaded by pytest before any test module is imported.

Triton chooses between compiling and interpreting a ``@triton.jit`` function when the function is
defined, i.e. when its module is first imported. Without a GPU the Triton code paths can only run in the
interpreter, so ``TRITON_INTERPRET=1`` is set here, before any test imports ``mlip.kernels``; on a CUDA
machine the kernels compile and the same tests run at full speed.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# the fast torch kernels' formulation tuner times candidates on first use: tests take the cost model's
# deterministic choice instead (tests/kernels/test_formulation.py turns the tuner on where it tests it)
os.environ.setdefault("MLIP_TP_TUNE", "0")
# the fused CPU convolution compiles (seconds) on first use above a size: tests run the ATen path unless
# they test the fused one (tests/kernels/test_tp_conv_fused.py)
os.environ.setdefault("MLIP_TP_INDUCTOR", "0")
