"""The kernel backend is chosen after construction: ``mlip.kernels.set_backend`` reaches every
kernel-using module (tensor products and the spherical-grid layers), and is not saved with the model."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from mlip.kernels import TensorProduct, set_backend
from mlip.layers.grid_product import GridProductBasis
from mlip.layers.s2 import SphericalGLU
from mlip.models import load


def _backends(model: torch.nn.Module) -> dict[type, set[str]]:
    out: dict[type, set[str]] = {}
    for m in model.modules():
        if isinstance(m, (TensorProduct, SphericalGLU, GridProductBasis)):
            out.setdefault(type(m), set()).add(m.backend)
    return out


@pytest.mark.parametrize("name", ["mace-gaunt", "gridnet", "nequip"])
def test_set_backend_reaches_every_kernel_module(kit, name):
    model = kit.build(name)
    assert all(b == {"auto"} for b in _backends(model).values())
    expected = {"mace-gaunt": {TensorProduct, GridProductBasis}, "gridnet": {TensorProduct, SphericalGLU}}
    assert set(_backends(model)) == expected.get(name, {TensorProduct})
    data = kit.record(kit.ethanol())
    auto = model(data)
    assert set_backend(model, "torch") is model
    assert all(b == {"torch"} for b in _backends(model).values())
    torch.testing.assert_close(model(data)["forces"], auto["forces"], atol=0, rtol=0)  # CPU: same path


def test_set_backend_rejects_unknown_and_unsupported():
    tp = TensorProduct(
        "2x0e", "0e", "2x0e", [(0, 0, 0, "uvw", True)], shared_weights=True, internal_weights=True
    )
    with pytest.raises(ValueError, match="backend must be one of"):
        set_backend(tp, "cuda")
    with pytest.raises(ValueError, match="not channelwise"):
        set_backend(tp, "triton")
    assert tp.backend == "auto"


def test_backend_is_not_saved(kit, tmp_path):
    model = kit.build("nequip", backend="torch")
    model.save(tmp_path / "m.safetensors")
    with safe_open(str(tmp_path / "m.safetensors"), "pt") as f:
        config = json.loads(f.metadata()["config"])
    assert "backend" not in config
    assert {m.backend for m in load(tmp_path / "m.safetensors").modules() if hasattr(m, "backend")} == {
        "auto"
    }
