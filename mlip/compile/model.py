"""Potentials that run a step of the ``.pt2`` contract: :class:`StepModel` (any such step: a package's
runner, or :class:`~mlip.compile.step.ForceStep` of an eager model behind a CUDA graph) and
:class:`CompiledModel` (a ``.pt2`` package), so the ASE calculator, ``mlip md`` and ``mlip eval`` run
them like an eager model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from mlip.compile.package import PackageError, check_metadata, read_metadata
from mlip.data import keys as K
from mlip.data.atomic_data import AtomicData
from mlip.data.neighbors import pad_edges
from mlip.layers.embedding import SpeciesIndex
from mlip.models.base import Potential, as_batch

Step = Callable[..., Sequence[torch.Tensor]]


class StepModel(Potential):
    """A :class:`~mlip.models.base.Potential` computed by ``step``, a function of the ``.pt2`` contract
    (:mod:`mlip.compile.step`: ``(positions, species, edge_index, edge_shifts, energy_mask) -> (energy,
    atom_energies, forces, atom_virial)``).

    Args:
        step: the step (a package's runner, :class:`~mlip.compile.step.ForceStep`, or either behind a
            :class:`~mlip.compile.graphs.StaticStep`).
        species: atomic numbers in species-index order.
        cutoff: Å.
        dtype, device: those of the step's inputs.
        name: the architecture name.
        fixed_shape: whether MD and the calculator should hand it the padded fixed-capacity edge list
            (its :attr:`fixed_shape`; default: on a CUDA device). A CUDA graph needs it; on the CPU it
            only adds work (the skin pairs and the padding: ``benchmarks/notes/md_fixed_shape.md``).

    ``forward`` takes the batches an eager model takes and returns the same keys (``energy`` ``[B]`` eV,
    ``energies`` ``[N]`` eV, ``forces`` ``[N, 3]`` eV/Å, ``stress`` ``[B, 3, 3]`` eV/Å^3 from the
    per-atom virial); atomic numbers are checked against the species outside the step. Its edges may
    hold pairs beyond the cutoff and padding edges (:func:`~mlip.data.neighbors.pad_edges`), which the
    step gives exactly zero weight: with :attr:`fixed_shape`, :class:`~mlip.md.ForceField` and the
    calculator hand it a fixed-capacity padded list (:meth:`~mlip.data.neighbors.SkinNeighborList.padded`),
    so its input shapes stay the same between neighbour-list rebuilds. Nothing to train: ``create_graph=True``
    raises.
    """

    def __init__(
        self,
        step: Step,
        species: Sequence[int],
        cutoff: float,
        dtype: torch.dtype,
        device: torch.device | str,
        name: str,
        fixed_shape: bool | None = None,
    ) -> None:
        super().__init__()
        self.step = step
        self.species = [int(z) for z in species]
        self.cutoff = float(cutoff)
        self.name = name
        self._dtype = dtype
        self._device = torch.device(device)
        self.fixed_shape = self._device.type == "cuda" if fixed_shape is None else fixed_shape
        self.species_index = SpeciesIndex(self.species).to(self._device)

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, *args: Any, **kwargs: Any) -> StepModel:
        """Check that the requested device type and dtype are the step's (a step cannot move)."""
        device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        if (device is not None and torch.device(device).type != self._device.type) or (
            dtype is not None and dtype != self._dtype
        ):
            raise PackageError(
                f"{self.name}: the step runs in {self._dtype} on {self._device.type}; it cannot move to "
                f"{dtype or self._dtype} on {torch.device(device or self._device).type}"
            )
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
                f"{self.name}: a compiled step cannot be differentiated (train the eager model)"
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
        _, energies, forces, atom_virial = self.step(
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


class CompiledModel(StepModel):
    """A loaded AOTInductor package of the energy+forces+virial step (``mlip compile``): a
    :class:`StepModel` whose step is the package's runner.

    Args:
        path: the ``.pt2`` file.
        device: where it runs (default: the package's device); another device type raises
            :class:`~mlip.compile.package.PackageError`, as do another torch version or format.
        dtype: the dtype the caller expects; ``None`` accepts the package's, another raises.
        single_threaded: load the runner that runs in the calling thread (AOTInductor's
            ``run_single_threaded``), which a CUDA graph can capture (:func:`mlip.compile.cuda_graph`);
            the default runner's thread pool cannot be captured.

    ``.to()`` accepts only the package's device type and dtype.
    """

    def __init__(
        self,
        path: str | Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        single_threaded: bool = False,
    ) -> None:
        path = Path(path)
        metadata = read_metadata(path)
        device = torch.device(device if device is not None else metadata["device"])
        check_metadata(path, metadata, device, dtype)
        index = device.index if device.index is not None else -1
        runner = torch._inductor.aoti_load_package(
            str(path), run_single_threaded=single_threaded, device_index=index
        )
        species = [int(z) for z in metadata["species"].split(",")]
        dtype = getattr(torch, metadata["dtype"])
        super().__init__(runner, species, float(metadata["r_max"]), dtype, device, metadata["model"])
        self.path = path
        self.metadata = metadata

    def to(self, *args: Any, **kwargs: Any) -> CompiledModel:
        """Check that the requested device type and dtype are the package's (a package cannot move)."""
        device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        if device is not None or dtype is not None:
            check_metadata(self.path, self.metadata, device or self._device, dtype)
        return self

    def extra_repr(self) -> str:
        return f"{self.path}, model={self.name}, dtype={self.metadata['dtype']}, device={self._device.type}"
