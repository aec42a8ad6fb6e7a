"""The Triton kernels as ``torch.library`` custom ops (``mlip::tp_forms``, ``mlip::grid_contract``):
``opcheck`` (schema, fake kernel, registered autograd, AOT dispatch with dynamic shapes), and tracing
with ``make_fx(tracing_mode="symbolic")`` that errors on data-dependent ops and with ``torch.export``
with dynamic atom and edge counts: one graph whose op nodes run at other sizes and equal the eager
reference in float64. On the CPU the kernels run in the Triton interpreter (kept tiny: it is slow)."""

from __future__ import annotations

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from mlip.kernels import ConvGraph, TensorProduct, set_backend, tp_conv, uvu_instructions
from mlip.kernels.grid_contract.reference import Pointwise, contract
from mlip.kernels.grid_contract.triton import grid_contract_op
from mlip.kernels.tensor_product.descriptor import descriptor_key
from mlip.kernels.tensor_product.triton import _autograd, _layout

pytest.importorskip("triton")


def tiny_tp(backend: str) -> TensorProduct:
    out, instructions = uvu_instructions("2x0e+2x1o", "0e+1o", "0e+1o")
    return TensorProduct("2x0e+2x1o", "0e+1o", out, instructions, backend=backend)


def conv_inputs(tp: TensorProduct, nodes: int, edges: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(nodes, tp.irreps_in1.dim, generator=gen, dtype=torch.float64)
    sh = torch.randn(edges, tp.irreps_in2.dim, generator=gen, dtype=torch.float64)
    w = torch.randn(edges, tp.weight_numel, generator=gen, dtype=torch.float64)
    src, dst = (torch.randint(0, nodes, (edges,), generator=gen) for _ in range(2))
    return x, sh, w, src, dst


def tp_forms_args(case: str) -> tuple:
    desc = tiny_tp("triton").descriptor
    nodes, edges = 3, 5
    x, sh, w, src, dst = conv_inputs(tiny_tp("triton"), nodes, edges)
    w = torch.randn(edges, _layout.weight_width(desc), dtype=torch.float64)
    o = torch.randn(nodes, desc.irreps_out.dim, dtype=torch.float64)
    operands = [t.requires_grad_() for t in (x, sh, w, o)]
    graph, key = ConvGraph(src, dst, nodes), descriptor_key(desc)
    if case == "plain":  # a batched tensor product: the identity graph, no CSR
        index = torch.arange(edges)
        y = torch.randn(edges, desc.irreps_in1.dim, dtype=torch.float64, requires_grad=True)
        return [y, operands[1], operands[2]], "o=w2,x0,y1", key, index, index, [], [], edges, edges, False
    if case == "forward":
        spec, dst_order, src_order = "o=w2,x0,y1", list(graph.csr("dst")), []
    else:  # the fused x/y/w gradient kernel of a convolution's backward
        spec, dst_order, src_order = "x=o3,w2,y1;y=o3,w2,x0;w=o3,x0,y1", [], list(graph.csr("src"))
    return operands, spec, key, src, dst, dst_order, src_order, nodes, nodes, True


@pytest.mark.parametrize("case", ["forward", "fused-gradients", "plain"])
def test_opcheck_tp_forms(case: str) -> None:
    torch.library.opcheck(_autograd.tp_forms, tp_forms_args(case))


@pytest.mark.parametrize("pointwise", [Pointwise("power", 2, 0.5), Pointwise("silu", 0, 1.0)])
def test_opcheck_grid_contract(pointwise: Pointwise) -> None:
    gen = torch.Generator().manual_seed(1)
    a0, a1 = (torch.randn(k, 6, generator=gen, dtype=torch.float64) for k in (4, 3))
    from_grid = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    x0 = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    x1 = torch.randn(2, 3, 1, generator=gen, dtype=torch.float64, requires_grad=True)
    args = ([x0, x1], [a0, a1], from_grid, pointwise.kind, pointwise.order, pointwise.scale)
    torch.library.opcheck(grid_contract_op, args)
    expected = contract([x0, x1], [a0, a1], from_grid, pointwise)
    torch.testing.assert_close(grid_contract_op(*args), expected, rtol=1e-12, atol=1e-12)


def conv_and_gradients(tp: TensorProduct):
    """Energy-like scalar of a convolution and its gradients (graph kept: a force-training step)."""

    def step(x, sh, w, src, dst):  # noqa: ANN001, ANN202
        graph = ConvGraph(src, dst, x.shape[0])
        out = tp_conv(x, sh, w, src, dst, x.shape[0], tp, graph=graph)
        energy = (out * out.sin()).sum()
        gx, gsh = torch.autograd.grad(energy, (x, sh), create_graph=True)
        return energy, gx, gsh, (gx * gx).sum() + (gsh * gsh).sum()

    return step


def test_tp_conv_traces_without_data_dependent_ops() -> None:
    """Forward, backward and double backward trace symbolically as ``mlip::tp_forms`` nodes (no host
    sync: the CSR orders are argsort + searchsorted); the traced graph runs at other sizes."""
    tp, reference = tiny_tp("triton"), conv_and_gradients(tiny_tp("reference"))
    x, sh, w, src, dst = conv_inputs(tp, 5, 11)  # sizes unlike any feature width (no duck sizing)
    traced = make_fx(
        conv_and_gradients(tp),
        tracing_mode="symbolic",
        _allow_non_fake_inputs=True,
        _error_on_data_dependent_ops=True,
    )(x.requires_grad_(), sh.requires_grad_(), w, src, dst)
    ops = [n.target for n in traced.graph.nodes if "mlip" in str(n.target)]
    assert ops and all(op is torch.ops.mlip.tp_forms.default for op in ops)
    for nodes, edges in ((3, 5), (6, 13)):
        inputs = [
            t.requires_grad_() if t.is_floating_point() else t for t in conv_inputs(tp, nodes, edges, seed=2)
        ]
        for got, expected in zip(traced(*inputs), reference(*inputs), strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "name, hp",
    [
        ("mace", dict(hidden_irreps="2x0e+2x1o", max_ell=1, correlation=2, num_interactions=1)),
        ("nequip", dict(num_features=2, num_layers=1, lmax=1, radial_mlp=[4])),
        ("gridnet", dict(channels=2, num_layers=1, lmax=1, num_splines=4)),
    ],
)
def test_model_step_exports_on_the_triton_backend(name: str, hp: dict) -> None:
    """The sync-free energy+forces+virial step (``mlip.compile.export_step``: ``make_fx`` symbolic with
    errors on data-dependent ops, then ``torch.export`` with dynamic atoms and edges) of a tiny model on
    the Triton backend holds the custom ops (``mlip::tp_forms``; ``mlip::grid_contract`` for gridnet's grid
    layers) and equals the eager torch backend at another size."""
    from mlip.compile.step import ForceStep, example_inputs, export_step
    from mlip.models import create

    model = create(name, species=[1, 6, 8], r_max=3.0, seed=0, dtype=torch.float64, **hp).eval()
    set_backend(model, "triton")
    exported = export_step(model)
    ops = {n.target for n in exported.graph.nodes}
    assert torch.ops.mlip.tp_forms.default in ops
    assert (torch.ops.mlip.grid_contract.default in ops) == (name == "gridnet")
    args = example_inputs(model, num_atoms=7, num_edges=17)
    got = exported.module()(*args)
    expected = ForceStep(set_backend(model, "torch"))(*args)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_tp_conv_compiles_in_one_graph() -> None:
    """``torch.compile(fullgraph=True, dynamic=True)`` (graph breaks would raise): forward and backward
    equal the reference at two sizes with one compiled graph."""
    tp, reference = tiny_tp("triton"), tiny_tp("reference")
    compiled = torch.compile(
        lambda x, sh, w, src, dst: tp_conv(x, sh, w, src, dst, x.shape[0], tp),
        fullgraph=True,
        dynamic=True,
        backend="aot_eager",
    )
    for nodes, edges in ((5, 11), (7, 13)):
        inputs = [t.requires_grad_() if t.is_floating_point() else t for t in conv_inputs(tp, nodes, edges)]
        results = []
        for conv in (compiled, lambda *a: tp_conv(*a, a[0].shape[0], reference)):
            out = conv(*inputs)
            results.append([out, *torch.autograd.grad((out * out.sin()).sum(), inputs[:3])])
        for got, expected in zip(*results, strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
