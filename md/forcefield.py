"""A potential plus its reusable neighbour list: what the integrators call to get forces."""

from __future__ import annotations

import torch

from mlip.compile.model import StepModel
from mlip.data import keys as K
from mlip.data.neighbors import SkinNeighborList, edge_vectors
from mlip.md.state import MDState
from mlip.models.base import Potential


class ForceField:
    """Evaluates a :class:`~mlip.models.base.Potential` on a batched :class:`MDState`.

    The neighbour list is built at ``cutoff + skin`` (Å) and reused until an atom has moved more than
    ``skin / 2`` (or the cell deformed enough); ``neighbors.builds`` counts builds. The potential runs in
    its own dtype; results are stored on the state in float64.

    ``fixed_shape`` hands a compiled step (:class:`~mlip.compile.model.StepModel`: a ``.pt2`` package or
    a CUDA graph) the whole stored list padded to a fixed capacity
    (:meth:`~mlip.data.neighbors.SkinNeighborList.padded`) instead of the pairs within the cutoff: its
    input shapes then stay the same between rebuilds (and across rebuilds until the capacity grows,
    logged as a warning), at the price of computing the skin pairs and the padding, which the step
    weighs zero. Default: the step's own :attr:`~mlip.compile.model.StepModel.fixed_shape` (a CUDA graph,
    a package on CUDA; not a package on the CPU, where it is only slower). An eager model cannot take
    padding edges.
    """

    def __init__(self, potential: Potential, skin: float = 1.0, fixed_shape: bool | None = None) -> None:
        if not isinstance(potential, Potential):
            raise TypeError(f"ForceField needs an mlip Potential, got {type(potential).__name__}")
        compiled = isinstance(potential, StepModel)
        if fixed_shape and not compiled:
            raise ValueError(
                "fixed_shape needs a compiled step (mlip.compile): an eager model cannot take padding"
            )
        self.potential = potential
        self.fixed_shape = (compiled and potential.fixed_shape) if fixed_shape is None else fixed_shape
        self.neighbors = SkinNeighborList(potential.cutoff, skin)
        self._last: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def __call__(self, state: MDState, compute_stress: bool = False) -> MDState:
        """Set ``state.energy`` ``[B]`` (eV), ``state.forces`` ``[N, 3]`` (eV/Å, zero on fixed atoms) and,
        if asked, ``state.stress`` ``[B, 3, 3]`` (eV/Å^3); for a committee ``state.forces_std`` ``[N]``
        (eV/Å). In place; returns the state."""
        lists = self.neighbors.padded if self.fixed_shape else self.neighbors
        edge_index, shifts = lists(state.positions, state.cell, state.pbc, state.batch)
        self._last = None if self.fixed_shape else (state.positions, state.cell, edge_index, shifts)
        num_atoms = state.num_atoms
        ptr = torch.zeros(state.num_systems + 1, dtype=torch.int64, device=state.device)
        ptr[1:] = torch.cumsum(num_atoms, 0)
        data = {
            K.POSITIONS: state.positions,
            K.ATOMIC_NUMBERS: state.atomic_numbers,
            K.CELL: state.cell,
            K.PBC: state.pbc,
            K.BATCH: state.batch,
            K.PTR: ptr,
            K.NUM_ATOMS: num_atoms,
            K.EDGE_INDEX: edge_index,
            K.CELL_SHIFTS: shifts,
        }
        out = self.potential(data, compute_forces=True, compute_stress=compute_stress, create_graph=False)
        forces = out["forces"].detach().to(torch.float64)
        state.forces = torch.where(state.fixed[:, None], torch.zeros_like(forces), forces)
        state.energy = out["energy"].detach().to(torch.float64)
        state.stress = out["stress"].detach().to(torch.float64) if compute_stress else None
        spread = out.get("forces_std")  # a committee (mlip.models.Committee)
        state.forces_std = None if spread is None else spread.detach().to(torch.float64)
        return state

    def neighbours(self, state: MDState) -> tuple[torch.Tensor, torch.Tensor]:
        """``edge_index`` ``[2, E]`` and vectors ``[E, 3]`` (Å) of the pairs closer than the cutoff now
        (those of the last evaluation when the state still holds its position and cell tensors, else
        from the reused neighbour list)."""
        last = self._last
        if last is not None and last[0] is state.positions and last[1] is state.cell:
            edge_index, shifts = last[2], last[3]
        else:
            edge_index, shifts = self.neighbors(state.positions, state.cell, state.pbc, state.batch)
        return edge_index, edge_vectors(state.positions, state.cell, state.batch, edge_index, shifts)
