"""Building blocks against e3nn (values and parameter counts) and their own invariants."""

from __future__ import annotations

import pytest
import torch

from mlip.data.atomic_data import DataError
from mlip.layers import (
    BesselEnvelope,
    CubicBSplineBasis,
    Gate,
    Linear,
    PolynomialEnvelope,
    SpeciesIndex,
    SymmetricContraction,
    normalized_activation,
    symmetric_basis,
)
from mlip.testing import assert_equivariant

e3nn_o3 = pytest.importorskip("e3nn.o3")


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def test_linear_equals_e3nn():
    ours = Linear("8x0e+4x1o+2x1o+3x2e", "5x0e+6x1o+2x3o")
    ref = e3nn_o3.Linear("8x0e+4x1o+2x1o+3x2e", "5x0e+6x1o+2x3o", biases=False)
    assert sum(p.numel() for p in ours.parameters()) == ref.weight.numel()
    with torch.no_grad():
        ref.weight.copy_(torch.cat([w.reshape(-1) for w in ours.weights]))
    x = torch.randn(7, ours.irreps_in.dim)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-12, rtol=0)
    assert ours(x)[:, -2 * 7 :].abs().max() == 0  # 3o has no input: zero


def test_species_linear_equals_e3nn_fully_connected_tp_with_one_hot():
    ours = Linear("8x0e+4x1o", "5x0e+3x1o", num_species=3)
    ref = e3nn_o3.FullyConnectedTensorProduct("8x0e+4x1o", "3x0e", "5x0e+3x1o")
    with torch.no_grad():
        ref.weight.copy_(torch.cat([w.reshape(-1) for w in ours.weights]))
    species = torch.tensor([0, 2, 1, 1, 0, 2, 2])
    x = torch.randn(7, ours.irreps_in.dim)
    one_hot = torch.nn.functional.one_hot(species, 3).double()
    torch.testing.assert_close(ours(x, species), ref(x, one_hot), atol=1e-12, rtol=0)


def test_gate_equivariant():
    gate = Gate("4x0e+2x0o", "3x1o+2x2e")
    assert_equivariant(gate, gate.irreps_in, gate.irreps_out)


def test_activation_normalized():
    z = torch.randn(400_000, generator=torch.Generator().manual_seed(0))
    for name in ("silu", "tanh"):
        assert abs(float(normalized_activation(name)(z).pow(2).mean()) - 1.0) < 0.01


@pytest.mark.parametrize(
    "basis", [PolynomialEnvelope(4.0), BesselEnvelope(4.0, 6), CubicBSplineBasis(4.0, 7)]
)
def test_radial_twice_differentiable_zero_at_cutoff(basis):
    r = torch.tensor([4.0 - 1e-7, 4.0, 4.5], requires_grad=True)
    y = basis(r).reshape(3, -1).sum(1)
    (d1,) = torch.autograd.grad(y.sum(), r, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), r)
    for values in (y, d1, d2):
        assert values.abs().max() < 1e-5
    inside = basis(torch.linspace(0.5, 3.5, 5))
    assert inside.abs().max() > 0.1


def test_spline_partition_of_unity_inside():
    basis = CubicBSplineBasis(5.0, 12)
    torch.testing.assert_close(basis(torch.linspace(0.0, 5.0 * 9 / 13, 20)).sum(1), torch.ones(20))


def test_species_index_unknown_element():
    index = SpeciesIndex([1, 8])
    assert index(torch.tensor([8, 1, 1])).tolist() == [1, 0, 0]
    with pytest.raises(DataError, match=r"element C \(Z=6\) not in the model's species \(H, O\)"):
        index(torch.tensor([1, 6]))


def test_symmetric_basis_sizes_match_mace():
    # mace-torch's U_matrix_real (path basis) sizes for 0e+1o+2e+3o; the reduced basis is the intrinsic one
    paths = {("0e", 2): 4, ("0e", 3): 23, ("1o", 2): 6, ("1o", 3): 51}
    reduced = {("0e", 2): 4, ("0e", 3): 8, ("1o", 2): 3, ("1o", 3): 12}
    for (ir, nu), k in paths.items():
        assert symmetric_basis("0e+1o+2e+3o", ir, nu, False).shape[-1] == k
        assert symmetric_basis("0e+1o+2e+3o", ir, nu, True).shape[-1] == reduced[ir, nu]


@pytest.mark.parametrize("basis", ["reduced", "paths"])
def test_symmetric_contraction_equals_explicit_contraction(basis):
    sc = SymmetricContraction("0e+1o+2e", "0e+1o", 3, num_channels=3, num_elements=2, basis=basis)
    x, species = torch.randn(4, 3, 9), torch.tensor([0, 1, 1, 0])
    expected = []
    for ir in ("0e", "1o"):
        total = 0
        for (nu, ir_out), w in zip(sc._terms, sc.weights, strict=True):
            if ir_out != ir:
                continue
            u = symmetric_basis("0e+1o+2e", ir, nu, basis == "reduced").reshape(-1, *[9] * nu, w.shape[1])
            operands = [x] * nu
            letters = "ijl"[:nu]
            spec = f"m{letters}k," + ",".join(f"nc{a}" for a in letters) + "->ncmk"
            total = total + torch.einsum("ncmk,nkc->ncm", torch.einsum(spec, u, *operands), w[species])
        expected.append(total)
    torch.testing.assert_close(sc(x, species), torch.cat(expected, -1), atol=1e-12, rtol=0)


def test_symmetric_contraction_traced_equals_eager():
    """Traced with a symbolic row count (the compiled step) the monomials are products of strided views of
    the input: same output and gradient as eagerly, float64, for contiguous and channels-last inputs, at
    other sizes than the traced example's."""
    from torch.fx.experimental.proxy_tensor import make_fx

    sc = SymmetricContraction("0e+1o+2e+3o", "0e+1o", 3, num_channels=3, num_elements=2).double()
    sc.requires_grad_(False)

    def value_and_grad(x, species):
        x = x.detach().requires_grad_(True)
        out = sc(x, species)
        return out, torch.autograd.grad((out * out).sum(), x)[0]

    def inputs(n, seed, channels_last):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 3, 16, generator=g, dtype=torch.float64)
        x = x.transpose(1, 2).contiguous().transpose(1, 2) if channels_last else x
        return x, torch.randint(0, 2, (n,), generator=g)

    for channels_last in (False, True):
        example = inputs(5, 0, channels_last)
        value_and_grad(*example)  # builds the constant tables outside the trace, as export_step does
        traced = make_fx(value_and_grad, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*example)
        for n in (7, 2):
            x, species = inputs(n, n, channels_last)
            for got, want in zip(traced(x, species), value_and_grad(x.contiguous(), species), strict=True):
                torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)


def test_symmetric_contraction_equivariant():
    sc = SymmetricContraction("0e+1o+2e", "0e+1o+2e", 3, num_channels=2, num_elements=1).requires_grad_(False)
    species = torch.zeros(3, dtype=torch.int64)

    def fn(z):
        return sc(z.reshape(3, 2, 9), species).reshape(3, -1)

    assert_equivariant(fn, "0e+1o+2e+0e+1o+2e", "0e+1o+2e+0e+1o+2e", batch=3)


def test_chunked_convolution_equals_plain_with_two_multiplicities(monkeypatch, chunked_conv_problem):
    """The memory-bounded inference convolution (channel layout per multiplicity group, edges in chunks)
    gives the plain autograd path's output and first derivatives for every input and MLP parameter."""
    from mlip.kernels import tp_conv
    from mlip.kernels.tp_conv import torch_fast as conv

    monkeypatch.setattr(conv, "EDGES_PER_CHUNK", 5)
    tp, mlp, x, sh, radial, src, dst, probe = chunked_conv_problem
    nodes = x.shape[0]
    assert len(conv.fast.plan(tp.descriptor)) == 2
    results = []
    for chunked in (False, True):
        out = tp_conv(x, sh, radial, src, dst, nodes, tp, weight_fn=mlp, chunked=chunked)
        grads = torch.autograd.grad((out * probe).sum(), [x, sh, radial, *mlp.parameters()])
        results.append((out, *grads))
    for plain, chunked in zip(*results, strict=True):
        torch.testing.assert_close(chunked, plain, atol=1e-12, rtol=0)
