import math

import numpy as np
import pytest
import torch

from mlip.o3 import spherical_harmonics

e3nn_o3 = pytest.importorskip("e3nn.o3")


@pytest.mark.parametrize("normalization", ["component", "integral", "norm"])
@pytest.mark.parametrize("normalize", [True, False])
def test_values_equal_e3nn_up_to_lmax_10(normalization, normalize):
    x = torch.randn(200, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours = spherical_harmonics(10, x, normalize, normalization)
    theirs = e3nn_o3.spherical_harmonics(list(range(11)), x, normalize, normalization=normalization)
    assert ours.shape == (200, 121)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_first_and_second_derivatives_equal_e3nn():
    x = torch.randn(
        20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True
    )
    weights = torch.randn(64, dtype=torch.float64)

    def grads(fn):
        y = (fn(x) * weights).sum()
        (g,) = torch.autograd.grad(y, x, create_graph=True)
        (gg,) = torch.autograd.grad(g.pow(2).sum(), x)
        return g, gg

    g1, gg1 = grads(lambda v: spherical_harmonics(7, v))
    g2, gg2 = grads(lambda v: e3nn_o3.spherical_harmonics(list(range(8)), v, True, normalization="component"))
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gg1, gg2, rtol=1e-9, atol=1e-9)


def test_gradcheck_and_gradgradcheck():
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: spherical_harmonics(4, v), (x,))
    assert torch.autograd.gradgradcheck(lambda v: spherical_harmonics(4, v), (x,))


def test_poles_and_zero_vector_are_finite():
    v = torch.tensor(
        [[0.0, 1.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 0.0], [1e-30, 0.0, 0.0]], dtype=torch.float64
    )
    v.requires_grad_(True)
    y = spherical_harmonics(6, v)
    assert torch.isfinite(y).all()
    # zero vector: only Y_0 survives, with its component-normalised value 1
    assert abs(float(y[2, 0].detach()) - 1.0) < 1e-15 and (y[2, 1:] == 0).all()
    (g,) = torch.autograd.grad(y.sum(), v)
    assert torch.isfinite(g).all()


def test_orthonormal_on_the_sphere_by_quadrature():
    # Gauss-Legendre in cos(theta) x uniform phi integrates products up to degree 2*lmax exactly
    lmax = 5
    cos_t, w_t = np.polynomial.legendre.leggauss(lmax + 1)
    phi = torch.arange(2 * lmax + 2, dtype=torch.float64) * (2 * math.pi / (2 * lmax + 2))
    cos_t, w_t = torch.from_numpy(cos_t), torch.from_numpy(w_t)
    sin_t = (1 - cos_t**2).sqrt()
    # polar axis along y
    pts = torch.stack(
        [
            sin_t[:, None] * phi.sin()[None],
            cos_t[:, None].expand(-1, len(phi)),
            sin_t[:, None] * phi.cos()[None],
        ],
        dim=-1,
    ).reshape(-1, 3)
    w = (w_t[:, None] * (2 * math.pi / len(phi))).expand(-1, len(phi)).reshape(-1)
    Y = spherical_harmonics(lmax, pts, normalization="integral")
    gram = Y.T @ (w[:, None] * Y)
    torch.testing.assert_close(gram, torch.eye((lmax + 1) ** 2, dtype=torch.float64), atol=1e-12, rtol=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="normalization"):
        spherical_harmonics(2, torch.zeros(3), normalization="unit")
    with pytest.raises(ValueError, match=r"\[..., 3\]"):
        spherical_harmonics(2, torch.zeros(4))


def test_few_ops_per_evaluation_and_gradient():
    """Each ATen op is a kernel launch on a GPU: harmonics and their gradient (the force path of every
    model) stay a handful of ops (52 at lmax 3; a recurrence on tensors took about 230)."""
    from mlip.benchmarking import count_aten_ops

    v = torch.randn(10, 3, requires_grad=True)
    weights = torch.randn(16)
    spherical_harmonics(3, v)  # tables built and cached
    assert count_aten_ops(lambda: spherical_harmonics(3, v)) <= 15
    assert count_aten_ops(lambda: torch.autograd.grad((spherical_harmonics(3, v) * weights).sum(), v)) <= 60
