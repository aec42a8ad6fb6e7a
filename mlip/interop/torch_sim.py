"""torch-sim driving our potentials: :class:`TorchSimModel` is a torch-sim ``ModelInterface``.

    import torch_sim as ts
    from mlip import models
    from mlip.interop.torch_sim import TorchSimModel

    model = TorchSimModel(models.load("ours.model", dtype=torch.float64))
    state = ts.io.atoms_to_state([atoms_a, atoms_b], model.device, model.dtype)
    final = ts.optimize(state, model, optimizer=ts.frechet_cell_fire)

Batched states (``system_idx``), energies ``[n_systems]`` (eV), forces ``[n_atoms, 3]`` (eV/Å) and stress
``[n_systems, 3, 3]`` (eV/Å^3, the sign of ASE and of torch-sim's other models), all from one autograd
pass. Works with torch-sim 0.3 (``pip install 'mlip-torch[torchsim]'``; 0.3.0 is tested).
"""

from __future__ import annotations

import torch

try:
    import torch_sim as ts
    from torch_sim.models.interface import ModelInterface
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("mlip.interop.torch_sim needs torch-sim: pip install 'mlip-torch[torchsim]'") from exc

from mlip.data import keys as K
from mlip.data.neighbors import batched_neighbor_list
from mlip.models.base import Potential

NEIGHBOR_LISTS = ("mlip", "torch_sim")


class TorchSimModel(ModelInterface):
    """Wrap ``potential`` (any of our models) for torch-sim.

    Args:
        potential: a :class:`~mlip.models.Potential` (e.g. from ``mlip.models.load``).
        device, dtype: where and in which precision torch-sim's states live (default: the potential's);
            the potential is moved there.
        compute_forces, compute_stress: what :meth:`forward` returns (stress needs periodic cells: pass
            ``compute_stress=False`` for molecules).
        neighbor_list: ``"mlip"`` (our batched O(N) list, all systems at once) or ``"torch_sim"``
            (torch-sim's Vesin list, one system at a time).
    """

    def __init__(
        self,
        potential: Potential,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        compute_forces: bool = True,
        compute_stress: bool = True,
        neighbor_list: str = "mlip",
    ) -> None:
        super().__init__()
        if neighbor_list not in NEIGHBOR_LISTS:
            raise ValueError(f"neighbor_list must be one of {NEIGHBOR_LISTS}, got {neighbor_list!r}")
        self._device = torch.device(device) if device is not None else next(potential.parameters()).device
        self._dtype = dtype or potential.dtype
        self.potential = potential.to(device=self._device, dtype=self._dtype).eval()
        self._compute_forces = compute_forces
        self._compute_stress = compute_stress
        self._memory_scales_with = "n_atoms_x_density"
        self.neighbor_list = neighbor_list

    @ModelInterface.compute_stress.setter
    def compute_stress(self, value: bool) -> None:
        self._compute_stress = bool(value)

    @ModelInterface.compute_forces.setter
    def compute_forces(self, value: bool) -> None:
        self._compute_forces = bool(value)

    def atomic_data(self, state: ts.SimState) -> dict[str, torch.Tensor]:
        """Our batched ``AtomicData`` (with neighbour list) for a torch-sim state."""
        positions = state.positions
        cell = state.row_vector_cell  # torch-sim stores lattice vectors as columns
        num_systems = cell.shape[0]
        batch = state.system_idx
        counts = torch.bincount(batch, minlength=num_systems)
        pbc = torch.full((num_systems, 3), bool(state.pbc), device=positions.device)
        data = {
            K.POSITIONS: positions,
            K.ATOMIC_NUMBERS: state.atomic_numbers.to(torch.int64),
            K.CELL: cell,
            K.PBC: pbc,
            K.BATCH: batch,
            K.NUM_ATOMS: counts,
            K.PTR: torch.cat([counts.new_zeros(1), counts.cumsum(0)]),
        }
        cutoff = float(self.potential.cutoff)
        if self.neighbor_list == "mlip":
            edge_index, shifts = batched_neighbor_list(positions, cell, pbc, batch, cutoff)
        else:
            edge_index, shifts = self._torch_sim_neighbors(positions, cell, bool(state.pbc), batch, cutoff)
        data[K.EDGE_INDEX], data[K.CELL_SHIFTS] = edge_index, shifts
        return data

    @staticmethod
    def _torch_sim_neighbors(positions, cell, pbc, batch, cutoff):
        edges, shifts = [], []
        for b in range(cell.shape[0]):
            atoms = torch.nonzero(batch == b).squeeze(1)
            edge, shift = ts.neighbors.vesin_nl_ts(
                positions[atoms], cell[b], pbc, torch.tensor(cutoff, dtype=positions.dtype)
            )
            edges.append(atoms[edge])
            shifts.append(shift.to(torch.float64))
        return torch.cat(edges, dim=1), torch.cat(shifts)

    def forward(self, state: ts.SimState | dict, **kwargs) -> dict[str, torch.Tensor]:
        """``energy`` ``[n_systems]``, and ``forces`` / ``stress`` as configured (detached)."""
        if isinstance(state, dict):
            state = ts.SimState(**state, masses=torch.ones_like(state["positions"][:, 0]))
        data = self.atomic_data(state)
        out = self.potential(
            data, compute_forces=self._compute_forces, compute_stress=self._compute_stress, create_graph=False
        )
        results = {"energy": out["energy"].detach().to(self._dtype)}
        if self._compute_forces:
            results["forces"] = out["forces"].detach().to(self._dtype)
        if self._compute_stress:
            results["stress"] = out["stress"].detach().to(self._dtype)
        return results
