import pytest

from mlip.o3 import Irrep, Irreps


def test_parse_and_print_round_trip():
    irreps = Irreps("32x0e + 16x1o+2e + 0x3o")
    assert str(irreps) == "32x0e+16x1o+1x2e+0x3o"
    assert Irreps(str(irreps)) == irreps
    assert irreps.dim == 32 + 16 * 3 + 5
    assert irreps.num_irreps == 49
    assert irreps.lmax == 3
    assert Irrep.parse("3y") == Irrep(3, -1) and Irrep.parse("2y") == Irrep(2, 1)


def test_slices_cover_features_in_order():
    irreps = Irreps("2x0e+1x1o+3x2e")
    slices = irreps.slices()
    assert [(s.start, s.stop) for s in slices] == [(0, 2), (2, 5), (5, 20)]


def test_simplify_and_sort_match_e3nn():
    e3nn_o3 = pytest.importorskip("e3nn.o3")
    for spec in ["1o+2x0e+1o+0x2e+3x0e", "2e+1o+0e+0o+1e", "4x1o+2x0e+1x1o+1x0o"]:
        ours, theirs = Irreps(spec), e3nn_o3.Irreps(spec)
        assert str(ours.simplify()) == str(theirs.simplify())
        sorted_ours, p, inv = ours.sort()
        sorted_theirs = theirs.sort()
        assert str(sorted_ours) == str(sorted_theirs.irreps)
        assert p == tuple(sorted_theirs.p) and inv == tuple(sorted_theirs.inv)


def test_irrep_product_and_arithmetic():
    assert list(Irrep.parse("1o") * Irrep.parse("2e")) == [Irrep(1, -1), Irrep(2, -1), Irrep(3, -1)]
    assert Irreps("0e") + "1o" == Irreps("0e+1o")
    assert Irreps("1o") * 2 == Irreps("1o+1o")
    assert Irreps.spherical_harmonics(3) == Irreps("0e+1o+2e+3o")
    assert "1o" in Irreps("0e+1o") and "1e" not in Irreps("0e+1o")
    assert Irreps("3x0e+1o+2x0e").count("0e") == 5


@pytest.mark.parametrize("bad", ["3x", "1q", "x1o", "1o++2e", "-1x0e"])
def test_bad_strings_raise(bad):
    with pytest.raises(ValueError):
        Irreps(bad)
