"""``mlip.kernels.gemm``: the oneDNN float32 product equals the float64 product (output, first and second
derivatives), the op passes ``opcheck``, and the choice of route (threshold, dtype, ``MLIP_CPU_GEMM``)."""

import pytest
import torch

from mlip.kernels import gemm

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")

M, K, N = 300, 70, 130  # 5.5 M flops: above MIN_FLOPS


@pytest.fixture
def onednn_calls(monkeypatch) -> list:
    calls = []
    original = gemm._onednn
    monkeypatch.setattr(gemm, "_onednn", lambda a, b: calls.append(a.shape) or original(a, b))
    return calls


def _operands(dtype=torch.float32, m: int = M, k: int = K, n: int = N):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=g, dtype=torch.float64)
    b = torch.randn(k, n, generator=g, dtype=torch.float64)
    return a.to(dtype).requires_grad_(), b.to(dtype).requires_grad_()


def _derivatives(mm, a, b):
    """Output, gradients of a nonlinear loss and second derivatives (through the first ones)."""
    out = mm(a, b)
    grads = torch.autograd.grad((out * out.detach().cos()).sum(), (a, b), create_graph=True)
    second = torch.autograd.grad(sum(g.sin().sum() for g in grads), (a, b))
    return [out, *grads, *second]


def test_onednn_route_equals_the_float64_product(onednn_calls, monkeypatch) -> None:
    monkeypatch.setenv(gemm.ENV, "onednn")  # the backward's products ask onednn_faster
    a, b = _operands()
    got = _derivatives(lambda p, q: gemm.matmul(p, q, onednn=True), a, b)
    a64, b64 = (t.detach().double().requires_grad_() for t in (a, b))
    want = _derivatives(torch.mm, a64, b64)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g.double(), w, rtol=1e-4, atol=1e-4 * w.abs().max().item())
    # the forward, both first-derivative products and the second derivatives' products all took oneDNN
    assert len(onednn_calls) >= 5


def test_transposed_operands(onednn_calls) -> None:
    a, b = _operands(m=K, k=M)  # a [70, 300]: use a.t() [300, 70], a strided view
    b2 = _operands(m=N, k=K)[0]  # [130, 70]: b2.t() [70, 130]
    got = gemm.matmul(a.detach().t(), b2.detach().t(), onednn=True)
    want = a.detach().double().t() @ b2.detach().double().t()
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-4)
    assert got.is_contiguous() and len(onednn_calls) == 1


def test_opcheck() -> None:
    """The op (fake kernel, autograd, both layouts of ``b``, operands with trailing dimensions)."""
    a, b = (t.detach() for t in _operands())
    for args in ((a, b, False), (a, b.t().contiguous(), True), (a.view(M, 7, 10), b.view(K, 13, 10), False)):
        torch.library.opcheck(gemm.cpu_mm, args)
        torch.library.opcheck(
            gemm.cpu_mm, tuple(t.requires_grad_() if torch.is_tensor(t) else t for t in args)
        )


def test_flattened_and_transposed_operands(onednn_calls, monkeypatch) -> None:
    """``a [M, ...] @ b [K, ...]`` flattens the trailing dimensions; ``transpose_b`` takes ``b [N, ...]``;
    both routes agree with the float64 product, with gradients in the operands' own shapes."""
    monkeypatch.setenv(gemm.ENV, "onednn")
    a, b = _operands()
    a3 = a.detach().view(M, 7, 10).requires_grad_()
    bt3 = b.detach().t().contiguous().view(N, 7, 10).requires_grad_()
    for onednn in (True, False):
        out = gemm.matmul(a3, bt3, onednn, transpose_b=True)
        want = a3.detach().double().view(M, K) @ bt3.detach().double().view(N, K).t()
        torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-4)
        ga, gb = torch.autograd.grad(out.sum(), (a3, bt3))
        assert ga.shape == a3.shape and gb.shape == bt3.shape
        torch.testing.assert_close(
            ga.double().view(M, K),
            torch.ones(M, N).double() @ bt3.detach().double().view(N, K),
            rtol=1e-5,
            atol=1e-4,
        )
    assert len(onednn_calls) >= 1


def test_route(onednn_calls, monkeypatch) -> None:
    """oneDNN only for float32 CPU products of at least MIN_FLOPS with the flag on; ``torch.mm`` else."""
    small = _operands(m=8, k=8, n=8)
    double = _operands(torch.float64)
    large = _operands()
    assert gemm.takes_onednn(*large, onednn=True)
    assert not gemm.takes_onednn(*large, onednn=False)
    assert not gemm.takes_onednn(*small, onednn=True)
    assert not gemm.takes_onednn(*double, onednn=True)
    for a, b in (small, double):
        torch.testing.assert_close(gemm.matmul(a, b, onednn=True), a @ b, rtol=0, atol=0)
    assert onednn_calls == []
    monkeypatch.setenv(gemm.ENV, "blas")
    assert not gemm.onednn_faster()
    monkeypatch.setenv(gemm.ENV, "onednn")
    assert gemm.onednn_faster()
    gemm.matmul(*large)
    assert len(onednn_calls) == 1


def test_measured_choice_is_a_boolean_per_thread_count(monkeypatch) -> None:
    """Unset, the choice is measured once per thread count (either answer is valid: it is the CPU's)."""
    monkeypatch.delenv(gemm.ENV, raising=False)
    timed = []
    monkeypatch.setattr(gemm, "_best_seconds", lambda fns, rounds=7: timed.append(fns) or [1.0, 1.0])
    gemm._measured.cache_clear()
    try:
        assert gemm.onednn_faster() is False  # equal times: below MIN_SPEEDUP
        assert gemm.onednn_faster() is False and len(timed) == 1  # cached
    finally:
        gemm._measured.cache_clear()


def test_traced_calls_hold_aten_products(monkeypatch) -> None:
    """Traced (make_fx, as export traces the model), :func:`matmul` records ``aten.mm``, not the custom
    op, even where eager calls take oneDNN: exported packages must not need Python."""
    from torch.fx.experimental.proxy_tensor import make_fx

    monkeypatch.setenv(gemm.ENV, "onednn")
    a, b = (t.detach() for t in _operands())
    graph = make_fx(lambda p, q: gemm.matmul(p, q), tracing_mode="symbolic")(a, b)
    targets = {str(node.target) for node in graph.graph.nodes if node.op == "call_function"}
    assert any("aten.mm" in t for t in targets) and not any("cpu_mm" in t for t in targets)
    torch.testing.assert_close(graph(a, b), a @ b)
