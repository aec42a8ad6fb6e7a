"""The energy+forces+virial step of a model as one sync-free graph: the function an AOTInductor package
holds (the ``.pt2`` contract, v1).

Inputs (float = the model dtype): ``positions [N, 3]`` Å, ``species [N]`` int64 species indices
(``0..S-1``, checked by the caller), ``edge_index [2, E]`` int64 (row 0 source ``j``, row 1 destination
``i``), ``edge_shifts [E, 3]`` Å Cartesian (``r_e = positions[i] - positions[j] + edge_shifts[e]``),
``energy_mask [N]`` (1 where an atom's energy counts). Outputs: ``energy []`` eV (masked sum),
``atom_energies [N]`` eV, ``forces [N, 3]`` eV/Å (``-∂energy/∂positions``), ``atom_virial [N, 3, 3]`` eV
(each edge's symmetrised ``-r_e ⊗ ∂energy/∂r_e``, half to each end; their sum is the virial ``W`` and
ASE's stress is ``-W / V``).

:func:`export_step` traces it with ``make_fx(tracing_mode="symbolic")`` that errors on any
data-dependent op (a host sync, ``nonzero``, a boolean mask, ...), then ``torch.export`` with dynamic
atom and edge counts: that trace succeeding is the check that the step has no data-dependent shapes.
Edges longer than the model cutoff contribute exactly zero (envelopes vanish there), so callers may pass
a skin list; so do padding edges, an atom to itself with a zero shift (:func:`mlip.data.neighbors.pad_edges`:
a fixed-capacity edge set), whose vector the step moves beyond the cutoff.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from mlip.data import keys as K
from mlip.kernels.blocks import lift_loop_constants

if TYPE_CHECKING:
    from mlip.models.model import EquivariantModel

StepOutput = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class ForceStep(torch.nn.Module):
    """``forward(positions, species, edge_index, edge_shifts, energy_mask)`` -> ``(energy,
    atom_energies, forces, atom_virial)`` of ``model`` (see the module docstring for shapes and units)."""

    def __init__(self, model: EquivariantModel) -> None:
        super().__init__()
        self.model = model
        self.padding_length = 2.0 * float(model.cutoff)

    def forward(
        self,
        positions: torch.Tensor,
        species: torch.Tensor,
        edge_index: torch.Tensor,
        edge_shifts: torch.Tensor,
        energy_mask: torch.Tensor,
    ) -> StepOutput:
        src, dst = edge_index[0], edge_index[1]
        vectors = positions.index_select(0, dst) - positions.index_select(0, src) + edge_shifts
        # padding edges (an atom to itself, zero shift: zero length) are moved beyond the cutoff
        padding = (src == dst) & (edge_shifts == 0).all(dim=1)
        vectors = vectors + torch.nn.functional.pad(padding[:, None] * self.padding_length, (0, 2))
        with torch.enable_grad():
            vectors = vectors.detach().requires_grad_(True)
            atom_energies = self.model.indexed_energies({K.EDGE_INDEX: edge_index}, species, vectors)
            energy = (atom_energies * energy_mask).sum()
            (grad,) = torch.autograd.grad(energy, [vectors], materialize_grads=True)
        # r_e = x_dst - x_src + shift: dE/dx_dst = +g_e, dE/dx_src = -g_e
        forces = torch.zeros_like(positions).index_add(0, src, grad).index_add(0, dst, -grad)
        edge_virial = -vectors.detach()[:, :, None] * grad[:, None, :]
        half = 0.25 * (edge_virial + edge_virial.transpose(1, 2))  # symmetrised, half to each end
        atom_virial = (
            positions.new_zeros(positions.shape[0], 3, 3).index_add(0, src, half).index_add(0, dst, half)
        )
        return energy.detach(), atom_energies.detach(), forces, atom_virial


@contextlib.contextmanager
def traceable(model: EquivariantModel) -> Iterator[EquivariantModel]:
    """``model`` in evaluation mode with its weights frozen: traced with symbolic sizes, the
    memory-bounded chunked inference layers run as traced loops over fixed-size blocks of edges and
    atoms (:mod:`mlip.kernels.blocks`), which need frozen weights; the previous mode and
    ``requires_grad`` flags are restored after."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval().requires_grad_(False)
    try:
        yield model
    finally:
        model.train(was_training)
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def example_inputs(
    model: EquivariantModel, device: torch.device | str = "cpu", num_atoms: int = 5, num_edges: int = 12
) -> tuple[torch.Tensor, ...]:
    """Small random inputs of the step (distinct sizes for N and E, so tracing cannot confuse them)."""
    gen = torch.Generator().manual_seed(0)
    dtype = model.dtype
    positions = 3.0 * torch.rand(num_atoms, 3, generator=gen, dtype=torch.float64)
    species = torch.randint(0, len(model.species), (num_atoms,), generator=gen)
    src = torch.arange(num_edges) % num_atoms
    dst = (src + 1 + torch.arange(num_edges) // num_atoms) % num_atoms
    shifts = torch.zeros(num_edges, 3, dtype=torch.float64)
    mask = torch.ones(num_atoms, dtype=torch.float64)
    out = (positions.to(dtype), species, torch.stack([src, dst]), shifts.to(dtype), mask.to(dtype))
    return tuple(t.to(device) for t in out)


def export_step(model: EquivariantModel, device: torch.device | str = "cpu") -> torch.export.ExportedProgram:
    """The :class:`ForceStep` of ``model`` (in its dtype, on ``device``) as an exported program with
    dynamic ``N >= 1`` atoms and ``E >= 1`` edges; the backward pass is unfolded into the graph.

    Raises whatever the tracer raises for a data-dependent op or a size the code fixes (the message
    names the op and the source line)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    model = model.to(device)
    args = example_inputs(model, device)
    with traceable(model):
        step = ForceStep(model)
        step(*args)  # fills the model's lazily built constant tables outside the trace
        graph = make_fx(
            step, tracing_mode="symbolic", _allow_non_fake_inputs=True, _error_on_data_dependent_ops=True
        )(*args)
    lift_loop_constants(graph)
    atoms, edges = torch.export.Dim("num_atoms", min=1), torch.export.Dim("num_edges", min=1)
    dynamic = ({0: atoms}, {0: atoms}, {1: edges}, {0: edges}, {0: atoms})
    return torch.export.export(graph, args, dynamic_shapes=dynamic, strict=False)
