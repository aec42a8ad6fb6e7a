"""tp_conv against e3nn + scatter, gradients to second order, edge cases, determinism, equivariance."""

import pytest
import torch

from mlip.kernels import TensorProduct, tp_conv
from mlip.kernels.tensor_product.configs import config_instructions, make_tp
from mlip.kernels.tp_conv import ConvGraph
from mlip.testing import assert_equivariant

o3 = pytest.importorskip("e3nn.o3")
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
GPU = DEVICE.type == "cuda"
BACKENDS = ["reference", "torch", "triton"]


def graph(tp: TensorProduct, nodes: int, edges: int, dtype: torch.dtype, seed: int = 0, grad: bool = False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(nodes, tp.irreps_in1.dim, generator=g, dtype=dtype)
    sh = torch.randn(edges, tp.irreps_in2.dim, generator=g, dtype=dtype)
    w = torch.randn(edges, tp.weight_numel, generator=g, dtype=dtype)
    src, dst = torch.randint(0, nodes, (2, edges), generator=g)
    tensors = [t.to(DEVICE).requires_grad_(grad) for t in (x, sh, w)]
    return (*tensors, src.to(DEVICE), dst.to(DEVICE))


def tiny_tp(backend: str) -> TensorProduct:
    """Five paths (two into one block, one unweighted) at multiplicity 2: cheap in the interpreter."""
    return TensorProduct("2x0e+2x1o", "0e+1o", "2x0e+2x1o+2x1e",
                         [(0, 0, 0, "uvu", True), (1, 1, 0, "uvu", True), (0, 1, 1, "uvu", True),
                          (1, 0, 1, "uvu", False), (1, 1, 2, "uvu", True)], backend=backend)  # fmt: skip


def size(backend: str) -> tuple[int, int]:
    return (200, 3000) if GPU else ((4, 9) if backend == "triton" else (30, 200))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_e3nn_scatter(backend: str, dtype: torch.dtype) -> None:
    in1, in2, out, instructions = config_instructions("mace-medium")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        expected_tp = o3.TensorProduct(in1, in2, str(out), instructions, shared_weights=False).to(DEVICE)
    finally:
        torch.set_default_dtype(previous)
    tp = make_tp("mace-medium", backend)
    nodes, edges = size(backend)
    x, sh, w, src, dst = graph(tp, nodes, edges, dtype)
    expected = torch.zeros(nodes, tp.irreps_out.dim, dtype=dtype, device=DEVICE)
    expected = expected.index_add(0, dst, expected_tp(x[src], sh, w))
    got = tp_conv(x, sh, w, src, dst, nodes, tp)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    assert float((got - expected).abs().max() / expected.abs().max()) < tol


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_gradients_match_reference(backend: str) -> None:
    tp, ref = make_tp("nequip-water", backend), make_tp("nequip-water", "reference")
    nodes, edges = size(backend)
    x, sh, w, src, dst = graph(tp, nodes, edges, torch.float64, grad=True)
    results = []
    for module in (tp, ref):
        out = tp_conv(x, sh, w, src, dst, nodes, module)
        grads = torch.autograd.grad((out * out.detach().sin()).sum(), (x, sh, w), create_graph=True)
        second = torch.autograd.grad(sum(g.cos().sum() for g in grads), (x, sh, w))
        results.append([out, *grads, *second])
    for a, b in zip(*results, strict=True):
        assert float((a - b).abs().max().detach()) < 1e-10 * max(1.0, float(b.abs().max().detach()))


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_gradcheck(backend: str) -> None:
    tp = tiny_tp(backend)
    x, sh, w, src, dst = graph(tp, 3, 5, torch.float64, grad=True)

    def fn(x: torch.Tensor, sh: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return tp_conv(x, sh, w, src, dst, 3, tp)

    fast_mode = backend == "triton" and not GPU
    assert torch.autograd.gradcheck(fn, (x, sh, w), fast_mode=fast_mode)
    assert torch.autograd.gradgradcheck(fn, (x, sh, w), fast_mode=fast_mode)


@pytest.mark.parametrize("backend", BACKENDS)
def test_edge_cases(backend: str) -> None:
    tp = make_tp("nequip-water", backend)
    x, sh, w, src, dst = graph(tp, 3, 6, torch.float64)
    # zero edges: zeros, and gradients flow (as zeros)
    xg = x.clone().requires_grad_()
    out = tp_conv(xg, sh[:0], w[:0], src[:0], dst[:0], 3, tp)
    assert out.shape == (3, tp.irreps_out.dim) and not out.any()
    out.sum().backward()
    assert xg.grad is not None and not xg.grad.any()
    # one atom with self edges; isolated nodes get zeros
    one = tp_conv(x[:1], sh[:2], w[:2], src[:2] * 0, dst[:2] * 0, 1, tp)
    expected = tp(x[:1].expand(2, -1), sh[:2], w[:2]).sum(0, keepdim=True)
    assert torch.allclose(one, expected, atol=1e-12)
    isolated = tp_conv(x, sh, w, src * 0, dst * 0, 3, tp)
    assert not isolated[1:].any()
    # non-contiguous inputs
    strided = [t.T.contiguous().T for t in (x, sh, w)]
    reference = tp_conv(x, sh, w, src, dst, 3, tp, backend="reference")
    assert torch.allclose(tp_conv(*strided, src, dst, 3, tp), reference, atol=1e-12)
    with pytest.raises(TypeError, match="float32 or float64"):
        tp_conv(x.bfloat16(), sh.bfloat16(), w.bfloat16(), src, dst, 3, tp)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_deterministic_bit_identical(backend: str) -> None:
    tp = make_tp("nequip-water", backend)
    nodes, edges = size(backend)
    x, sh, w, src, dst = graph(tp, nodes, edges, torch.float32, grad=True)
    runs = []
    for _ in range(2):
        out = tp_conv(x, sh, w, src, dst, nodes, tp, deterministic=True)
        runs.append([out, *torch.autograd.grad(out.square().sum(), (x, sh, w))])
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


def test_shared_weights() -> None:
    tp = TensorProduct(*config_instructions("nequip-water"), shared_weights=True, internal_weights=True)
    x, sh, _, src, dst = graph(tp, 5, 12, torch.float64)
    tp = tp.to(DEVICE, torch.float64)
    expected = tp_conv(x, sh, None, src, dst, 5, tp, backend="reference")
    for backend in ("torch", "triton"):
        assert torch.allclose(tp_conv(x, sh, None, src, dst, 5, tp, backend=backend), expected, atol=1e-12)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_equivariant(backend: str) -> None:
    """Rotating node features and edge harmonics rotates the aggregated messages."""
    tp = make_tp("nequip-water", backend)
    nodes = 3
    _, _, w, src, dst = graph(tp, nodes, nodes, torch.float64)
    split = tp.irreps_in1.dim

    def fn(z: torch.Tensor) -> torch.Tensor:  # row n: [x_n, sh of edge n]
        z = z.to(DEVICE)
        return tp_conv(z[:, :split], z[:, split:], w, src, dst, nodes, tp).cpu()

    assert_equivariant(fn, tp.irreps_in1 + tp.irreps_in2, tp.irreps_out, batch=nodes)


def test_uvw_convolution() -> None:
    """A fully connected (uvw) convolution: fast torch path against the reference, to second order."""
    tp = make_tp("uvw-l2")  # auto: the fast torch path on every device
    ref = make_tp("uvw-l2", "reference")
    x, sh, w, src, dst = graph(tp, 6, 20, torch.float64, grad=True)
    results = []
    for module in (tp, ref):
        out = tp_conv(x, sh, w, src, dst, 6, module)
        grads = torch.autograd.grad((out * out.detach().sin()).sum(), (x, sh, w), create_graph=True)
        second = torch.autograd.grad(sum(g.cos().sum() for g in grads), (x, sh, w))
        results.append([out, *grads, *second])
    for a, b in zip(*results, strict=True):
        assert float((a - b).abs().max().detach()) < 1e-10 * max(1.0, float(b.abs().max().detach()))


@pytest.mark.parametrize("name", ["nequip-water", "uvw-l2"])
def test_fast_path_in_many_chunks(name: str, monkeypatch) -> None:
    """The fast torch paths split their batch into chunks of about ``CHUNK_ELEMENTS``: with one edge per
    chunk, ``tp_conv`` and the plain product still equal the reference to second order."""
    import mlip.kernels.tensor_product.torch_fast as fast

    monkeypatch.setattr(fast, "CHUNK_ELEMENTS", 1)
    tp, ref = make_tp(name, "torch"), make_tp(name, "reference")
    x, sh, w, src, dst = graph(tp, 5, 12, torch.float64, grad=True)
    results = []
    for module in (tp, ref):
        conv = tp_conv(x, sh, w, src, dst, 5, module)
        plain = module(x[src], sh, w)
        out = (conv * conv.detach().sin()).sum() + (plain * plain.detach().cos()).sum()
        grads = torch.autograd.grad(out, (x, sh, w), create_graph=True)
        second = torch.autograd.grad(sum(g.cos().sum() for g in grads), (x, sh, w))
        results.append([conv, plain, *grads, *second])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_graph_reused_across_calls(backend: str) -> None:
    """One ConvGraph per neighbour list: same results as without it; its sorted orders are built on first
    use (dst: forward, src: node-feature gradient) and reused by later calls; other edges are rejected."""
    tp = tiny_tp(backend)
    nodes, edges = size(backend)
    x, sh, w, src, dst = graph(tp, nodes, edges, torch.float64)
    x.requires_grad_()
    conv_graph = ConvGraph(src, dst, nodes)
    first = tp_conv(x, sh, w, src, dst, nodes, tp, graph=conv_graph)
    (grad,) = torch.autograd.grad(first.square().sum(), x)
    orders = dict(conv_graph._csr)
    second = tp_conv(x, sh, w, src, dst, nodes, tp, graph=conv_graph)  # e.g. the next layer
    expected = tp_conv(x, sh, w, src, dst, nodes, tp)
    assert torch.equal(first, expected) and torch.equal(second, expected)
    assert torch.allclose(grad, torch.autograd.grad(expected.square().sum(), x)[0], rtol=1e-12, atol=1e-12)
    if backend == "triton":
        assert set(orders) == {"dst", "src"}
        assert all(conv_graph._csr[k][1] is orders[k][1] for k in orders)
    with pytest.raises(ValueError, match="other edge_src"):
        tp_conv(x, sh, w, src.clone(), dst, nodes, tp, graph=conv_graph)


@pytest.mark.parametrize("name", ["nequip-water", "nequip-lips"])
def test_fused_gradients(name: str, monkeypatch) -> None:
    """The backward of a Triton convolution computes the x, y and w gradients in one fused kernel (one
    program per source node), and the double backward again (two forms per slot) beside one o-slot
    kernel summing three forms. First order equals the one-slot kernels, second order the reference; the
    fused kernels' sections split x blocks (their gradients add up across sections); a source node
    without edges gets a zero gradient."""
    from mlip.kernels.tensor_product.triton import _launch, _tuning, weight_slot

    tp, ref = make_tp(name, "triton"), make_tp(name, "reference")
    nodes, edges = (200, 3000) if GPU else (4, 7)
    x, sh, w, src, dst = graph(tp, nodes, edges, torch.float64, grad=True)
    src = src.clamp(max=nodes - 2)  # the last node sends nothing
    sections = _tuning.fused_chunks(tp.descriptor)
    blocks = [{tp.descriptor.instructions[p].i_in1 for p in section} for section in sections]
    assert any(a & b for a, b in zip(blocks, blocks[1:], strict=False)), "no x block spans two sections"
    fused, original = [], _launch.launch_fused
    monkeypatch.setattr(_launch, "launch_fused", lambda *a: fused.append(sorted(a[2])) or original(*a))
    results = []
    for module in (tp, ref):
        out = tp_conv(x, sh, w, src, dst, nodes, module)
        grads = torch.autograd.grad((out * out.detach().sin()).sum(), (x, sh, w), create_graph=True)
        second = torch.autograd.grad(sum((g * g.detach().cos()).sum() for g in grads), (x, sh, w))
        results.append([*grads, *second])
    assert fused == [["w", "x", "y"], ["w", "x", "y"]]
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert not results[0][0][-1].any()
    conv_graph = ConvGraph(src, dst, nodes)
    ops = {"x": x, "y": sh, "w": weight_slot(tp.descriptor, w, edges, x), "o": out.detach().sin()}
    for slot, got in zip("xyw", results[0][:3], strict=True):
        form = {k: v for k, v in ops.items() if k != slot}
        expected = _launch.launch(tp.descriptor, conv_graph, slot, [form])[:, : got.shape[1]]
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
