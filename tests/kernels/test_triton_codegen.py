"""Snapshot of the generated Triton source for one tiny descriptor, so that a codegen change shows in
review as a diff of the committed text. After an intended change, rewrite the snapshots with
``MLIP_UPDATE_SNAPSHOTS=1 pytest tests/kernels/test_triton_codegen.py`` and commit them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mlip.kernels import TensorProduct, uvu_instructions
from mlip.kernels.tensor_product.triton import _cache, _codegen, _launch, _tuning

SNAPSHOTS = Path(__file__).parent / "snapshots"


def tiny_descriptor():
    out, instructions = uvu_instructions("2x0e+2x1o", "0e+1o", "0e+1o")
    return TensorProduct("2x0e+2x1o", "0e+1o", out, instructions).descriptor


def sources() -> dict[str, str]:
    """The convolution's forward kernel and its fused x/y/w gradient kernel (untuned), as the autograd
    function requests them."""
    desc = tiny_descriptor()
    x, y, w, o = (torch.empty(0, 0) for _ in range(4))
    forward = _launch.number_operands({"o": [{"x": x, "y": y, "w": w}]})[0]["o"]
    grads = {
        "x": [{"y": y, "w": w, "o": o}],
        "y": [{"x": x, "w": w, "o": o}],
        "w": [{"x": x, "y": y, "o": o}],
    }
    return {
        "triton_tp_conv_o.py.txt": _codegen.kernel_source(
            desc, "o", forward, tuple(_tuning.path_chunks(desc, "o")), True, False
        ),
        "triton_tp_conv_xyw.py.txt": _codegen.fused_grad_source(
            desc, _launch.number_operands(grads)[0], _tuning.fused_chunks(desc), False
        ),
    }


@pytest.mark.parametrize("name", sorted(sources()))
def test_generated_source_snapshot(name: str) -> None:
    source = sources()[name]
    if os.environ.get("MLIP_UPDATE_SNAPSHOTS") == "1":
        (SNAPSHOTS / name).write_text(source)
    assert source == (SNAPSHOTS / name).read_text(), f"generated source differs from {SNAPSHOTS / name}"


def test_kernel_dir_env(tmp_path: Path, monkeypatch) -> None:
    """Generated kernels are written to ``$MLIP_TRITON_KERNEL_DIR``, one file per source text."""
    pytest.importorskip("triton")
    monkeypatch.setenv(_cache.KERNEL_DIR_ENV, str(tmp_path))
    source = sources()["triton_tp_conv_o.py.txt"]
    kernel = _cache._load_kernel(source, "o")
    files = list(tmp_path.iterdir())
    assert [f.read_text() for f in files] == [source] and files[0].name.startswith("tp_o_")
    assert kernel.fn.__name__ == "kernel"
