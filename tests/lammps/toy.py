"""A tiny two-layer many-body potential exported as a `.pt2` package per /coord contract v1.

Only for the LAMMPS plugin tests: it keeps them independent of the real `mlip compile` and cheap.
"""

from __future__ import annotations

import torch

SPECIES = (1, 6, 8)
R_MAX = 3.0
NUM_LAYERS = 2


def _switch(d: torch.Tensor) -> torch.Tensor:
    x = (d / R_MAX).clamp(0.0, 1.0)
    return 1.0 - x * x * x * (10.0 - 15.0 * x + 6.0 * x * x)


class ToyStep(torch.nn.Module):
    """Energy, per-atom energies, forces and per-atom virial of a two-layer scalar message passing
    model: ``h1_i = a_si + sum_j w(r) b_sj exp(-r)``, ``e_i = e0_si + k h1_i^2 + sum_j w(r) tanh(h1_j)
    (c_si + r) + sum_j w(r) exp(2 (1 - r)) / 2`` (the last a repulsion); ``e_i`` reaches atoms
    ``2 R_MAX`` away, like a real two-layer model."""

    def __init__(self, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        kw = {"dtype": dtype}
        self.register_buffer("a", torch.tensor([0.3, -0.2, 0.5], **kw))
        self.register_buffer("b", torch.tensor([0.7, 1.1, -0.4], **kw))
        self.register_buffer("c", torch.tensor([-0.05, 0.08, 0.02], **kw))
        self.register_buffer("e0", torch.tensor([-1.0, -3.0, -2.0], **kw))

    def atom_energies(self, vectors, species, src, dst, n):
        d = vectors.norm(dim=1)
        w = _switch(d)
        h1 = self.a[species].index_add(0, dst, w * self.b[species[src]] * torch.exp(-d))
        msg = w * (torch.tanh(h1[src]) * (self.c[species[dst]] + 0.02 * d) + 0.5 * torch.exp(2.0 * (1.0 - d)))
        return self.e0[species] + 0.1 * h1 * h1 + torch.zeros_like(h1).index_add(0, dst, msg)

    def forward(self, positions, species, edge_index, edge_shifts, energy_mask):
        src, dst = edge_index[0], edge_index[1]
        vectors = (positions[dst] - positions[src] + edge_shifts).detach().requires_grad_(True)
        e = self.atom_energies(vectors, species, src, dst, positions.shape[0])
        energy = (e * energy_mask).sum()
        (grad,) = torch.autograd.grad(energy, vectors)
        forces = torch.zeros_like(positions).index_add(0, src, grad).index_add(0, dst, -grad)
        w = -vectors.unsqueeze(2) * grad.unsqueeze(1)
        w = 0.25 * (w + w.transpose(1, 2))
        virial = positions.new_zeros(positions.shape[0], 3, 3).index_add(0, src, w).index_add(0, dst, w)
        return energy, e, forces, virial


def example_inputs(dtype: torch.dtype = torch.float64, n: int = 6):
    """Inputs of the contract's order for ``n`` atoms on a line (every neighbouring pair an edge)."""
    positions = torch.arange(3 * n, dtype=dtype).reshape(n, 3) * 0.4
    species = torch.arange(n) % len(SPECIES)
    src = torch.arange(n - 1)
    edge_index = torch.stack([torch.cat([src, src + 1]), torch.cat([src + 1, src])])
    shifts = torch.zeros(edge_index.shape[1], 3, dtype=dtype)
    return positions, species, edge_index, shifts, torch.ones(n, dtype=dtype)


def export(path, dtype: torch.dtype = torch.float64, **metadata: str) -> str:
    """Write the toy step as an AOTInductor package at ``path`` (about 30 s on 2 cores); ``metadata``
    overrides the contract's fields (to make packages a consumer must refuse)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    step = ToyStep(dtype)
    args = example_inputs(dtype)
    gm = make_fx(
        step, tracing_mode="symbolic", _allow_non_fake_inputs=True, _error_on_data_dependent_ops=True
    )(*args)
    n, e = torch.export.Dim("n", min=1), torch.export.Dim("e", min=1)
    shapes = ({0: n}, {0: n}, {1: e}, {0: e}, {0: n})
    ep = torch.export.export(gm, args, dynamic_shapes=shapes, strict=False)
    meta = {
        "mlip_format": "1",
        "species": ",".join(str(z) for z in SPECIES),
        "r_max": str(R_MAX),
        "num_layers": str(NUM_LAYERS),
        "dtype": str(dtype).removeprefix("torch."),
        "device": "cpu",
        "torch_version": torch.__version__,
        "mlip_version": "toy",
        "model_sha256": "0" * 64,
        "model": "toy",
    } | metadata
    return torch._inductor.aoti_compile_and_package(
        ep, package_path=str(path), inductor_configs={"aot_inductor.metadata": meta}
    )
