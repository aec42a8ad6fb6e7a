import math

import pytest
import torch

from mlip.o3 import (
    SphericalGrid,
    fourier_to_sh,
    from_grid,
    gaunt_packed,
    grid_for,
    sh_to_fourier,
    spherical_harmonics,
    to_grid,
)
from mlip.testing import irreps_matrix, random_rotation


def _sh_irreps(lmax: int) -> str:
    return "+".join(f"{l}{'eo'[l % 2]}" for l in range(lmax + 1))


@pytest.mark.parametrize("degree", [0, 1, 2, 5, 8, 17])
def test_grid_for_is_smallest_exact_grid(degree):
    grid = grid_for(degree)
    assert grid.degree == degree
    w = grid.weights(torch.float64)
    assert abs(float(w.sum()) - 4 * math.pi) < 1e-13
    torch.testing.assert_close(
        grid.points(torch.float64).norm(dim=-1), torch.ones(grid.size, dtype=torch.float64)
    )
    # every product Y_a Y_b with deg a + deg b <= degree integrates to δ_ab
    L = degree // 2
    Y = spherical_harmonics(L, grid.points(torch.float64), normalization="integral")
    torch.testing.assert_close(
        Y.T @ (w[:, None] * Y), torch.eye((L + 1) ** 2, dtype=torch.float64), atol=1e-13, rtol=0
    )
    if degree >= 1:  # one node fewer in θ or φ is not exact for some polynomial of this degree
        smaller_theta = SphericalGrid(grid.n_theta - 1, grid.n_phi) if grid.n_theta > 1 else None
        smaller_phi = SphericalGrid(grid.n_theta, grid.n_phi - 1)
        for small in (smaller_theta, smaller_phi):
            if small is not None:
                assert small.degree < degree


def test_round_trip_exact_for_band_limited_input():
    g = torch.Generator().manual_seed(0)
    for lmax in (0, 1, 3, 6):
        x = torch.randn(4, (lmax + 1) ** 2, 5, generator=g, dtype=torch.float64)
        grid = grid_for(2 * lmax)
        f = to_grid(x, lmax, grid)
        assert f.shape == (4, grid.size, 5)
        torch.testing.assert_close(from_grid(f, lmax, grid), x, atol=1e-13, rtol=0)
    # grid values are the function values
    x = torch.randn(2, 16, 3, generator=g, dtype=torch.float64)
    grid = grid_for(6)
    Y = spherical_harmonics(3, grid.points(torch.float64), normalization="integral")
    torch.testing.assert_close(to_grid(x, 3, grid), torch.einsum("gk,bkc->bgc", Y, x), atol=1e-13, rtol=0)


def test_grid_product_projection_equals_gaunt_and_is_equivariant():
    g = torch.Generator().manual_seed(1)
    L1, L2, Lout = 2, 3, 4
    x = torch.randn(3, (L1 + 1) ** 2, 2, generator=g, dtype=torch.float64)
    y = torch.randn(3, (L2 + 1) ** 2, 2, generator=g, dtype=torch.float64)
    grid = grid_for(L1 + L2 + Lout)

    def product(a, b):
        return from_grid(to_grid(a, L1, grid) * to_grid(b, L2, grid), Lout, grid)

    expected = torch.einsum("bic,bjc,ijk->bkc", x, y, gaunt_packed(L1, L2, Lout, dtype=torch.float64))
    torch.testing.assert_close(product(x, y), expected, atol=1e-13, rtol=0)
    R = random_rotation(g)
    D1, D2, D3 = (irreps_matrix(_sh_irreps(l), R) for l in (L1, L2, Lout))
    rotated = product(torch.einsum("ij,bjc->bic", D1, x), torch.einsum("ij,bjc->bic", D2, y))
    torch.testing.assert_close(rotated, torch.einsum("ij,bjc->bic", D3, expected), atol=1e-12, rtol=0)


def test_to_grid_validates_shapes_and_keeps_dtype():
    grid = grid_for(4)
    with pytest.raises(ValueError, match="shape"):
        to_grid(torch.zeros(2, 8, 1), 2, grid)
    with pytest.raises(ValueError, match="shape"):
        from_grid(torch.zeros(2, grid.size + 1, 1), 2, grid)
    assert to_grid(torch.zeros(0, 9, 3), 2, grid).shape == (0, grid.size, 3)
    assert from_grid(torch.zeros(1, grid.size, 2, dtype=torch.float32), 2, grid).dtype == torch.float32
    with pytest.raises(ValueError):
        grid_for(-1)


def test_sh_to_fourier_reproduces_harmonics_on_the_torus():
    L = 4
    g = torch.Generator().manual_seed(2)
    theta, phi = torch.rand(2, 64, generator=g, dtype=torch.float64) * 2 * math.pi
    points = torch.stack([theta.sin() * phi.sin(), theta.cos(), theta.sin() * phi.cos()], -1)
    Y = spherical_harmonics(L, points, normalize=False, normalization="integral")
    u = torch.arange(-L, L + 1, dtype=torch.float64)
    phases = torch.exp(1j * (u[None, :, None] * theta[:, None, None] + u[None, None, :] * phi[:, None, None]))
    c = sh_to_fourier(L)
    torch.testing.assert_close(torch.einsum("kuv,puv->pk", c, phases).real, Y, atol=1e-13, rtol=0)
    # only v = ±m occurs
    for l in range(L + 1):
        for m in range(-l, l + 1):
            v_used = (c[l * l + l + m].abs().sum(0) > 1e-12).nonzero().flatten() - L
            assert set(v_used.tolist()) <= {m, -m}


def test_fourier_to_sh_projects_products_exactly():
    L1, L2, Lout = 2, 3, 5
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, (L1 + 1) ** 2, generator=g, dtype=torch.float64)
    y = torch.randn(2, (L2 + 1) ** 2, generator=g, dtype=torch.float64)
    X = x.to(torch.complex128) @ sh_to_fourier(L1).flatten(1)
    Y = y.to(torch.complex128) @ sh_to_fourier(L2).flatten(1)
    X, Y = X.reshape(2, 2 * L1 + 1, -1), Y.reshape(2, 2 * L2 + 1, -1)
    n = L1 + L2
    H = torch.zeros(2, 2 * n + 1, 2 * n + 1, dtype=torch.complex128)  # 2D convolution, written out
    for a in range(2 * L1 + 1):
        for b in range(2 * L1 + 1):
            H[:, a : a + 2 * L2 + 1, b : b + 2 * L2 + 1] += X[:, a : a + 1, b : b + 1] * Y
    z = torch.einsum("puv,uvk->pk", H, fourier_to_sh(n, Lout)).real
    expected = torch.einsum("pi,pj,ijk->pk", x, y, gaunt_packed(L1, L2, Lout, dtype=torch.float64))
    torch.testing.assert_close(z, expected, atol=1e-13, rtol=0)
