"""TensorProduct against e3nn (every standard config), gradients, double gradients, equivariance.

Triton runs under ``TRITON_INTERPRET=1`` on a CPU-only machine (tiny shapes) and compiled on CUDA."""

import pytest
import torch

from mlip.kernels import TensorProduct
from mlip.kernels.tensor_product.configs import CHANNELWISE, CONFIGS, config_instructions, make_tp
from mlip.testing import assert_equivariant

o3 = pytest.importorskip("e3nn.o3")
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
GPU = DEVICE.type == "cuda"
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
# small config with several paths into one output block, an unweighted path and two multiplicities
SMALL = ("3x0e+3x1o+2x1e", "0e+1o", "3x1o+3x0e+2x1e+2x0o",
         [(0, 1, 0, "uvu", False), (1, 0, 0, "uvu", True), (1, 1, 1, "uvu", True),
          (0, 0, 1, "uvu", True), (2, 1, 3, "uvu", True), (2, 0, 2, "uvu", True)])  # fmt: skip
# not channelwise: uvw and uvu paths into one block, uvu with mul(in2) > 1, an unweighted uvu path
GENERAL = ("3x0e+2x1o", "2x0e+3x1o", "3x1o+3x0e+2x0e+4x1e",
           [(0, 1, 0, "uvu", True), (0, 0, 1, "uvu", False), (1, 1, 2, "uvw", True),
            (1, 1, 3, "uvw", True), (1, 0, 0, "uvw", True), (0, 1, 0, "uvw", True)])  # fmt: skip
_E3NN: dict = {}


def e3nn_tp(name: str, dtype: torch.dtype):
    """e3nn's module for a config, built in ``dtype`` (its Wigner tables are made in the default dtype)."""
    if (name, dtype) not in _E3NN:
        in1, in2, out, instructions = config_instructions(name)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            _E3NN[name, dtype] = o3.TensorProduct(in1, in2, str(out), instructions, shared_weights=False)
        finally:
            torch.set_default_dtype(previous)
    return _E3NN[name, dtype].to(DEVICE)


def inputs(tp: TensorProduct, batch: int, dtype: torch.dtype, seed: int = 0, grad: bool = False):
    g = torch.Generator().manual_seed(seed)
    shapes = [(batch, tp.irreps_in1.dim), (batch, tp.irreps_in2.dim), (batch, tp.weight_numel)]
    return [torch.randn(s, generator=g, dtype=dtype).to(DEVICE).requires_grad_(grad) for s in shapes]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max().detach() / b.abs().max().detach().clamp_min(1e-30))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_e3nn(name: str, dtype: torch.dtype) -> None:
    expected_module = e3nn_tp(name, dtype)
    backends = ["reference", "torch"] + (["triton"] if name in CHANNELWISE else [])
    for backend in backends:
        tp = make_tp(name, backend)
        assert tp.weight_numel == expected_module.weight_numel
        batch = 3 if backend == "triton" and not GPU else 7
        x, y, w = inputs(tp, batch, dtype)
        expected = expected_module(x, y, w)
        assert rel_err(tp(x, y, w), expected) < TOL[dtype], backend


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_gradients_match_reference(backend: str) -> None:
    """First and second derivatives of the fast backends equal the reference's (float64, mace-medium)."""
    fast, ref = make_tp("mace-medium", backend), make_tp("mace-medium", "reference")
    x, y, w = inputs(fast, 3, torch.float64, grad=True)
    outs = []
    for tp in (fast, ref):
        out = tp(x, y, w)
        grads = torch.autograd.grad((out * out.detach().cos()).sum(), (x, y, w), create_graph=True)
        second = torch.autograd.grad(sum((g.sin()).sum() for g in grads), (x, y, w))
        outs.append([out, *grads, *second])
    for a, b in zip(*outs, strict=True):
        assert rel_err(a, b) < 1e-10


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_gradcheck(backend: str) -> None:
    tp = TensorProduct(*SMALL, backend=backend)
    args = tuple(inputs(tp, 2, torch.float64, grad=True))
    fast_mode = backend == "triton" and not GPU  # the interpreter is slow: random projections only
    assert torch.autograd.gradcheck(tp, args, fast_mode=fast_mode)
    assert torch.autograd.gradgradcheck(tp, args, fast_mode=fast_mode)


@pytest.mark.parametrize("backend", ["reference", "torch", "triton"])
def test_small_matches_e3nn_and_shared_weights(backend: str) -> None:
    """Unweighted paths, several paths per output block, mixed multiplicities; internal weights."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn builds its Wigner tables in the default dtype
    try:
        expected = o3.TensorProduct(*SMALL[:3], SMALL[3], shared_weights=True, internal_weights=True)
    finally:
        torch.set_default_dtype(previous)
    expected = expected.to(DEVICE)
    tp = TensorProduct(*SMALL, shared_weights=True, internal_weights=True, backend=backend)
    tp = tp.to(DEVICE, torch.float64)
    tp.load_state_dict({"weight": expected.weight.detach()})
    assert list(tp.state_dict()) == ["weight"]
    x, y, _ = inputs(tp, 5, torch.float64)
    assert rel_err(tp(x, y), expected(x, y)) < 1e-12
    external = TensorProduct(*SMALL, shared_weights=True, backend=backend)
    assert rel_err(external(x, y, expected.weight.detach()), expected(x, y)) < 1e-12


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_equivariant(backend: str) -> None:
    tp = make_tp("nequip-water", backend)
    _, _, w = inputs(tp, 1, torch.float64)
    split = tp.irreps_in1.dim

    def fn(z: torch.Tensor) -> torch.Tensor:
        return tp(z[:, :split].to(DEVICE), z[:, split:].to(DEVICE), w.expand(z.shape[0], -1)).cpu()

    assert_equivariant(fn, tp.irreps_in1 + tp.irreps_in2, tp.irreps_out, batch=2)


@pytest.mark.parametrize("backend", ["reference", "torch", "triton"])
def test_edge_cases(backend: str) -> None:
    tp = TensorProduct(*SMALL, backend=backend)
    x, y, w = inputs(tp, 4, torch.float64)
    expected = TensorProduct(*SMALL, backend="reference")(x, y, w)
    strided = [t.T.contiguous().T for t in (x, y, w)]  # same values, column-major storage
    assert not strided[0].is_contiguous()
    assert rel_err(tp(*strided), expected) < 1e-12
    empty = tp(x[:0], y[:0], w[:0])
    assert empty.shape == (0, tp.irreps_out.dim)
    with pytest.raises(TypeError, match="float32 or float64"):
        tp(x.bfloat16(), y.bfloat16(), w.bfloat16())
    with pytest.raises(ValueError, match="weight must have shape"):
        tp(x, y, w[:, 1:])


@pytest.mark.parametrize("shared", [False, True])
def test_general_descriptor(shared: bool) -> None:
    """uvw and uvu with mul2 > 1 on the fast torch path: e3nn's output, gradcheck and gradgradcheck."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        expected = o3.TensorProduct(*GENERAL, shared_weights=shared, internal_weights=False).to(DEVICE)
    finally:
        torch.set_default_dtype(previous)
    tp = TensorProduct(*GENERAL, shared_weights=shared, backend="torch")
    assert not tp.descriptor.channelwise
    x, y, w = inputs(tp, 4, torch.float64, grad=True)
    w = w[0].detach().requires_grad_() if shared else w
    assert rel_err(tp(x, y, w), expected(x, y, w)) < 1e-12
    args = (x[:1], y[:1], w if shared else w[:1])
    assert torch.autograd.gradcheck(tp, args)
    assert torch.autograd.gradgradcheck(tp, args)


def test_auto_backend_and_triton_rejects_uvw() -> None:
    """``triton`` raises a clear error for uvw; ``auto`` runs every descriptor (fast torch for uvw)."""
    with pytest.raises(ValueError, match="channelwise descriptors only"):
        make_tp("uvw", "triton")(*inputs(make_tp("uvw"), 2, torch.float32))
    for name in ("uvw", "nequip-water"):  # auto: fast torch on CPU; Triton on CUDA for nequip-water only
        tp, ref = make_tp(name), make_tp(name, "reference")
        x, y, w = inputs(tp, 3, torch.float32)
        assert rel_err(tp(x, y, w), ref(x, y, w)) < 1e-5


# channelwise, paths of one output dimension with weights that are not consecutive (a run is cut at each
# gap), an unweighted path and three paths into one block
INTERLEAVED = ("4x0e+4x1o", "0e+1o+2e", "4x0e+4x1o+4x1e+4x0e",
               [(0, 0, 0, "uvu", True), (1, 1, 2, "uvu", True), (1, 1, 3, "uvu", True),
                (0, 1, 1, "uvu", False), (1, 2, 1, "uvu", True), (1, 0, 1, "uvu", True)])  # fmt: skip


@pytest.mark.parametrize("shared", [False, True])
def test_channelwise_runs_match_reference(shared: bool) -> None:
    """The fast channelwise path cuts the paths into runs of one output dimension and consecutive weights
    (one broadcast multiply each), small runs sharing one bmm: the product and the convolution equal the
    reference to second order for per-sample and shared weights (float64)."""
    from mlip.kernels import tp_conv
    from mlip.kernels.tensor_product import torch_fast as fast

    tp = TensorProduct(*INTERLEAVED, shared_weights=shared, backend="torch")
    ref = TensorProduct(*INTERLEAVED, shared_weights=shared, backend="reference")
    (group,) = fast.plan(tp.descriptor)
    assert [(r.dim, r.paths, r.weight_start) for r in group.runs] == [
        (1, (0,), 0), (1, (2,), 8), (3, (1,), 4), (3, (4, 5), 12), (3, (3,), -1)
    ]  # fmt: skip
    assert group.bmms == (5,)  # 4 channels: each run alone is under SMALL_BMM multiply-adds
    assert fast.plan(make_tp("mace-medium").descriptor)[0].bmms == (1, 1, 1)  # 128 channels: one each
    x, y, w = inputs(tp, 7, torch.float64, grad=True)
    w = w[0].detach().requires_grad_() if shared else w
    src, dst = torch.randint(0, 7, (2, 7), generator=torch.Generator().manual_seed(1))
    results = []
    for module in (tp, ref):
        plain = module(x, y, w)
        conv = tp_conv(x, y, w, src.to(DEVICE), dst.to(DEVICE), 7, module)
        loss = (plain * plain.detach().cos()).sum() + (conv * conv.detach().sin()).sum()
        grads = torch.autograd.grad(loss, (x, y, w), create_graph=True)
        second = torch.autograd.grad(sum(g.sin().sum() for g in grads), (x, y, w))
        results.append([plain, conv, *grads, *second])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
