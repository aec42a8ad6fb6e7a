"""Fused Triton grid contraction: to-grid GEMMs, pointwise product and from-grid GEMM in one kernel.

One program owns one batch row ``b``, a block of ``BLOCK_C`` channels and a block of ``BLOCK_O`` output
coefficients. It walks the grid in chunks of ``BLOCK_G`` points: for each chunk it forms the grid values
of every operand (``[BLOCK_C, K_i] @ [K_i, BLOCK_G]`` on the tensor cores), applies ``φ`` and the product
in registers, and accumulates ``[BLOCK_C, BLOCK_G] @ [BLOCK_G, BLOCK_O]`` into the output block. Grid
values never reach global memory.

Backward and double backward are again grid contractions (the op is linear in every operand but the
first, and ``φ`` has closed-form derivatives): the gradient with respect to ``x_j`` is the contraction of
the other operands and the output gradient (to grid through ``Wᵀ``), projected through ``A_jᵀ``. So
the op ``mlip::grid_contract`` differentiates through itself; only a contraction that would need more than
:data:`MAX_OPERANDS` operands (third derivatives of an activation) falls back to the torch definition.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from mlip.kernels import _library
from mlip.kernels._library import kernel_op
from mlip.kernels.grid_contract.reference import Pointwise, contract

MAX_OPERANDS = 3
_KIND_CODES = {"power": 0, "silu": 1}


@triton.jit
def _grid_contract_kernel(
    out_ptr,
    x0_ptr,
    x1_ptr,
    x2_ptr,
    a0_ptr,
    a1_ptr,
    a2_ptr,
    w_ptr,
    C,
    G,
    O,
    K0,
    K1,
    K2,
    scale,
    s_ob,
    s_oo,
    s_oc,
    s0b,
    s0k,
    s0c,
    s1b,
    s1k,
    s1c,
    s2b,
    s2k,
    s2c,
    sa0k,
    sa0g,
    sa1k,
    sa1g,
    sa2k,
    sa2g,
    swg,
    swo,
    N_OPS: tl.constexpr,
    KIND: tl.constexpr,
    ORDER: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_G: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_O: tl.constexpr,
    PRECISION: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    rc = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    ro = tl.program_id(2) * BLOCK_O + tl.arange(0, BLOCK_O)
    rk = tl.arange(0, BLOCK_K)
    dtype = out_ptr.dtype.element_ty
    acc = tl.zeros([BLOCK_C, BLOCK_O], dtype=dtype)
    for g0 in range(0, G, BLOCK_G):
        rg = g0 + tl.arange(0, BLOCK_G)
        h = tl.zeros([BLOCK_C, BLOCK_G], dtype=dtype)
        for i in tl.static_range(N_OPS):
            if i == 0:
                x_ptr, a_ptr, K, sb, sk, sc, sak, sag = x0_ptr, a0_ptr, K0, s0b, s0k, s0c, sa0k, sa0g
            elif i == 1:
                x_ptr, a_ptr, K, sb, sk, sc, sak, sag = x1_ptr, a1_ptr, K1, s1b, s1k, s1c, sa1k, sa1g
            else:
                x_ptr, a_ptr, K, sb, sk, sc, sak, sag = x2_ptr, a2_ptr, K2, s2b, s2k, s2c, sa2k, sa2g
            f = tl.zeros([BLOCK_C, BLOCK_G], dtype=dtype)
            for k0 in range(0, K, BLOCK_K):
                kk = k0 + rk
                x = tl.load(
                    x_ptr + b * sb + kk[None, :] * sk + rc[:, None] * sc,
                    mask=(rc[:, None] < C) & (kk[None, :] < K),
                    other=0.0,
                )
                a = tl.load(
                    a_ptr + kk[:, None] * sak + rg[None, :] * sag,
                    mask=(kk[:, None] < K) & (rg[None, :] < G),
                    other=0.0,
                )
                f = tl.dot(x, a, acc=f, input_precision=PRECISION, out_dtype=dtype)
            if i == 0:
                if KIND == 0:
                    if ORDER == 0:
                        h = f * 0.0 + 1.0
                    else:
                        h = f
                        for _ in tl.static_range(ORDER - 1):
                            h = h * f
                else:
                    s = 1.0 / (1.0 + tl.exp(-f))
                    if ORDER == 0:
                        h = f * s
                    elif ORDER == 1:
                        h = s * (1.0 + f * (1.0 - s))
                    else:
                        h = s * (1.0 - s) * (2.0 + f * (1.0 - 2.0 * s))
            else:
                h = h * f
        w = tl.load(
            w_ptr + rg[:, None] * swg + ro[None, :] * swo,
            mask=(rg[:, None] < G) & (ro[None, :] < O),
            other=0.0,
        )
        acc = tl.dot(h, w, acc=acc, input_precision=PRECISION, out_dtype=dtype)
    tl.store(
        out_ptr + b * s_ob + ro[None, :] * s_oo + rc[:, None] * s_oc,
        acc * scale,
        mask=(rc[:, None] < C) & (ro[None, :] < O),
    )


def _next_pow2(n: int, low: int = 16, high: int | None = None) -> int:
    p = max(low, triton.next_power_of_2(n))
    return p if high is None else min(p, high)


def _blocks(C: int, G: int, O: int, Ks: Sequence[int]) -> tuple[int, int, int, int, int]:
    """Block sizes ``(C, O, G, K)`` and warps. Each output block recomputes the grid values, so ``BLOCK_O``
    minimises (output blocks x to-grid work + padded from-grid work), capped at 256 for registers."""
    block_k = 16 if max(Ks) <= 16 else 32
    block_g = 32 if G <= 64 else 64
    to_grid_work = sum(triton.cdiv(K, block_k) * block_k for K in Ks)

    def cost(block_o: int) -> int:
        n_blocks = triton.cdiv(O, block_o)
        return n_blocks * (to_grid_work + block_o)

    block_o = min((b for b in (16, 32, 64, 128, 256) if b <= max(16, triton.next_power_of_2(O))), key=cost)
    block_c = _next_pow2(C, high=64)
    return block_c, block_o, block_g, block_k, 8 if block_c * block_o >= 8192 else 4


def _kernel():
    """The kernel, interpreted when ``TRITON_INTERPRET=1`` was set after this module was imported."""
    if triton.knobs.runtime.interpret and isinstance(_grid_contract_kernel, triton.runtime.JITFunction):
        from triton.runtime.interpreter import InterpretedFunction

        return InterpretedFunction(_grid_contract_kernel.fn)
    return _grid_contract_kernel


def launch(
    operands: Sequence[torch.Tensor],
    to_grid: Sequence[torch.Tensor],
    from_grid: torch.Tensor,
    pointwise: Pointwise,
) -> torch.Tensor:
    """Run the fused kernel once (no autograd): ``[B, O, C]`` with ``C`` the widest operand's channels.

    Operands ``[B, K_i, C_i]`` (any strides, ``C_i ∈ {1, C}``) and matrices (any strides) must share the
    dtype (float32 or float64) and a CUDA device, or the CPU under ``TRITON_INTERPRET=1``.
    """
    n = len(operands)
    if not 1 <= n <= MAX_OPERANDS or len(to_grid) != n:
        raise ValueError(f"1..{MAX_OPERANDS} operands with one to-grid matrix each, got {n}/{len(to_grid)}")
    x0 = operands[0]
    if x0.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"the Triton grid kernel computes in float32 or float64, got {x0.dtype}")
    B, C = x0.shape[0], max(x.shape[2] for x in operands)
    G, O = from_grid.shape
    for x, a in zip(operands, to_grid, strict=True):
        if x.dim() != 3 or x.shape[0] != B or x.shape[1] != a.shape[0] or x.shape[2] not in (1, C):
            raise ValueError(f"operand {tuple(x.shape)} does not fit to-grid matrix {tuple(a.shape)}")
        if a.shape[1] != G:
            raise ValueError(f"to-grid matrix {tuple(a.shape)} does not match {G} grid points")
        if x.dtype != x0.dtype or a.dtype != x0.dtype or x.device != x0.device or a.device != x0.device:
            raise TypeError("operands and matrices must share dtype and device")
    if from_grid.dtype != x0.dtype or from_grid.device != x0.device:
        raise TypeError("from-grid matrix must share the operands' dtype and device")
    out = torch.empty(B, O, C, dtype=x0.dtype, device=x0.device)
    if out.numel() == 0:
        return out
    xs, mats = list(operands), list(to_grid)
    xs += [xs[0]] * (MAX_OPERANDS - n)
    mats += [mats[0]] * (MAX_OPERANDS - n)
    x_strides = [(x.stride(0), x.stride(1), x.stride(2) if x.shape[2] == C else 0) for x in xs]
    if x0.dtype == torch.float64:
        precision = "ieee"
    else:
        precision = "tf32" if torch.backends.cuda.matmul.allow_tf32 else "tf32x3"
    block_c, block_o, block_g, block_k, num_warps = _blocks(C, G, O, [x.shape[1] for x in operands])
    grid = (B, triton.cdiv(C, block_c), triton.cdiv(O, block_o))
    _library.launch(
        _kernel(),
        grid,
        out,
        *xs,
        *mats,
        from_grid,
        C,
        G,
        O,
        *(x.shape[1] for x in xs),
        float(pointwise.scale),
        *out.stride(),
        *(s for strides in x_strides for s in strides),
        *(s for a in mats for s in a.stride()),
        *from_grid.stride(),
        N_OPS=n,
        KIND=_KIND_CODES[pointwise.kind],
        ORDER=pointwise.order,
        BLOCK_C=block_c,
        BLOCK_G=block_g,
        BLOCK_K=block_k,
        BLOCK_O=block_o,
        PRECISION=precision,
        num_warps=num_warps,
    )
    return out


def grid_contract(
    operands: Sequence[torch.Tensor],
    to_grid: Sequence[torch.Tensor],
    from_grid: torch.Tensor,
    pointwise: Pointwise,
) -> torch.Tensor:
    """Differentiable fused contraction (forward, backward and double backward all fused)."""
    if len(operands) > MAX_OPERANDS:
        return contract(operands, to_grid, from_grid, pointwise)
    kind, order, scale = pointwise.kind, pointwise.order, float(pointwise.scale)
    return grid_contract_op(list(operands), list(to_grid), from_grid, kind, order, scale)


@kernel_op("mlip::grid_contract")
def grid_contract_op(
    operands: list[torch.Tensor],
    to_grid: list[torch.Tensor],
    from_grid: torch.Tensor,
    kind: str,
    order: int,
    scale: float,
) -> torch.Tensor:
    """:func:`launch` as a custom op (``Pointwise(kind, order, scale)``); differentiable in the operands,
    the matrices are constants."""
    return launch(operands, to_grid, from_grid, Pointwise(kind, order, scale))


def _operand_gradient(
    j: int,
    operands: Sequence[torch.Tensor],
    to_grid: Sequence[torch.Tensor],
    from_grid: torch.Tensor,
    pointwise: Pointwise,
    grad: torch.Tensor,
) -> torch.Tensor:
    """``∂L/∂x_j``: contraction of the other operands and ``grad`` (to grid by ``Wᵀ``), out by ``A_jᵀ``."""
    x = operands[j]
    if j == 0 and pointwise.is_constant:
        return torch.zeros_like(x)
    others = [i for i in range(len(operands)) if i != j]
    if j == 0 and not pointwise.is_linear:
        order, new_pointwise = [0, *others], pointwise.derivative()
    elif j == 0:  # φ(F) = s F: the first of the other operands (or grad) carries the scale
        order, new_pointwise = others, Pointwise("power", 1, pointwise.scale)
    else:
        order, new_pointwise = others, pointwise
    new_operands = [operands[i] for i in order] + [grad]
    new_to_grid = [to_grid[i] for i in order] + [from_grid.T]
    g = grid_contract(new_operands, new_to_grid, to_grid[j].T, new_pointwise)
    return g.sum(dim=2, keepdim=True) if x.shape[2] == 1 and g.shape[2] != 1 else g


def _setup_context(ctx, inputs, output) -> None:  # noqa: ANN001
    operands, to_grid, from_grid, kind, order, scale = inputs
    ctx.save_for_backward(*operands, *to_grid, from_grid)
    ctx.pointwise, ctx.n = Pointwise(kind, order, scale), len(operands)


def _backward(ctx, grad):  # noqa: ANN001
    saved, n = ctx.saved_tensors, ctx.n
    operands, to_grid, from_grid = saved[:n], saved[n : 2 * n], saved[2 * n]
    grads = [
        _operand_gradient(j, operands, to_grid, from_grid, ctx.pointwise, grad)
        if ctx.needs_input_grad[0][j]
        else None
        for j in range(n)
    ]
    return grads, [None] * n, None, None, None, None


grid_contract_op.register_autograd(_backward, setup_context=_setup_context)
