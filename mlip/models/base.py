"""The interface every potential implements, and the autograd path to forces and stress.

A potential maps a (batched) ``AtomicData`` with a neighbour list to per-atom energies. Forces and stress
are never predicted: :meth:`Potential.forward` differentiates the total energy with respect to positions
and to a symmetric strain of the cell, so every model is conservative.
"""

from __future__ import annotations

import torch

from mlip.data import keys as K
from mlip.data.atomic_data import AtomicData
from mlip.data.neighbors import add_neighbors, edge_vectors


def as_batch(data: AtomicData) -> AtomicData:
    """Return ``data`` with batch fields: a single record becomes a batch of one (no copy of tensors).
    A torch-geometric ``Data`` / ``Batch`` is converted first (:func:`mlip.interop.pyg.from_pyg`)."""
    if not isinstance(data, dict):
        from mlip.interop.pyg import from_pyg

        data = from_pyg(data)
    if K.BATCH in data:
        return data
    n = data[K.POSITIONS].shape[0]
    out = dict(data)
    out[K.BATCH] = torch.zeros(n, dtype=torch.int64, device=data[K.POSITIONS].device)
    out[K.PTR] = torch.tensor([0, n], dtype=torch.int64, device=data[K.POSITIONS].device)
    out[K.NUM_ATOMS] = torch.tensor([n], dtype=torch.int64, device=data[K.POSITIONS].device)
    for key in K.PER_STRUCTURE_KEYS:
        if key in out and key != K.NUM_ATOMS:
            out[key] = out[key].unsqueeze(0)
    return out


class Potential(torch.nn.Module):
    """Base class: subclasses set ``cutoff`` (Å) and implement :meth:`atomic_energies`.

    The neighbour list in the input may hold edges longer than ``cutoff`` (a skin for reuse across MD
    steps); ``atomic_energies`` must give them exactly zero weight (smooth envelopes vanish there).
    """

    cutoff: float

    def atomic_energies(self, data: AtomicData, edge_vectors: torch.Tensor) -> torch.Tensor:
        """Per-atom energies ``[N]`` (eV) from a batch and its edge vectors ``[E, 3]`` (Å, dst - src)."""
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        for p in self.parameters():
            return p.dtype
        for b in self.buffers():
            if b.is_floating_point():
                return b.dtype
        return torch.get_default_dtype()

    def forward(
        self,
        data: AtomicData,
        compute_forces: bool = True,
        compute_stress: bool = False,
        create_graph: bool | None = None,
    ) -> dict[str, torch.Tensor]:
        """Energies and their derivatives for a batch (or a single record).

        Returns ``energy`` ``[B]`` (eV), ``energies`` ``[N]`` (eV per atom), and when asked ``forces``
        ``[N, 3]`` (eV/Å, ``-dE/dr``) and ``stress`` ``[B, 3, 3]`` (eV/Å^3, ``(1/V) dE/dε`` for a
        symmetric strain ε: ASE's sign). ``create_graph`` (default: ``self.training``) keeps the graph of
        forces/stress so losses on them can be differentiated with respect to the weights. Data without
        ``edge_index`` (e.g. straight from ``from_atoms`` / ``from_rdkit``) gets its neighbour list at
        ``self.cutoff`` here (:func:`mlip.data.neighbors.add_neighbors`); build it once beforehand to
        reuse it across calls.
        """
        data = as_batch(data)
        if K.EDGE_INDEX not in data:
            data = add_neighbors(data, self.cutoff)
        create_graph = self.training if create_graph is None else create_graph
        dtype = self.dtype
        batch = data[K.BATCH]
        num_structures = data[K.NUM_ATOMS].shape[0]
        positions = data[K.POSITIONS].to(dtype)
        cell = data[K.CELL].to(dtype) if K.CELL in data else positions.new_zeros(num_structures, 3, 3)
        inputs: list[torch.Tensor] = []
        if compute_forces:
            positions = positions.detach().requires_grad_(True)
            inputs.append(positions)
        if compute_stress:
            strain = positions.new_zeros(num_structures, 3, 3, requires_grad=True)
            inputs.append(strain)
            symmetric = 0.5 * (strain + strain.transpose(1, 2))
            positions = positions + torch.einsum("ni,nij->nj", positions, symmetric[batch])
            cell = cell + torch.bmm(cell, symmetric)
        vectors = edge_vectors(positions, cell, batch, data[K.EDGE_INDEX], data[K.CELL_SHIFTS])
        energies = self.atomic_energies(data, vectors)
        energy = energies.new_zeros(num_structures).index_add(0, batch, energies)
        out = {"energy": energy, "energies": energies}
        if inputs:
            grads = torch.autograd.grad(
                energy.sum(), inputs, create_graph=create_graph, allow_unused=True, materialize_grads=True
            )
            if compute_forces:
                out["forces"] = -grads[0]
            if compute_stress:
                volume = torch.linalg.det(cell).abs()
                if bool((volume == 0).any()):
                    raise ValueError("stress needs a cell with non-zero volume for every structure")
                out["stress"] = grads[-1] / volume[:, None, None]
        return out
