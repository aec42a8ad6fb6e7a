"""ASE calculator for the package's models: energy, free energy, forces, stress and per-atom energies.

    from mlip.calculator import MLIPCalculator
    atoms.calc = MLIPCalculator("model.safetensors", device="cpu", dtype=torch.float64)
    atoms.get_forces()

Molecular and (partly) periodic systems; results are cached through ASE's ``check_state`` (a repeated
query on unchanged atoms does not re-run the model); one evaluation fills energy, forces and, for a
3D cell, stress. The neighbour list is reused across MD/optimizer steps with a skin.
:meth:`MLIPCalculator.calculate_many` evaluates many structures in batches.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from mlip.compile.model import StepModel
from mlip.data import keys as K
from mlip.data.atomic_data import AtomicData, DataError, collate, from_atoms
from mlip.data.neighbors import (
    HARD_MIN_DISTANCE,
    CloseAtomsError,
    SkinNeighborList,
    add_neighbors,
    closest_pair,
)
from mlip.data.voigt import matrix_to_voigt
from mlip.errors import RunFailedError
from mlip.kernels import set_backend
from mlip.models.base import Potential


class NonFiniteResultError(RunFailedError):
    """The model returned a non-finite energy, force or stress (never passed on as a result)."""


class MLIPCalculator(Calculator):
    """ASE calculator wrapping a :class:`~mlip.models.base.Potential` (a trained model or a committee).

    Args:
        model: a model or committee, or the path of a file written by ``model.save``.
        device: where the model runs (default: CUDA if available, else CPU).
        dtype: compute dtype (default float64: accurate forces for optimizers and NVE MD).
        skin: neighbour-list skin (Å) for reuse across steps.
        min_distance: warn (once per calculator) when two atoms are closer than this (Å): the model was
            not trained there.
        backend: kernel backend for this machine, ``"auto" | "torch" | "triton"``
            (:func:`mlip.kernels.set_backend`).
        cuda_graph: run the force step as a CUDA graph (:func:`mlip.compile.graphs.cuda_graph`; an
            eager model or a ``.pt2`` package on a CUDA device): captured at the first call and replayed
            while the padded neighbour list keeps its shape, i.e. as long as the atoms move without a
            rebuild that outgrows the edge capacity. :meth:`calculate_many` captures once per batch.

    A compiled step that asks for fixed shapes (``cuda_graph``, or a ``.pt2`` package on CUDA:
    :attr:`~mlip.compile.model.StepModel.fixed_shape`) gets the skin list padded to a fixed capacity
    (:meth:`~mlip.data.neighbors.SkinNeighborList.padded`), so its input shapes stay the same between
    neighbour-list rebuilds.

    Never returns NaN/inf: atoms closer than :data:`~mlip.data.neighbors.HARD_MIN_DISTANCE` (two atoms
    at one position) raise :class:`~mlip.data.neighbors.CloseAtomsError` naming the atoms, and a
    non-finite model output raises :class:`NonFiniteResultError`.

    Units: eV, Å, eV/Å, stress in eV/Å^3 (Voigt ``xx yy zz yz xz xy``, ASE's sign).

    On a :class:`~mlip.models.committee.Committee` (or a committee file) ``energy``, ``forces`` and
    ``stress`` are the members' means, and ``results`` also holds ``energy_std`` (float, eV: population
    std of the members' energies), ``forces_std`` (``[N]`` eV/Å: per atom, the RMS deviation of the
    members' force vectors from the mean) and, with stress, ``stress_std`` (float, eV/Å^3). Each member
    runs once per evaluation, batched ones included.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(
        self,
        model: Potential | str | Path,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float64,
        skin: float = 0.5,
        min_distance: float = 0.5,
        backend: str = "auto",
        cuda_graph: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if isinstance(model, (str, Path)):
            from mlip.models import load

            model = load(model, device=device, dtype=dtype)
        self.model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        set_backend(self.model, backend)
        if cuda_graph:
            from mlip.compile.graphs import cuda_graph as graphed

            self.model = graphed(self.model)
        self.device, self.dtype = device, dtype
        self.min_distance = float(min_distance)
        self._warned_close = False
        self.cutoff = float(self.model.cutoff)
        self._neighbors = SkinNeighborList(self.cutoff, skin)

    def _record(self, atoms: Atoms, source: str) -> AtomicData:
        numbers = set(int(z) for z in atoms.numbers)
        unknown = sorted(numbers - set(self.model.species))
        if unknown:
            from ase.data import chemical_symbols

            names = ", ".join(chemical_symbols[z] for z in unknown)
            known = ", ".join(chemical_symbols[z] for z in self.model.species)
            raise DataError(f"{source}: element(s) {names} not in the model's species ({known})")
        if any(atoms.pbc) and np.linalg.norm(atoms.cell.array[atoms.pbc], axis=1).min(initial=np.inf) == 0:
            raise DataError(f"{source}: periodic boundary conditions {list(atoms.pbc)} without a cell vector")
        data = from_atoms(atoms, use_calculator_labels=False, source=source)
        return {
            k: v.to(self.device)
            for k, v in data.items()
            if k in (K.POSITIONS, K.ATOMIC_NUMBERS, K.CELL, K.PBC)
        }

    def _check_distances(self, data: AtomicData, names: Sequence[str], ptr: Sequence[int]) -> None:
        """Refuse atoms closer than the hard floor, naming the structure (``names[b]``, its first atom
        ``ptr[b]``) and the atoms by their index in it; warn once per calculator below ``min_distance``."""
        cell = data[K.CELL] if data[K.CELL].dim() == 3 else data[K.CELL].unsqueeze(0)
        batch = data.get(K.BATCH, torch.zeros_like(data[K.ATOMIC_NUMBERS]))
        closest = closest_pair(data[K.POSITIONS], cell, batch, data[K.EDGE_INDEX], data[K.CELL_SHIFTS])
        if closest is None:
            return
        i, j, distance = closest
        if distance < HARD_MIN_DISTANCE:
            b = int(batch[i])
            i, j = i - ptr[b], j - ptr[b]
            pair = f"atom {i} and its periodic image" if i == j else f"atoms {i} and {j}"
            raise CloseAtomsError(
                f"{names[b]}: {pair} are {distance:.3g} Å apart (hard floor {HARD_MIN_DISTANCE} Å)"
            )
        if distance < self.min_distance and not self._warned_close:
            self._warned_close = True
            warnings.warn(
                f"atoms {distance:.3f} Å apart (below {self.min_distance} Å): outside any training data "
                "(warned once per calculator)",
                RuntimeWarning,
                stacklevel=3,
            )

    @staticmethod
    def _has_volume(atoms: Atoms) -> bool:
        return bool(atoms.pbc.all()) and abs(atoms.cell.volume) > 1e-8

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        with_stress = self._has_volume(atoms)
        if "stress" in properties and not with_stress:
            raise PropertyNotImplementedError("stress needs a fully periodic cell with non-zero volume")
        data = self._record(atoms, "MLIPCalculator")
        batch = torch.zeros(len(atoms), dtype=torch.int64, device=self.device)
        edge_index, shifts = self._neighbors(
            data[K.POSITIONS], data[K.CELL].reshape(1, 3, 3), data[K.PBC].reshape(1, 3), batch
        )
        data[K.EDGE_INDEX], data[K.CELL_SHIFTS] = edge_index, shifts
        self._check_distances(data, ["MLIPCalculator"], [0])
        if isinstance(self.model, StepModel) and self.model.fixed_shape:  # the padded skin list
            data[K.EDGE_INDEX], data[K.CELL_SHIFTS] = self._neighbors.padded(
                data[K.POSITIONS], data[K.CELL].reshape(1, 3, 3), data[K.PBC].reshape(1, 3), batch
            )
        out = self.model(data, compute_forces=True, compute_stress=with_stress)
        self.results = _results(out, 0, slice(None), with_stress, "MLIPCalculator")

    def calculate_many(self, structures: Sequence[Atoms], max_atoms: int = 20000) -> list[dict[str, Any]]:
        """Results (the :attr:`implemented_properties` dict of each structure, stress only for 3D cells)
        of many structures, in order, evaluated in batches of at most ``max_atoms`` atoms (3D-periodic
        structures and the others batched apart). ``atoms.calc`` is not touched."""
        results: list[dict[str, Any] | None] = [None] * len(structures)
        for with_stress in (True, False):
            group = [i for i, a in enumerate(structures) if self._has_volume(a) == with_stress]
            for indices in _batches(group, [len(structures[i]) for i in group], max_atoms):
                records = [self._record(structures[i], f"structure {i}") for i in indices]
                data = add_neighbors(collate(records), self.cutoff)
                ptr = data[K.PTR].tolist()
                self._check_distances(data, [f"structure {i}" for i in indices], ptr)
                out = self.model(data, compute_forces=True, compute_stress=with_stress)
                for j, i in enumerate(indices):
                    results[i] = _results(out, j, slice(ptr[j], ptr[j + 1]), with_stress, f"structure {i}")
        return results  # type: ignore[return-value]


def _batches(indices: list[int], sizes: list[int], max_atoms: int) -> list[list[int]]:
    """Consecutive groups of ``indices`` with at most ``max_atoms`` atoms (a larger structure alone)."""
    out: list[list[int]] = []
    count = 0
    for i, n in zip(indices, sizes, strict=True):
        if not out or count + n > max_atoms:
            out.append([])
            count = 0
        out[-1].append(i)
        count += n
    return out


def _results(
    out: dict[str, torch.Tensor], index: int, atoms: slice, with_stress: bool, source: str
) -> dict[str, Any]:
    """Structure ``index``'s results (its atoms ``atoms``) as ASE wants them; a non-finite value raises
    :class:`NonFiniteResultError` naming ``source``, the property and the first bad atom."""
    energy = float(out["energy"][index].detach())
    results: dict[str, Any] = {
        "energy": energy,
        "free_energy": energy,
        "forces": out["forces"][atoms].detach().cpu().double().numpy(),
        "energies": out["energies"][atoms].detach().cpu().double().numpy(),
    }
    if with_stress:
        results["stress"] = matrix_to_voigt(out["stress"][index].detach().cpu().double().numpy())
    if "energy_std" in out:  # a committee
        results["energy_std"] = float(out["energy_std"][index].detach())
        results["forces_std"] = out["forces_std"][atoms].detach().cpu().double().numpy()
        if with_stress:
            results["stress_std"] = float(out["stress_std"][index].detach())
    for name, values in results.items():
        finite = np.isfinite(values)
        if not finite.all():
            at = f" (atom {int(np.argwhere(~finite)[0, 0])})" if name in ("forces", "energies") else ""
            raise NonFiniteResultError(f"{source}: the model returned a non-finite {name}{at}")
    return results
