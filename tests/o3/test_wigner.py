import pytest
import torch

from mlip.o3 import (
    D_from_matrix,
    angles_to_matrix,
    matrix_to_angles,
    spherical_harmonics,
    wigner_3j,
    wigner_D,
)
from mlip.testing import random_rotation

e3nn_o3 = pytest.importorskip("e3nn.o3")


def test_wigner_3j_equals_e3nn_in_value_and_sign():
    for l1 in range(5):
        for l2 in range(5):
            for l3 in range(abs(l1 - l2), l1 + l2 + 1):
                ours = wigner_3j(l1, l2, l3, dtype=torch.float64)
                theirs = e3nn_o3.wigner_3j(l1, l2, l3, dtype=torch.float64)
                torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


def test_wigner_3j_is_invariant_and_unit_norm():
    g = torch.Generator().manual_seed(3)
    R = random_rotation(g)
    for l1, l2, l3 in [(1, 1, 2), (2, 3, 4), (3, 3, 0), (2, 2, 3)]:
        C = wigner_3j(l1, l2, l3, dtype=torch.float64)
        D1, D2, D3 = (D_from_matrix(l, R) for l in (l1, l2, l3))
        rotated = torch.einsum("ijk,ia,jb,kc->abc", C, D1, D2, D3)
        torch.testing.assert_close(rotated, C, atol=1e-12, rtol=0)
        assert abs(float(C.norm()) - 1) < 1e-12


def test_wigner_3j_rejects_triangle_violation():
    with pytest.raises(ValueError, match="triangle"):
        wigner_3j(1, 1, 3)


def test_wigner_3j_cached_per_dtype():
    a = wigner_3j(2, 2, 2, dtype=torch.float32)
    b = wigner_3j(2, 2, 2, dtype=torch.float32)
    assert a is b and a.dtype == torch.float32


def test_harmonics_rotate_with_D_for_rotations_and_reflections():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(10, 3, dtype=torch.float64, generator=g)
    R = random_rotation(g)
    for Q in (R, -R):
        for l in range(9):
            Y = spherical_harmonics(l, x)[:, l * l :]
            Y_rotated = spherical_harmonics(l, x @ Q.T)[:, l * l :]
            torch.testing.assert_close(Y_rotated, Y @ D_from_matrix(l, Q).T, atol=1e-11, rtol=0)


def test_wigner_D_matches_e3nn_and_is_a_representation():
    g = torch.Generator().manual_seed(5)
    a, b, c = torch.rand(3, generator=g, dtype=torch.float64) * 6
    a2, b2, c2 = torch.rand(3, generator=g, dtype=torch.float64) * 6
    for l in range(5):
        D = wigner_D(l, a, b, c)
        # e3nn builds its generators in float32, hence the tolerance
        torch.testing.assert_close(D, e3nn_o3.wigner_D(l, a, b, c).to(D.dtype), atol=1e-5, rtol=0)
        R1, R2 = angles_to_matrix(a, b, c), angles_to_matrix(a2, b2, c2)
        product = D_from_matrix(l, R1) @ D_from_matrix(l, R2)
        torch.testing.assert_close(D_from_matrix(l, R1 @ R2), product, atol=1e-11, rtol=0)
        torch.testing.assert_close(D @ D.T, torch.eye(2 * l + 1, dtype=D.dtype), atol=1e-12, rtol=0)


def test_angles_round_trip():
    g = torch.Generator().manual_seed(6)
    R = torch.stack([random_rotation(g) for _ in range(20)])
    torch.testing.assert_close(angles_to_matrix(*matrix_to_angles(R)), R, atol=1e-12, rtol=0)
    torch.testing.assert_close(
        angles_to_matrix(*matrix_to_angles(R[0])),
        e3nn_o3.angles_to_matrix(*e3nn_o3.matrix_to_angles(R[0])),
        atol=1e-12,
        rtol=0,
    )
