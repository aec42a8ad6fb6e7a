import pytest
import torch

from mlip.kernels import gaunt_tp
from mlip.kernels.gaunt import gaunt_tp_reference
from mlip.testing import irreps_matrix, random_rotation

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
# (method, backend); the Triton path runs under the interpreter on the CPU (tiny shapes)
PATHS = [("grid", "torch"), ("grid", "triton"), ("fourier", "torch")]
BATCH, CHANNELS = (256, 64) if CUDA else (2, 3)


def _sh_irreps(lmax: int) -> str:
    return "+".join(f"{l}{'eo'[l % 2]}" for l in range(lmax + 1))


def _features(L: int, channels: int, seed: int, dtype=torch.float64, batch: int = BATCH) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, (L + 1) ** 2, channels, generator=g, dtype=dtype).to(DEVICE)


@pytest.mark.parametrize("method,backend", PATHS)
@pytest.mark.parametrize("L1,L2,lmax_out", [(1, 1, 2), (2, 1, 3), (2, 2, 1), (0, 2, 2)])
def test_matches_gaunt_coefficients(method, backend, L1, L2, lmax_out):
    x = _features(L1, CHANNELS, 0)
    for y in (_features(L2, CHANNELS, 1), _features(L2, 1, 2)):  # per-channel and shared y
        out = gaunt_tp(x, y, lmax_out, method=method, backend=backend)
        assert out.shape == (BATCH, (lmax_out + 1) ** 2, CHANNELS)
        torch.testing.assert_close(out, gaunt_tp_reference(x, y, lmax_out), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("method,backend", PATHS)
def test_float32_and_degrees_above_the_sum(method, backend):
    x, y = _features(2, CHANNELS, 3, torch.float32), _features(1, CHANNELS, 4, torch.float32)
    out = gaunt_tp(x, y, 5, method=method, backend=backend)
    assert out.dtype == torch.float32 and out.shape[1] == 36
    assert out[:, 16:].abs().max() == 0  # degrees above L1 + L2 = 3 vanish
    expected = gaunt_tp_reference(x.double(), y.double(), 5).float()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("method,backend", PATHS)
def test_equivariant_under_rotations_and_reflections(method, backend):
    L1, L2, lmax_out = 2, 2, 3
    x, y = _features(L1, 2, 5, batch=2), _features(L2, 2, 6, batch=2)
    g = torch.Generator().manual_seed(7)
    R = random_rotation(g)
    for Q in (R, -R):
        D1, D2, D3 = (irreps_matrix(_sh_irreps(l), Q).to(DEVICE) for l in (L1, L2, lmax_out))
        rotated = gaunt_tp(D1 @ x, D2 @ y, lmax_out, method=method, backend=backend)
        expected = D3 @ gaunt_tp(x, y, lmax_out, method=method, backend=backend)
        torch.testing.assert_close(rotated, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("method,backend", PATHS)
@pytest.mark.parametrize("shared_y", [False, True])
def test_gradients_and_second_derivatives(method, backend, shared_y):
    x = _features(1, 2, 8, batch=1).requires_grad_()
    y = _features(1, 1 if shared_y else 2, 9, batch=1).requires_grad_()

    def op(a, b):
        return gaunt_tp(a, b, 2, method=method, backend=backend)

    assert torch.autograd.gradcheck(op, (x, y), fast_mode=True)
    assert torch.autograd.gradgradcheck(op, (x, y), fast_mode=True)
    # analytic first and second derivatives equal the reference's
    v = _features(2, 2, 10, batch=1)
    grads = torch.autograd.grad((op(x, y) * v).sum(), (x, y), create_graph=True)
    ref_grads = torch.autograd.grad((gaunt_tp_reference(x, y, 2) * v).sum(), (x, y), create_graph=True)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    second = torch.autograd.grad((grads[0] ** 2).sum() + (grads[1] * y).sum(), (x, y))
    ref_second = torch.autograd.grad((ref_grads[0] ** 2).sum() + (ref_grads[1] * y).sum(), (x, y))
    for a, b in zip(second, ref_second, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("method,backend", PATHS)
def test_edge_cases_batch_zero_non_contiguous_half(method, backend):
    empty = gaunt_tp(
        _features(1, 3, 0, batch=0), _features(1, 3, 1, batch=0), 2, method=method, backend=backend
    )
    assert empty.shape == (0, 9, 3)
    # non-contiguous: channels not last in memory, and a strided slice
    x = _features(2, 6, 11).transpose(1, 2).contiguous().transpose(1, 2)[:, :, ::2]
    y = _features(1, 3, 12)[:, :, :]
    assert not x.is_contiguous()
    out = gaunt_tp(x, y, 3, method=method, backend=backend)
    torch.testing.assert_close(out, gaunt_tp_reference(x, y, 3), atol=1e-12, rtol=0)
    # bfloat16 is computed in float32 and returned in bfloat16
    xb, yb = x.to(torch.bfloat16), y.to(torch.bfloat16)
    out_bf16 = gaunt_tp(xb, yb, 3, method=method, backend=backend)
    assert out_bf16.dtype == torch.bfloat16
    expected = gaunt_tp_reference(xb.double(), yb.double(), 3)
    torch.testing.assert_close(out_bf16.double(), expected, atol=0.05, rtol=0.02)


def test_invalid_arguments():
    x = _features(1, 2, 0)
    with pytest.raises(ValueError, match="coefficients"):
        gaunt_tp(x[:, :3], x, 2)
    with pytest.raises(ValueError, match="channels"):
        gaunt_tp(x, _features(1, 3, 1), 2)
    with pytest.raises(ValueError, match="method"):
        gaunt_tp(x, x, 2, method="cg")
    with pytest.raises(ValueError, match="backend"):
        gaunt_tp(x, x, 2, backend="cuda")
    with pytest.raises(ValueError, match="torch implementation"):
        gaunt_tp(x, x, 2, method="fourier", backend="triton")


def test_auto_backend_takes_the_measured_faster_torch_path(monkeypatch):
    import mlip.kernels.grid_contract.triton as fused

    calls = []
    monkeypatch.setattr(fused, "launch", lambda *args: calls.append(1) or fused.contract(*args))
    x = _features(1, 2, 0)
    gaunt_tp(x, x, 2)
    assert not calls
    gaunt_tp(x, x, 2, backend="triton")
    assert calls


@pytest.mark.skipif(not CUDA, reason="full-size check needs a GPU")
def test_full_size_on_gpu():
    for L in (2, 4, 8):
        x, y = _features(L, 128, 20, torch.float32, 2048), _features(L, 128, 21, torch.float32, 2048)
        out = gaunt_tp(x, y, 2 * L, backend="triton")
        expected = gaunt_tp(x.double(), y.double(), 2 * L, backend="torch").float()
        scale = expected.abs().max()
        torch.testing.assert_close(out / scale, expected / scale, atol=2e-5, rtol=0)
