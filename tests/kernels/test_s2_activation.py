import pytest
import torch

from mlip.kernels import gaunt_tp, s2_activation, symmetric_product
from mlip.kernels.s2_activation import (
    default_activation_grid,
    s2_activation_reference,
    symmetric_product_reference,
)
from mlip.o3 import grid_for
from mlip.testing import irreps_matrix, random_rotation

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
BACKENDS = ["torch", "triton"]
BATCH, CHANNELS = (256, 64) if CUDA else (2, 4)


def _sh_irreps(lmax: int) -> str:
    return "+".join(f"{l}{'eo'[l % 2]}" for l in range(lmax + 1))


def _features(L, channels, seed, dtype=torch.float64, batch=BATCH):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, (L + 1) ** 2, channels, generator=g, dtype=dtype).to(DEVICE)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", ["silu", "swiglu"])
@pytest.mark.parametrize("L,lmax_out", [(1, 1), (2, 3), (2, 0)])
def test_activation_matches_reference(backend, fn, L, lmax_out):
    x = _features(L, CHANNELS, 0)
    out = s2_activation(x, fn, lmax_out, backend=backend)
    assert out.shape == (BATCH, (lmax_out + 1) ** 2, CHANNELS // (2 if fn == "swiglu" else 1))
    expected = s2_activation_reference(x, fn, L, lmax_out, default_activation_grid(L, lmax_out))
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-12)


def test_activation_of_a_constant_function_is_exact():
    x = torch.zeros(1, 9, 2, dtype=torch.float64, device=DEVICE)
    f = torch.tensor([0.7, -1.3], dtype=torch.float64, device=DEVICE)
    x[:, 0] = f * (4 * torch.pi) ** 0.5  # Y_00 = 1 / sqrt(4π)
    out = s2_activation(x, "silu", 2)
    expected = torch.nn.functional.silu(f) * (4 * torch.pi) ** 0.5
    torch.testing.assert_close(out[0, 0], expected, atol=1e-13, rtol=0)
    assert out[:, 1:].abs().max() < 1e-13


@pytest.mark.parametrize("backend", BACKENDS)
def test_symmetric_product_matches_reference_and_gaunt(backend):
    L = 2
    x = _features(L, CHANNELS, 1)
    out = symmetric_product(x, 3, 3, backend=backend)
    assert out.shape == (BATCH, 3, 16, CHANNELS)
    torch.testing.assert_close(out, symmetric_product_reference(x, 3, L, 3), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(out[:, 0, :9], x, atol=1e-12, rtol=0)  # ν = 1: the function itself
    torch.testing.assert_close(out[:, 1], gaunt_tp(x, x, 3, backend="torch"), atol=1e-12, rtol=0)
    f_squared = gaunt_tp(x, x, 4, backend="torch")
    torch.testing.assert_close(out[:, 2], gaunt_tp(f_squared, x, 3, backend="torch"), atol=1e-12, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_symmetric_product_exactly_equivariant_activation_approximately(backend):
    L = 2
    x = _features(L, 2, 2, batch=2)
    R = random_rotation(torch.Generator().manual_seed(3))
    for Q in (R, -R):
        D = irreps_matrix(_sh_irreps(L), Q).to(DEVICE)
        rotated = symmetric_product(D @ x, 3, backend=backend)
        torch.testing.assert_close(rotated, D @ symmetric_product(x, 3, backend=backend), atol=1e-12, rtol=0)
        # SiLU is not band-limited: equivariant up to the quadrature error, which a finer grid shrinks
        errors = []
        for grid in (grid_for(6), grid_for(24)):
            rotated = s2_activation(D @ x, grid=grid, backend=backend)
            errors.append(float((rotated - D @ s2_activation(x, grid=grid, backend=backend)).abs().max()))
        assert errors[1] < 1e-3 and errors[1] < errors[0] / 10, errors


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ["silu", "swiglu", "power3"])
def test_gradients_and_second_derivatives(backend, op):
    channels = 2 if op == "swiglu" else 1
    x = _features(1, channels, 4, batch=1).requires_grad_()

    def fn(a):
        if op == "power3":
            return symmetric_product(a, 3, 1, backend=backend)[:, 2]
        return s2_activation(a, op, 1, backend=backend)

    def ref(a):
        if op == "power3":
            return symmetric_product_reference(a, 3, 1, 1)[:, 2]
        return s2_activation_reference(a, op, 1, 1, default_activation_grid(1, 1))

    assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)
    v = torch.randn_like(fn(x))
    (grad,) = torch.autograd.grad((fn(x) * v).sum(), x, create_graph=True)
    (ref_grad,) = torch.autograd.grad((ref(x) * v).sum(), x, create_graph=True)
    torch.testing.assert_close(grad, ref_grad, atol=1e-12, rtol=0)
    (second,) = torch.autograd.grad((grad**2).sum(), x)
    (ref_second,) = torch.autograd.grad((ref_grad**2).sum(), x)
    torch.testing.assert_close(second, ref_second, atol=1e-12, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_edge_cases(backend):
    assert s2_activation(_features(1, 2, 0, batch=0), backend=backend).shape == (0, 4, 2)
    assert symmetric_product(_features(1, 2, 0, batch=0), 2, backend=backend).shape == (0, 2, 4, 2)
    x = _features(2, 6, 5)[:, :, 1::2]
    assert not x.is_contiguous()
    torch.testing.assert_close(
        s2_activation(x, backend=backend), s2_activation(x.contiguous(), backend=backend), atol=1e-13, rtol=0
    )
    out = s2_activation(x.to(torch.bfloat16), backend=backend)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(
        out.double(), s2_activation(x.to(torch.bfloat16).double()), atol=0.05, rtol=0.02
    )
    out32 = symmetric_product(x.float(), 2, backend=backend)
    torch.testing.assert_close(out32.double(), symmetric_product(x, 2), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="fn"):
        s2_activation(x, "relu")
    with pytest.raises(ValueError, match="even"):
        s2_activation(x, "swiglu")
    with pytest.raises(ValueError, match="correlation"):
        symmetric_product(x, 0)


@pytest.mark.skipif(not CUDA, reason="full-size check needs a GPU")
def test_full_size_on_gpu():
    x = _features(3, 128, 6, torch.float32, 4096)
    for out, expected in (
        (s2_activation(x, backend="triton"), s2_activation(x.double(), backend="torch")),
        (symmetric_product(x, 3, backend="triton"), symmetric_product(x.double(), 3, backend="torch")),
    ):
        scale = expected.abs().max()
        torch.testing.assert_close(out.double() / scale, expected / scale, atol=2e-5, rtol=0)
