"""Pure-torch reference of the tensor product: one einsum per instruction, gradients from autograd.

This is the definition the fast paths are tested against; it handles every descriptor (any
multiplicities, ``uvu`` and ``uvw``, float32/float64) and favours clarity over speed.
"""

from __future__ import annotations

import torch

from mlip.kernels.tensor_product.descriptor import TPDescriptor, wigner_block


def tensor_product_reference(
    desc: TPDescriptor, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None
) -> torch.Tensor:
    """``out[z] = TP(x[z], y[z], weight[z])``.

    Shapes: ``x [B, dim1]``, ``y [B, dim2]``, ``weight [B, weight_numel]`` (per sample) or
    ``[weight_numel]`` (shared) or ``None`` when no path is weighted; returns ``[B, dim_out]``.
    """
    batch = x.shape[0]
    in1, in2, out = desc.irreps_in1, desc.irreps_in2, desc.irreps_out
    s1, s2 = in1.slices(), in2.slices()
    blocks: list[torch.Tensor | None] = [None] * len(out)
    for ins in desc.instructions:
        (mul1, ir1), (mul2, ir2), (mulo, iro) = in1[ins.i_in1], in2[ins.i_in2], out[ins.i_out]
        x1 = x[:, s1[ins.i_in1]].reshape(batch, mul1, ir1.dim)
        x2 = y[:, s2[ins.i_in2]].reshape(batch, mul2, ir2.dim)
        cg = wigner_block(ins, desc, x.dtype, x.device)
        if ins.has_weight:
            w = weight[..., ins.weight_offset : ins.weight_offset + ins.weight_numel]
            w = w.reshape(*w.shape[:-1], *ins.path_shape)
            lhs = "zuv" if w.dim() == len(ins.path_shape) + 1 else "uv"
            if ins.mode == "uvu":
                value = torch.einsum(f"zui,zvj,ijk,{lhs}->zuk", x1, x2, cg, w)
            else:
                value = torch.einsum(f"zui,zvj,ijk,{lhs}w->zwk", x1, x2, cg, w)
        else:
            value = torch.einsum("zui,zvj,ijk->zuk", x1, x2, cg)
        value = value.reshape(batch, mulo * iro.dim)
        previous = blocks[ins.i_out]
        blocks[ins.i_out] = value if previous is None else previous + value
    parts = [b if b is not None else x.new_zeros(batch, mi.dim) for b, mi in zip(blocks, out, strict=True)]
    return torch.cat(parts, dim=1) if parts else x.new_zeros(batch, 0)
