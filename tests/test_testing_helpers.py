import pytest
import torch

from mlip.o3 import Irreps, spherical_harmonics
from mlip.testing import assert_equivariant, irreps_matrix, random_rotation


def test_random_rotation_is_proper_orthogonal():
    R = random_rotation(torch.Generator().manual_seed(0))
    torch.testing.assert_close(R @ R.T, torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)
    assert abs(float(torch.linalg.det(R)) - 1) < 1e-12


def test_assert_equivariant_accepts_an_equivariant_map_and_rejects_a_broken_one():
    irreps_sh = Irreps.spherical_harmonics(3)
    assert assert_equivariant(lambda x: spherical_harmonics(3, x), "1o", irreps_sh) < 1e-10
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(
            lambda x: spherical_harmonics(3, x + torch.tensor([0.1, 0.0, 0.0])), "1o", irreps_sh
        )
    # parity matters: a vector is 1o, not 1e
    with pytest.raises(AssertionError):
        assert_equivariant(lambda x: x, "1o", "1e")


def test_irreps_matrix_shape():
    R = random_rotation(torch.Generator().manual_seed(1))
    assert irreps_matrix("2x0e+1o+2e", R).shape == (10, 10)
