"""The fused CPU convolution (Inductor-compiled, ``kernels/tp_conv/fused.py``) against the reference to
third order in float64, and when it runs (auto threshold, switches, traces, a failing compiler)."""

import logging
import shutil

import pytest
import torch

from mlip.kernels import TensorProduct
from mlip.kernels.tp_conv import fused, reference, torch_fast

# two paths into one block, an unweighted path, weights that are not consecutive per output dimension
PATHS = ("3x0e+3x1o", "0e+1o+2e", "3x0e+3x1o+3x1e+3x0e",
         [(0, 0, 0, "uvu", True), (1, 1, 2, "uvu", True), (1, 1, 3, "uvu", True),
          (0, 1, 1, "uvu", False), (1, 2, 1, "uvu", True), (1, 0, 1, "uvu", True)])  # fmt: skip
NODES, EDGES = 5, 17
# Inductor's C++ needs a compiler; without one the ATen fallback runs (test_compile_failure_falls_back)
compiles = pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "c++", "clang++")), reason="no C++ compiler for Inductor"
)


def problem(seed: int = 0, dtype: torch.dtype = torch.float64):
    desc = TensorProduct(*PATHS, shared_weights=False).descriptor
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(NODES, desc.irreps_in1.dim, generator=g, dtype=dtype).requires_grad_()
    sh = torch.randn(EDGES, desc.irreps_in2.dim, generator=g, dtype=dtype).requires_grad_()
    w = torch.randn(EDGES, desc.weight_numel, generator=g, dtype=dtype).requires_grad_()
    src, dst = torch.randint(0, NODES - 1, (2, EDGES), generator=g)  # the last node sends and gets nothing
    return desc, x, sh, w, src, dst


def derivatives(fn, x, sh, w) -> list[torch.Tensor]:
    """Output, first, second and third derivatives of a scalar of ``fn``'s output (each order's scalar a
    non-linear function of the last, so no order is trivially zero)."""
    out = fn(x, sh, w)
    first = torch.autograd.grad((out * out.detach().sin()).sum(), (x, sh, w), create_graph=True)
    second = torch.autograd.grad(
        sum((g * g.detach().cos()).sum() for g in first), (x, sh, w), create_graph=True
    )
    third = torch.autograd.grad(sum((g * g.detach().sin()).sum() for g in second), (x, sh, w))
    return [out, *first, *second, *third]


@compiles
def test_matches_reference_to_third_order(monkeypatch) -> None:
    monkeypatch.setenv(fused.ENV, "1")
    calls = []
    original = fused._run
    monkeypatch.setattr(fused, "_run", lambda desc, want, *a: calls.append(want) or original(desc, want, *a))
    desc, x, sh, w, src, dst = problem()
    got = derivatives(lambda *t: torch_fast.tp_conv_fast(desc, *t, src, dst, NODES), x, sh, w)
    expected = derivatives(lambda *t: reference.tp_conv_reference(desc, *t, src, dst, NODES), x, sh, w)
    assert None in calls and (True, True, True) in calls  # the compiled forward and backward ran
    assert any(sum(want) == 2 for want in calls if want)  # and the double backward's adjoints
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * float(b.detach().abs().max()))
    assert not got[1][-1].any()  # a node without edges gets a zero gradient


@compiles
def test_gradcheck_and_unweighted(monkeypatch) -> None:
    """Finite differences (first and second order), and a descriptor without weights (``w`` None)."""
    monkeypatch.setenv(fused.ENV, "1")
    desc, x, sh, w, src, dst = problem(seed=1)
    args = (x[:, :], sh[:6], w[:6])
    fn = lambda a, b, c: torch_fast.tp_conv_fast(desc, a, b, c, src[:6], dst[:6], NODES)  # noqa: E731
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)
    bare = TensorProduct("3x0e+3x1o", "0e+1o", "3x0e+3x1o", [(0, 0, 0, "uvu", False), (1, 1, 0, "uvu", False),
                                                             (1, 0, 1, "uvu", False)]).descriptor  # fmt: skip
    xb = x.detach()[:, : bare.irreps_in1.dim].requires_grad_()
    sb = sh.detach()[:, : bare.irreps_in2.dim].requires_grad_()
    assert fused.applies(bare, xb, sb, None, src)
    got = torch_fast.tp_conv_fast(bare, xb, sb, None, src, dst, NODES)
    torch.testing.assert_close(got, reference.tp_conv_reference(bare, xb, sb, None, src, dst, NODES))
    bare_fn = lambda a, b: torch_fast.tp_conv_fast(bare, a, b, None, src, dst, NODES)  # noqa: E731
    assert torch.autograd.gradgradcheck(bare_fn, (xb, sb))


def test_when_it_runs(monkeypatch) -> None:
    """Auto: only above ``MIN_MESSAGES`` and on at most ``MAX_THREADS`` threads; ``0`` never; not for shared
    weights nor inside a trace (make_fx sees the ATen ops and equals the reference)."""
    desc, x, sh, w, src, dst = problem()
    monkeypatch.setenv(fused.ENV, "auto")
    assert not fused.applies(desc, x, sh, w, src)
    monkeypatch.setattr(fused, "MIN_MESSAGES", 1)
    assert fused.applies(desc, x, sh, w, src)
    torch.set_num_threads(fused.MAX_THREADS)
    assert fused.applies(desc, x, sh, w, src)
    torch.set_num_threads(fused.MAX_THREADS + 1)  # single-threaded kernels: many threads run the ATen path
    assert not fused.applies(desc, x, sh, w, src)
    torch.set_num_threads(1)
    assert not fused.applies(desc, x, sh, w[0], src)  # shared weights
    monkeypatch.setenv(fused.ENV, "0")
    assert not fused.applies(desc, x, sh, w, src)
    monkeypatch.setenv(fused.ENV, "1")
    from torch.fx.experimental.proxy_tensor import make_fx

    step = lambda a, b, c, s, d: torch_fast.tp_conv_fast(desc, a, b, c, s, d, NODES)  # noqa: E731
    traced = make_fx(step, tracing_mode="symbolic", _allow_non_fake_inputs=True)(
        x.detach(), sh.detach(), w.detach(), src, dst
    )
    assert "bmm" in str(traced.graph)  # the ATen formulation
    with torch.no_grad():
        expected = reference.tp_conv_reference(desc, x, sh, w, src, dst, NODES)
        torch.testing.assert_close(traced(x, sh, w, src, dst), expected)


def test_compile_failure_falls_back(monkeypatch, caplog) -> None:
    """A compiler that fails: one warning, the ATen result, and no second attempt for that key."""
    monkeypatch.setenv(fused.ENV, "1")
    monkeypatch.setattr(fused, "_FAILED", set())
    desc, x, sh, w, src, dst = problem(dtype=torch.float32)

    def broken(*args):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(fused, "_run", broken)
    with caplog.at_level(logging.WARNING, logger=fused.__name__):
        got = torch_fast.tp_conv_fast(desc, x, sh, w, src, dst, NODES)
    assert "no C++ compiler" in caplog.text
    assert not fused.applies(desc, x, sh, w, src)
    expected = reference.tp_conv_reference(desc, x, sh, w, src, dst, NODES)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@compiles
def test_chunked_inference_mode(monkeypatch, chunked_conv_problem) -> None:
    """``tp_conv(..., weight_fn=, chunked=True)`` on the compiled kernels (weights per chunk of edges,
    recomputed in the backward) equals the reference in output and first derivatives for every input and
    the weight function's parameters, with two multiplicities and an unweighted path."""
    from mlip.kernels import tp_conv

    monkeypatch.setenv(fused.ENV, "1")
    monkeypatch.setattr(torch_fast, "EDGES_PER_CHUNK", 5)
    calls = []
    original = fused._run
    monkeypatch.setattr(fused, "_run", lambda plan, want, *a: calls.append(want) or original(plan, want, *a))
    tp, mlp, x, sh, radial, src, dst, probe = chunked_conv_problem
    nodes = x.shape[0]

    def run(backend, chunked):
        out = tp_conv(x, sh, radial, src, dst, nodes, tp, backend=backend, weight_fn=mlp, chunked=chunked)
        return out, *torch.autograd.grad((out * probe).sum(), [x, sh, radial, *mlp.parameters()])

    expected = run("reference", False)
    for max_chunks, chunks in ((16, 5), (2, 2)):  # 5 chunks of 5 edges; at most 2: 2 of 12
        monkeypatch.setattr(fused, "MAX_CHUNKS", max_chunks)
        calls.clear()
        got = run("torch", True)
        assert calls.count(None) == chunks and calls.count((True, True, True)) == chunks  # forward, backward
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@compiles
def test_model_force_training_equals_aten(monkeypatch) -> None:
    """A MACE on the compiled convolution: energy, forces and the force loss's gradient with respect to
    the weights (the double backward of training) equal the ATen path's in float64; so do eval mode's
    chunked energies and forces."""
    from ase.build import molecule

    from mlip.data.atomic_data import from_atoms
    from mlip.data.neighbors import add_neighbors
    from mlip.kernels.tp_conv import torch_fast as conv
    from mlip.testing import tiny_mace

    monkeypatch.setattr(conv, "EDGES_PER_CHUNK", 7)  # eval mode: several chunks
    calls = []
    original = fused._run
    monkeypatch.setattr(fused, "_run", lambda plan, want, *a: calls.append(want) or original(plan, want, *a))
    atoms = molecule("CH3OH")
    atoms.rattle(0.05, seed=1)
    data = add_neighbors(from_atoms(atoms), 3.0)
    results = {}
    for mode in ("0", "1"):
        monkeypatch.setenv(fused.ENV, mode)
        model = tiny_mace()
        model.train()
        out = model(data)
        loss = out["energy"].square().sum() + out["forces"].square().sum()
        grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
        model.eval()
        inference = model(data)
        results[mode] = [out["energy"], out["forces"], *(g for g in grads if g is not None),
                         inference["energy"], inference["forces"]]  # fmt: skip
    assert None in calls and any(want and sum(want) == 2 for want in calls)  # forward, double backward
    for a, b in zip(results["1"], results["0"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
