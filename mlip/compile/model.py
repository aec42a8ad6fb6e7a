"""``CompiledModel``: a ``.pt2`` package behind the :class:`~mlip.models.base.Potential` interface, so the
ASE calculator, ``mlip md`` and ``mlip eval`` run it like an eager model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mlip.compile.package import PackageError, check_metadata, read_metadata
from mlip.data import keys as K
from mlip.data.atomic_data import AtomicData
from mlip.data.neighbors import pad_edges
from mlip.layers.embedding import SpeciesIndex
from mlip.models.base import Potential, as_batch


class CompiledModel(Potential):
    """A loaded AOTInductor package of the energy+forces+virial step (``mlip compile``).

    Args:
        path: the ``.pt2`` file.
        device: where it runs (default: the package's device); another device type raises
            :class:`~mlip.compile.package.PackageError`, as do another torch version or format.
        dtype: the dtype the caller expects; ``None`` accepts the package's, another raises.

    ``forward`` takes the batches an eager model takes and returns the same keys (``energy`` ``[B]`` eV,
    ``energies`` ``[N]`` eV, ``forces`` ``[N, 3]`` eV/Å, ``stress`` ``[B, 3, 3]`` eV/Å^3 from the
    per-atom virial); atomic numbers are checked against the species outside the compiled step. It has
    no weights to train: ``create_graph=True`` raises. ``.to()`` accepts only the package's device type
    and dtype.
    """

    def __init__(
        self, path: str | Path, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.metadata = read_metadata(self.path)
        self._device = torch.device(device if device is not None else self.metadata["device"])
        check_metadata(self.path, self.metadata, self._device, dtype)
        self._dtype: torch.dtype = getattr(torch, self.metadata["dtype"])
        self.name = self.metadata["model"]
        self.cutoff = float(self.metadata["r_max"])
        self.species = [int(z) for z in self.metadata["species"].split(",")]
        self.species_index = SpeciesIndex(self.species).to(self._device)
        index = self._device.index if self._device.index is not None else -1
        self._runner = torch._inductor.aoti_load_package(str(self.path), device_index=index)

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, *args: Any, **kwargs: Any) -> CompiledModel:
        """Check that the requested device type and dtype are the package's (a package cannot move)."""
        device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        if device is not None or dtype is not None:
            check_metadata(self.path, self.metadata, device or self._device, dtype)
        return self

    def forward(
        self,
        data: AtomicData,
        compute_forces: bool = True,
        compute_stress: bool = False,
        create_graph: bool | None = None,
    ) -> dict[str, torch.Tensor]:
        """Energies, forces and (``compute_stress``) stress of a batch or a single record; see the class."""
        if create_graph:
            raise PackageError(
                f"{self.path}: a compiled package cannot be differentiated (train the eager model)"
            )
        data = as_batch(data)
        device, dtype = self._device, self._dtype
        batch = data[K.BATCH].to(device)
        num_structures = data[K.NUM_ATOMS].shape[0]
        positions = data[K.POSITIONS].detach().to(device, dtype).contiguous()
        species = self.species_index(data[K.ATOMIC_NUMBERS].to(device))
        cell = data[K.CELL].to(device, dtype) if K.CELL in data else positions.new_zeros(num_structures, 3, 3)
        edge_index = data[K.EDGE_INDEX].to(device)
        shifts = torch.einsum("ei,eij->ej", data[K.CELL_SHIFTS].to(device, dtype), cell[batch[edge_index[0]]])
        edge_index, shifts = pad_edges(edge_index, shifts, max(1, edge_index.shape[1]))  # E >= 1
        mask = positions.new_ones(positions.shape[0])
        _, energies, forces, atom_virial = self._runner(
            positions, species, edge_index.contiguous(), shifts.contiguous(), mask
        )
        out = {
            "energy": energies.new_zeros(num_structures).index_add(0, batch, energies),
            "energies": energies,
        }
        if compute_forces:
            out["forces"] = forces
        if compute_stress:
            volume = torch.linalg.det(cell).abs()
            if bool((volume == 0).any()):
                raise ValueError("stress needs a cell with non-zero volume for every structure")
            virial = atom_virial.new_zeros(num_structures, 3, 3).index_add(0, batch, atom_virial)
            out["stress"] = -virial / volume[:, None, None]
        return out

    def extra_repr(self) -> str:
        return f"{self.path}, model={self.name}, dtype={self.metadata['dtype']}, device={self._device.type}"
