"""The traced chunk loops (``mlip.kernels.blocks``): the blocked convolution and the blocked row map equal
the plain paths (output and first derivatives, float64), eagerly and traced with symbolic sizes
(``make_fx(tracing_mode="symbolic")`` erroring on data-dependent ops), at sizes other than the traced
example's, with several blocks and a padded last block."""

from __future__ import annotations

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from mlip.kernels import TensorProduct, blocked_rows, tp_conv
from mlip.kernels.blocks import block_rows, inplace_loop_carries, loop_blocks
from mlip.kernels.tp_conv import torch_fast as conv
from mlip.layers.radial import RadialMLP

TOL = dict(atol=1e-12, rtol=0)


SYMBOLIC = dict(tracing_mode="symbolic", _error_on_data_dependent_ops=True, _allow_non_fake_inputs=True)


def conv_inputs(tp: TensorProduct, nodes: int, edges: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(nodes, tp.irreps_in1.dim, generator=g, dtype=torch.float64)
    sh = torch.randn(edges, tp.irreps_in2.dim, generator=g, dtype=torch.float64)
    radial = torch.randn(edges, 4, generator=g, dtype=torch.float64)
    src, dst = torch.randint(0, nodes, (2, edges), generator=g)
    probe = torch.randn(nodes, tp.irreps_out.dim, generator=g, dtype=torch.float64)
    return x, sh, radial, src, dst, probe


def with_grads(fn):
    """``(x, sh, radial, src, dst, probe) -> (out, d<out·probe>/dx, /dsh, /dradial)`` of a convolution."""

    def run(x, sh, radial, src, dst, probe):
        x, sh, radial = (t.detach().requires_grad_(True) for t in (x, sh, radial))
        out = fn(x, sh, radial, src, dst)
        return (out, *torch.autograd.grad((out * probe).sum(), [x, sh, radial]))

    return run


def test_blocked_convolution_equals_plain_eager_and_traced(two_group_tp):
    tp = two_group_tp
    assert len(conv.fast.plan(tp.descriptor)) == 2
    mlp = RadialMLP([4, 8, tp.weight_numel]).double().requires_grad_(False)

    def plain(x, sh, radial, src, dst):
        return tp_conv(x, sh, mlp(radial), src, dst, x.shape[0], tp)

    def blocked(x, sh, radial, src, dst):
        return conv.tp_conv_blocked(tp.descriptor, x, sh, mlp, radial, src, dst, block=5)

    def dispatched(x, sh, radial, src, dst):  # tp_conv's chunked mode takes the loop for a symbolic E
        return tp_conv(x, sh, radial, src, dst, x.shape[0], tp, weight_fn=mlp, chunked=True)

    example = conv_inputs(tp, 6, 23, seed=0)  # 5 blocks, the last one with 2 padding edges
    expected = with_grads(plain)(*example)
    for got, want in zip(with_grads(blocked)(*example), expected, strict=True):
        torch.testing.assert_close(got, want, **TOL)
    for fn in (blocked, dispatched):
        traced = make_fx(with_grads(fn), **SYMBOLIC)(*example)
        assert any("while_loop" in str(node.target) for node in traced.graph.nodes)
        for nodes, edges in ((9, 31), (4, 3), (7, 5)):  # other sizes: more blocks, one short block, one full
            inputs = conv_inputs(tp, nodes, edges, seed=nodes)
            for got, want in zip(traced(*inputs), with_grads(plain)(*inputs), strict=True):
                torch.testing.assert_close(got, want, **TOL)


def test_blocked_convolution_refuses_trainable_weights(two_group_tp):
    tp = two_group_tp
    mlp = RadialMLP([4, 8, tp.weight_numel]).double()
    x, sh, radial, src, dst, _ = conv_inputs(tp, 6, 23, seed=0)
    with pytest.raises(ValueError, match="frozen weights"):
        conv.tp_conv_blocked(tp.descriptor, x, sh, mlp, radial, src, dst, block=5)


class RowWise(torch.nn.Module):
    """A row-wise layer with a species input: ``tanh(x W_s) * x`` per row."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.weight = torch.nn.Parameter(torch.randn(3, 4, 4, dtype=torch.float64, generator=g))

    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        return torch.tanh(torch.einsum("nci,nij->ncj", x, self.weight[species])) * x


def test_blocked_rows_equal_plain_eager_and_traced():
    layer = RowWise().requires_grad_(False)

    def run(fn):
        def inner(x, species, probe):
            x = x.detach().requires_grad_(True)
            out = fn(x, species)
            return out, torch.autograd.grad((out * probe).sum(), [x])[0]

        return inner

    def inputs(n, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 2, 4, generator=g, dtype=torch.float64)
        return (
            x,
            torch.randint(0, 3, (n,), generator=g),
            torch.randn(n, 2, 4, generator=g, dtype=torch.float64),
        )

    blocked = run(lambda x, s: blocked_rows(layer, x, s, rows=4))
    for got, want in zip(blocked(*inputs(11, 0)), run(layer)(*inputs(11, 0)), strict=True):
        torch.testing.assert_close(got, want, **TOL)
    traced = make_fx(blocked, **SYMBOLIC)(*inputs(11, 0))
    for n in (13, 3, 8):
        for got, want in zip(traced(*inputs(n, n)), run(layer)(*inputs(n, n)), strict=True):
            torch.testing.assert_close(got, want, **TOL)


def test_inplace_loop_carries_rewrites_block_sums_and_keeps_results():
    """The Inductor pass turns the loop body's accumulating ``index_put`` (a block's ``index_add`` into
    the sum) into ``index_put_`` on the carry, clones the initial value once, and the loop's result is
    unchanged."""

    def summed(values, index):
        total, size = index.shape[0], 4

        def body(step, out, vals, idx):
            rows, valid = block_rows(step, size, total)
            block = vals.index_select(0, rows) * valid[:, None].to(vals.dtype)
            return (torch.ops.aten.index_put(out, [idx.index_select(0, rows)], block, True),)

        start = values.new_zeros(7, values.shape[1])
        (out,) = loop_blocks(body, total, size, [start], [values, index], values.device)
        return out

    g = torch.Generator().manual_seed(3)
    values, index = (
        torch.randn(10, 3, generator=g, dtype=torch.float64),
        torch.randint(0, 7, (10,), generator=g),
    )
    traced = make_fx(summed, **SYMBOLIC)(values, index)
    inplace_loop_carries(traced.graph)
    traced.recompile()
    loop = next(n for n in traced.graph.nodes if n.target is torch.ops.higher_order.while_loop)
    body = getattr(traced, loop.args[1].target)
    assert [n.target for n in body.graph.nodes].count(torch.ops.aten.index_put_.default) == 1
    assert loop.args[2][1].target is torch.ops.aten.clone.default
    expected = torch.zeros(7, 3, dtype=torch.float64).index_add_(0, index, values)
    torch.testing.assert_close(traced(values, index), expected, **TOL)
