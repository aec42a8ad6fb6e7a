"""The general fast-torch formulations (pairs, blocks, mul_groups, sides, sides_stacked, fused) against the
reference (output, first and second derivatives, float64; ``fused`` on its compiled kernels in
:func:`test_fused_matches_reference`), and the per-shape choice: forced, tuned and cached per CPU model, the
cost model under tracing, a corrupt cache file, a compiled formulation offered per call."""

import json
import logging
import shutil

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from mlip.kernels import TensorProduct, gemm, inductor
from mlip.kernels.tensor_product import blocks, formulation, fused, sides
from mlip.kernels.tensor_product import torch_fast as fast
from mlip.kernels.tensor_product.configs import shape_instructions

# uvw paths between unequal multiplicities, uvu paths (one unweighted), several paths per output block,
# an output block no path writes, 1-, 3- and 5-dimensional in1 blocks, in2 of multiplicity 1: every branch
# of blocks.couple (D1 == 1, tiny products, bmm) is taken in one grouping or the other
IN1, IN2, OUT = "16x0e+16x1o+3x2e+2x1e", "0e+1o+2e", "16x1o+4x0e+3x2e+2x1e+2x0o"


def _instructions() -> list[tuple]:
    from mlip.o3 import Irreps

    a, b, c = Irreps(IN1), Irreps(IN2), Irreps(OUT)
    out = []
    for i, (m1, ir1) in enumerate(a):
        for j, (_, ir2) in enumerate(b):
            for k, (mo, ir) in enumerate(c):
                if ir in list(ir1 * ir2):
                    mode = "uvu" if m1 == mo and (i + j) % 2 == 0 else "uvw"
                    out.append((i, j, k, mode, True))
    first_uvu = next(n for n, ins in enumerate(out) if ins[3] == "uvu")
    out[first_uvu] = (*out[first_uvu][:4], False)  # one unweighted path
    return out


INSTRUCTIONS = _instructions()
# the formulations a call is offered with the compiled ones off (the fresh_choices fixture sets that)
OFFERED = [n for n, f in fast.GENERAL_FORMULATIONS.items() if f.offered is None]


def _desc():
    return TensorProduct(IN1, IN2, OUT, INSTRUCTIONS).descriptor


def _inputs(desc, batch: int, shared: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, desc.irreps_in1.dim, generator=g, dtype=torch.float64)
    y = torch.randn(batch, desc.irreps_in2.dim, generator=g, dtype=torch.float64)
    w = torch.randn(*(() if shared else (batch,)), desc.weight_numel, generator=g, dtype=torch.float64)
    return [t.requires_grad_() for t in (x, y, w)]


def _with_grads(fn, x, y, w):
    out = fn(x, y, w)
    grads = torch.autograd.grad((out * out.detach().cos()).sum(), (x, y, w), create_graph=True)
    second = torch.autograd.grad(sum(g.sin().sum() for g in grads), (x, y, w))
    return [out, *grads, *second]


def _third(fn, x, y, w):
    """Third derivatives of ``fn`` in every input (each backward records a graph for the next)."""
    inputs = (x, y, w)
    grads = torch.autograd.grad((fn(x, y, w) ** 2).sum(), inputs, create_graph=True)
    second = torch.autograd.grad(sum(g.sin().sum() for g in grads), inputs, create_graph=True)
    return torch.autograd.grad(sum((g * g).sum() for g in second), inputs)


def test_descriptor_exercises_every_branch() -> None:
    desc = _desc()
    modes = {ins.mode for ins in desc.instructions}
    assert modes == {"uvu", "uvw"} and not all(ins.has_weight for ins in desc.instructions)
    assert blocks.supports(desc) and not desc.channelwise
    shapes = set()
    for grouping in blocks.GROUPINGS:
        for g in blocks.block_plan(desc, grouping):
            for k, paths in g.outputs:
                rows = desc.irreps_out[k].ir.dim * len(paths)
                shapes.add(
                    "mul" if g.dim == 1 else "loop" if rows * g.dim * g.mul < blocks.BMM_MIN else "bmm"
                )
    assert shapes == {"mul", "loop", "bmm"}


def test_sides_plan_exercises_every_kind() -> None:
    """The test descriptor has every coupling kind of the ``sides`` formulation (l2 = 0, l1 = 0,
    l_out = 0, general) and weight GEMMs on both sides; ``uvu`` paths stay on the output side."""
    desc = _desc()
    plan = sides.side_plan(desc)
    assert {sp.kind for sp in plan} == set(sides.KINDS)
    assert {sp.input_side for sp in plan} == {True, False}
    assert not any(sp.input_side for sp in plan if desc.instructions[sp.path].mode == "uvu")
    stacks = sides.general_stacks(desc)  # sides_stacked has an in1 block with several general paths
    assert stacks and all(len(paths) > 1 for paths in stacks.values()) and sides.supports_stacked(desc)
    for sp in plan:  # the special kinds' scale is the one non-zero value of their coupling
        if sp.kind != "general":
            ins = desc.instructions[sp.path]
            cg = blocks.wigner_block(ins, desc, torch.float64, torch.device("cpu"))
            assert cg.abs().max().item() == pytest.approx(abs(sp.scale), rel=1e-12)


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("name", list(fast.GENERAL_FORMULATIONS))
def test_formulation_matches_reference(name: str, shared: bool) -> None:
    """Output, gradients and double gradients of each formulation equal the reference's (float64)."""
    desc = _desc()
    run = fast.GENERAL_FORMULATIONS[name].run
    ref = TensorProduct(IN1, IN2, OUT, INSTRUCTIONS, shared_weights=shared, backend="reference")
    args = _inputs(desc, 5, shared)
    got = _with_grads(lambda a, b, c: run(desc, a, b, c), *args)
    expected = _with_grads(ref, *args)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("name", list(fast.GENERAL_FORMULATIONS))
def test_formulation_on_an_empty_batch(name: str, shared: bool) -> None:
    """No samples: an empty output, and gradients of the inputs' shapes (zero for shared weights)."""
    desc = _desc()
    x, y, w = _inputs(desc, 0, shared)
    out = fast.GENERAL_FORMULATIONS[name].run(desc, x, y, w)
    assert out.shape == (0, desc.irreps_out.dim)
    grads = torch.autograd.grad(out.sum(), (x, y, w))
    assert [g.shape for g in grads] == [x.shape, y.shape, w.shape]
    assert not grads[2].any()


def test_sides_stacked_only_where_it_stacks() -> None:
    """Without two output-side general paths on one in1 block, ``sides_stacked`` is no candidate."""
    desc = TensorProduct(*shape_instructions("4x0e+4x1o", "0e+1o", "4x0e+4x1o", False)).descriptor
    assert sides.supports(desc) and not sides.general_stacks(desc) and not sides.supports_stacked(desc)


@pytest.mark.parametrize("name", ["sides", "sides_stacked"])
@pytest.mark.parametrize("shared", [True, False])
def test_sides_in_chunks_matches_reference(name: str, shared: bool, monkeypatch) -> None:
    """``sides`` and ``sides_stacked`` over several batch chunks (the smallest chunk, 256 rows): output,
    gradients and double gradients equal the reference's (float64)."""
    monkeypatch.setattr(fast, "SIDES_CHUNK_BYTES", 0)
    desc = _desc()
    ref = TensorProduct(IN1, IN2, OUT, INSTRUCTIONS, shared_weights=shared, backend="reference")
    args = _inputs(desc, 600, shared)
    got = _with_grads(lambda a, b, c: fast.GENERAL_FORMULATIONS[name].run(desc, a, b, c), *args)
    for a, b in zip(got, _with_grads(ref, *args), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)


def test_couple_matches_einsum() -> None:
    g = torch.Generator().manual_seed(1)
    for rows, inner, cols in ((3, 1, 8), (2, 3, 4), (6, 5, 32)):  # broadcast, loop of products, bmm
        a = torch.randn(4, rows, inner, generator=g, dtype=torch.float64)
        x = torch.randn(4, inner, cols, generator=g, dtype=torch.float64)
        torch.testing.assert_close(blocks.couple(a, x), torch.einsum("bri,bic->brc", a, x))


def test_pairs_only_where_in2_has_multiplicity() -> None:
    """``mul(in2) > 1``: only the pair formulation applies, and choose() takes it."""
    tp = TensorProduct(
        "3x0e+2x1o", "2x0e+3x1o", "3x1o+2x0e", [(0, 1, 0, "uvw", True), (1, 1, 1, "uvw", True)]
    )
    x, y, w = _inputs(tp.descriptor, 3, True)
    chosen = formulation.choose("general", fast.GENERAL_FORMULATIONS, tp.descriptor, x, w)
    assert chosen.name == "pairs"


@pytest.fixture
def fresh_choices(monkeypatch, tmp_path):
    """An empty in-process memo and a cache file in ``tmp_path``; tuning on."""
    monkeypatch.setattr(formulation, "_CHOSEN", {})
    monkeypatch.setattr(formulation, "_MODELLED", {})
    monkeypatch.setenv(formulation.CACHE_ENV, str(tmp_path / "tp.json"))
    monkeypatch.setenv(formulation.TUNE_ENV, "1")
    monkeypatch.delenv(formulation.FORCE_ENV, raising=False)
    monkeypatch.setenv(inductor.ENV, "0")
    return tmp_path / "tp.json"


def test_forced_formulation(fresh_choices, monkeypatch) -> None:
    monkeypatch.setenv(inductor.ENV, "1")  # the compiled formulation offered too
    desc = _desc()
    x, _, w = _inputs(desc, 3, True)
    for name in fast.GENERAL_FORMULATIONS:
        monkeypatch.setenv(formulation.FORCE_ENV, name)
        assert formulation.choose("general", fast.GENERAL_FORMULATIONS, desc, x, w).name == name
    assert not fresh_choices.exists()  # forcing neither tunes nor writes


def test_tuner_caches_per_cpu_model(fresh_choices, monkeypatch) -> None:
    """The first eager call times every candidate and writes the winner under a key naming the CPU
    model and torch version; a later process (empty memo) reads it back without timing again."""
    desc = _desc()
    x, _, w = _inputs(desc, 8, True)
    chosen = formulation.choose("general", fast.GENERAL_FORMULATIONS, desc, x.detach(), w.detach())
    data = json.loads(fresh_choices.read_text())
    ((key, entry),) = data.items()
    assert formulation.cpu_model() in key and torch.__version__ in key and "shared" in key
    assert entry["choice"] == chosen.name and set(entry["ms"]) == set(OFFERED)
    # a later process: the memo is empty and the cache names another formulation
    other = next(n for n in OFFERED if n != chosen.name)
    fresh_choices.write_text(json.dumps({key: {"choice": other, "ms": entry["ms"]}}))
    monkeypatch.setattr(formulation, "_CHOSEN", {})
    monkeypatch.setattr(formulation, "time_candidates", lambda *a, **k: pytest.fail("timed again"))
    assert (
        formulation.choose("general", fast.GENERAL_FORMULATIONS, desc, x.detach(), w.detach()).name == other
    )


def test_cache_entry_over_other_candidates_is_retuned(fresh_choices, monkeypatch) -> None:
    """An entry timed before a formulation was added (its timings name fewer candidates) is tuned again,
    so the new formulation gets its chance."""
    desc = _desc()
    x, _, w = _inputs(desc, 8, True)
    formulation.choose("general", fast.GENERAL_FORMULATIONS, desc, x.detach(), w.detach())
    ((key, entry),) = json.loads(fresh_choices.read_text()).items()
    older = {n: t for n, t in entry["ms"].items() if n != "sides"}
    fresh_choices.write_text(json.dumps({key: {"choice": next(iter(older)), "ms": older}}))
    monkeypatch.setattr(formulation, "_CHOSEN", {})
    timed = []
    monkeypatch.setattr(
        formulation,
        "time_candidates",
        lambda cands, *a, **k: timed.append(set(cands)) or dict.fromkeys(cands, 1.0),
    )
    formulation.choose("general", fast.GENERAL_FORMULATIONS, desc, x.detach(), w.detach())
    assert timed == [set(OFFERED)]
    assert set(json.loads(fresh_choices.read_text())[key]["ms"]) == set(OFFERED)


def test_tuner_times_the_pass_of_the_call(fresh_choices, monkeypatch) -> None:
    """A call that records a graph is tuned on forward + backward, with the double backward too when the
    weights require grad (a training step), one that does not (no input requires grad, or grad mode off)
    on the forward alone: three cache entries, each pass its own choice."""
    desc = _desc()
    x, y, w = _inputs(desc, 8, True)
    backwards = []
    grad = torch.autograd.grad
    monkeypatch.setattr(
        torch.autograd,
        "grad",
        lambda *a, **k: backwards.append(k.get("create_graph", False)) or grad(*a, **k),
    )
    with torch.no_grad():
        formulation.choose("general", fast.GENERAL_FORMULATIONS, desc, x, w, y)
    assert not backwards  # the forward alone was timed
    formulation.choose("general", fast.GENERAL_FORMULATIONS, desc, x.detach(), w.detach(), y)
    assert backwards and not any(backwards)  # y requires grad: forward + backward timed
    backwards.clear()
    formulation.choose("general", fast.GENERAL_FORMULATIONS, desc, x.detach(), w, y)
    assert any(backwards) and not all(backwards)  # w too: a backward with a graph, then its backward
    keys = sorted(json.loads(fresh_choices.read_text()))
    assert len(keys) == 3 and {k.split("|")[8] for k in keys} == {"fwd", "fwd+bwd", "train"}


def test_corrupt_cache_is_retuned(fresh_choices) -> None:
    """A corrupt cache file is tuned over; tuning also works from inside ``torch.inference_mode``."""
    fresh_choices.write_text("{not json")
    desc = _desc()
    x, _, w = _inputs(desc, 4, False)
    with torch.inference_mode():
        chosen = formulation.choose("general", fast.GENERAL_FORMULATIONS, desc, x.detach(), w.detach())
    assert json.loads(fresh_choices.read_text()).popitem()[1]["choice"] == chosen.name


def test_trace_uses_the_cost_model(fresh_choices, monkeypatch) -> None:
    """Under ``make_fx`` (symbolic, as ``mlip compile`` traces) nothing is timed: the cost model's choice
    is traced, and the graph equals the eager reference at other batch sizes."""
    monkeypatch.setattr(formulation, "time_candidates", lambda *a, **k: pytest.fail("tuned in a trace"))
    tp = TensorProduct(IN1, IN2, OUT, INSTRUCTIONS, shared_weights=True, backend="torch")
    ref = TensorProduct(IN1, IN2, OUT, INSTRUCTIONS, shared_weights=True, backend="reference")
    x, y, w = (t.detach() for t in _inputs(tp.descriptor, 7, True))
    traced = make_fx(
        tp, tracing_mode="symbolic", _allow_non_fake_inputs=True, _error_on_data_dependent_ops=True
    )(x, y, w)
    for batch in (3, 11):
        a, b, c = (t.detach() for t in _inputs(tp.descriptor, batch, True, seed=batch))
        torch.testing.assert_close(traced(a, b, c), ref(a, b, c), rtol=1e-11, atol=1e-11)
    assert not fresh_choices.exists()


# ------------------------------------------------------------------------------------ fused (compiled)
# every coupling kind of the fused formulation (l2 = 0, l1 = 0, l_out = 0, general) on both weight sides,
# two output-side paths stacked into one GEMM, two input-side paths sharing one, a uvu path and an
# unweighted one; small, since each compiled kernel costs seconds
FUSED_PATHS = ("3x0e+2x1o", "0e+1o+2e", "3x0e+3x1o+2x1e+2x2e",
               [(0, 0, 0, "uvu", False), (1, 1, 0, "uvw", True), (0, 1, 1, "uvw", True),
                (1, 0, 1, "uvw", True), (1, 2, 1, "uvw", True), (1, 1, 2, "uvu", True),
                (1, 1, 3, "uvw", True), (0, 2, 3, "uvw", True)])  # fmt: skip
compiles = pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "c++", "clang++")), reason="no C++ compiler for Inductor"
)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_fused_plan_exercises_every_kind() -> None:
    desc = TensorProduct(*FUSED_PATHS).descriptor
    plan = fused.fused_plan(desc)
    assert {(p.kind, p.input_side) for p in plan if p.mode == "uvw"} == {
        ("dot", False),
        ("y", True),
        ("x", False),
        ("general", False),
        ("general", True),
    }
    assert {p.mode for p in plan} == {"uvu", "uvw"} and len(fused.fused_plan(desc, True)) == len(plan) - 1
    stacked = [p for p in plan if p.i_out == 1 and p.mode == "uvw" and not p.input_side]
    assert len(stacked) == 2 and len([p for p in plan if p.input_side and p.i_in1 == 0]) == 2


@compiles
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_matches_reference(monkeypatch, one_thread, threads: int) -> None:
    """On its compiled kernels: output, gradients and double gradients equal the reference's (float64,
    shared weights), at two batch sizes on the same kernels (dynamic batch), with the loops on one thread
    and on two; the double backward in one kernel, and (one thread) the third derivatives through the
    term-by-term double backward."""
    torch.set_num_threads(threads)
    monkeypatch.setenv(inductor.ENV, "1")
    monkeypatch.setenv(gemm.ENV, "blas")
    calls = []
    original = fused._run
    monkeypatch.setattr(
        fused, "_run", lambda name, key, *a, **k: calls.append((name, key)) or original(name, key, *a, **k)
    )
    tp = TensorProduct(*FUSED_PATHS, shared_weights=True)
    ref = TensorProduct(*FUSED_PATHS, shared_weights=True, backend="reference")
    run = fast.GENERAL_FORMULATIONS["fused"].run
    for batch in (6, 9):
        args = _inputs(tp.descriptor, batch, True, seed=batch)
        assert fused.applies(tp.descriptor, *args)
        got = _with_grads(lambda a, b, c: run(tp.descriptor, a, b, c), *args)
        for a, b in zip(got, _with_grads(ref, *args), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)
    names = [name for name, _ in calls]
    assert (
        "product" in names
        and ("adjoints", (tp.descriptor, False, False, threads, (True, True, True))) in calls
    )
    assert "second_order" in names  # the double backward, recording no graph: one kernel
    assert not any(name == "adjoints" and sum(key[4]) == 2 for name, key in calls)
    if threads > 1:  # the term-by-term kernels below compile for seconds each: at one thread only
        return
    # a double backward that records a graph runs the product and adjoints term by term (trilinear), and
    # the third derivatives are right too
    calls.clear()
    args = _inputs(tp.descriptor, 7, True, seed=7)
    for a, b in zip(
        _third(lambda a, b, c: run(tp.descriptor, a, b, c), *args), _third(ref, *args), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert any(name == "adjoints" and sum(key[4]) == 2 for name, key in calls)
    assert any(name != "transposed" and key[1] for name, key in calls)  # the weighted paths alone (gg_w)


@compiles
def test_fused_float32_gemms_on_onednn(monkeypatch, one_thread) -> None:
    """In float32 with oneDNN's GEMMs inside the compiled kernels: output, gradients and double gradients
    equal the float64 reference's to float32 precision, and the kernels' products ran on oneDNN."""
    if not torch.backends.mkldnn.is_available():
        pytest.skip("torch built without oneDNN")
    monkeypatch.setenv(inductor.ENV, "1")
    monkeypatch.setenv(gemm.ENV, "onednn")
    monkeypatch.setattr(gemm, "MIN_FLOPS", 0)
    onednn = []
    original = gemm._onednn
    monkeypatch.setattr(gemm, "_onednn", lambda a, b: onednn.append(a.shape) or original(a, b))
    tp = TensorProduct(*FUSED_PATHS, shared_weights=True)
    ref = TensorProduct(*FUSED_PATHS, shared_weights=True, backend="reference")
    args = _inputs(tp.descriptor, 7, True, seed=1)
    args32 = [t.detach().float().requires_grad_() for t in args]
    got = _with_grads(lambda a, b, c: fast.GENERAL_FORMULATIONS["fused"].run(tp.descriptor, a, b, c), *args32)
    for a, b in zip(got, _with_grads(ref, *args), strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-4 * b.abs().max().item())
    assert onednn


def test_fused_when_it_runs(monkeypatch, one_thread) -> None:
    """Auto: at most ``MAX_THREADS[dtype]`` threads and at least ``MIN_MESSAGES`` elements; ``0`` never;
    not for per-sample weights, a single sample, nor inside a trace; the choice offers it where it runs."""
    desc = TensorProduct(*FUSED_PATHS).descriptor
    x, y, w = _inputs(desc, 8, True)
    monkeypatch.setenv(inductor.ENV, "auto")
    assert not fused.applies(desc, x, y, w)
    monkeypatch.setattr(inductor, "MIN_MESSAGES", 1)
    assert fused.applies(desc, x, y, w)
    torch.set_num_threads(fused.MAX_THREADS[x.dtype])
    assert fused.applies(desc, x, y, w)
    torch.set_num_threads(fused.MAX_THREADS[x.dtype] + 1)  # single-threaded loops: the ATen paths
    assert not fused.applies(desc, x, y, w)
    x32, y32, w32 = (t.detach().float() for t in (x, y, w))
    torch.set_num_threads(fused.MAX_THREADS[torch.float32])
    assert fused.applies(desc, x32, y32, w32)
    torch.set_num_threads(1)
    assert not fused.applies(desc, x, y, _inputs(desc, 8, False)[2])  # per-sample weights
    assert not fused.applies(desc, x[:1], y[:1], w)
    monkeypatch.setenv(inductor.ENV, "0")
    assert not fused.applies(desc, x, y, w)
    monkeypatch.setenv(inductor.ENV, "1")
    assert fused.applies(desc, x, y, w)
    # in a trace (even forced) it is not offered: the traced graph is ATen ops, equal to the reference
    monkeypatch.setenv(formulation.FORCE_ENV, "fused")
    monkeypatch.setattr(fused, "_run", lambda *a, **k: pytest.fail("compiled kernels in a trace"))
    step = lambda a, b, c: fast.tensor_product_general(desc, a, b, c)  # noqa: E731
    traced = make_fx(step, tracing_mode="symbolic", _allow_non_fake_inputs=True)(
        x.detach(), y.detach(), w.detach()
    )
    ref = TensorProduct(*FUSED_PATHS, shared_weights=True, backend="reference")
    a, b, c = (t.detach() for t in _inputs(desc, 5, True, seed=3))
    torch.testing.assert_close(traced(a, b, c), ref(a, b, c), rtol=1e-11, atol=1e-11)


def test_fused_compile_failure_falls_back(monkeypatch, caplog, one_thread) -> None:
    """A compiler that fails: one warning, the ``sides`` result, and no second attempt for that key."""
    monkeypatch.setenv(inductor.ENV, "1")
    monkeypatch.setattr(fused, "_FAILED", set())
    desc = TensorProduct(*FUSED_PATHS).descriptor
    x, y, w = _inputs(desc, 5, True)

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(fused, "_run", broken)
    with caplog.at_level(logging.WARNING, logger=fused.__name__):
        got = fast.GENERAL_FORMULATIONS["fused"].run(desc, x, y, w)
    assert "no C++ compiler" in caplog.text and not fused.applies(desc, x, y, w)
    ref = TensorProduct(*FUSED_PATHS, shared_weights=True, backend="reference")
    torch.testing.assert_close(got, ref(x, y, w), rtol=1e-11, atol=1e-11)


def test_cache_entry_answers_a_call_without_its_compiled_candidate(fresh_choices, monkeypatch) -> None:
    """An entry timed with ``fused`` offered answers a later call where it is not (a small batch), with
    the fastest of that call's candidates, and is not tuned again."""
    desc = _desc()
    x, _, w = _inputs(desc, 8, True)
    monkeypatch.setenv(inductor.ENV, "1")
    monkeypatch.setattr(
        formulation,
        "time_candidates",
        lambda cands, *a, **k: {n: (0.5 if n == "fused" else 1.0 + len(n)) for n in cands},
    )
    assert (
        formulation.choose("general", fast.GENERAL_FORMULATIONS, desc, x.detach(), w.detach()).name == "fused"
    )
    monkeypatch.setenv(inductor.ENV, "0")
    monkeypatch.setattr(formulation, "_CHOSEN", {})
    monkeypatch.setattr(formulation, "time_candidates", lambda *a, **k: pytest.fail("tuned again"))
    chosen = formulation.choose("general", fast.GENERAL_FORMULATIONS, desc, x.detach(), w.detach())
    assert chosen.name == min(OFFERED, key=len)
