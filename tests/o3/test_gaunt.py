import math

import pytest
import torch

from mlip.o3 import SphericalGrid, gaunt, gaunt_packed, grid_for, spherical_harmonics, wigner_3j
from mlip.o3.gaunt import _complex_from_real

sympy_wigner = pytest.importorskip("sympy.physics.wigner")

TRIPLES = [(0, 0, 0), (1, 1, 0), (1, 1, 2), (1, 2, 3), (2, 2, 2), (2, 3, 1), (3, 3, 4), (4, 2, 6), (3, 4, 5)]


def _quadrature(l1: int, l2: int, l3: int) -> torch.Tensor:
    grid = grid_for(l1 + l2 + l3)
    Y = spherical_harmonics(max(l1, l2, l3), grid.points(torch.float64), normalization="integral")
    blocks = [Y[:, l * l : (l + 1) ** 2] for l in (l1, l2, l3)]
    return torch.einsum("g,ga,gb,gc->abc", grid.weights(torch.float64), *blocks)


@pytest.mark.parametrize("l1,l2,l3", TRIPLES + [(1, 1, 1), (2, 1, 2), (1, 1, 3)])
def test_gaunt_matches_quadrature(l1, l2, l3):
    torch.testing.assert_close(
        gaunt(l1, l2, l3, dtype=torch.float64), _quadrature(l1, l2, l3), atol=1e-14, rtol=0
    )


@pytest.mark.parametrize("l1,l2,l3", TRIPLES)
def test_gaunt_matches_sympy_exact_complex_coefficients(l1, l2, l3):
    # complex harmonics (Condon-Shortley): Y^c = T^{-1} Y^real, so G^c = T^{-1} T^{-1} T^{-1} G^real
    real = gaunt(l1, l2, l3, dtype=torch.float64).to(torch.complex128)
    inv = [torch.linalg.inv(_complex_from_real(l)) for l in (l1, l2, l3)]
    ours = torch.einsum("ia,jb,kc,abc->ijk", *inv, real)
    expected = torch.zeros_like(ours)
    for m1 in range(-l1, l1 + 1):
        for m2 in range(-l2, l2 + 1):
            for m3 in range(-l3, l3 + 1):
                expected[l1 + m1, l2 + m2, l3 + m3] = float(sympy_wigner.gaunt(l1, l2, l3, m1, m2, m3))
    assert expected.abs().max() > 0.01
    torch.testing.assert_close(ours, expected, atol=1e-14, rtol=0)


def test_gaunt_is_proportional_to_wigner_3j_and_selection_rules():
    for l1, l2, l3 in TRIPLES:
        G, C = gaunt(l1, l2, l3, dtype=torch.float64), wigner_3j(l1, l2, l3, dtype=torch.float64)
        scale = (G * C).sum()
        torch.testing.assert_close(G, scale * C, atol=1e-14, rtol=0)
    assert gaunt(1, 1, 1, dtype=torch.float64).abs().max() == 0  # odd l1 + l2 + l3
    assert gaunt(1, 1, 3, dtype=torch.float64).abs().max() == 0  # triangle
    assert float(gaunt(0, 0, 0, dtype=torch.float64)) == pytest.approx(1 / math.sqrt(4 * math.pi), abs=1e-16)


def test_gaunt_packed_blocks_and_cache():
    P = gaunt_packed(2, 3, 4, dtype=torch.float64)
    assert P.shape == (9, 16, 25)
    torch.testing.assert_close(P[4:9, 9:16, 9:16], gaunt(2, 3, 3, dtype=torch.float64), atol=0, rtol=0)
    assert P[1:4, 1:4, 1:4].abs().max() == 0
    assert gaunt_packed(2, 3, 4, dtype=torch.float64) is P
    assert gaunt_packed(2, 3, 4, dtype=torch.float32).dtype == torch.float32
    with pytest.raises(ValueError):
        gaunt(-1, 0, 1)
    assert isinstance(grid_for(3), SphericalGrid)
