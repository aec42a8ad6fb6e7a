"""The batched MD state: many systems of different sizes in one set of tensors.

Per-atom fields are concatenated over systems (``batch[i]`` is the system of atom ``i``); per-system
fields have a leading dimension ``B``. Units: Å, Å/fs, amu, eV, eV/Å, eV/Å^3, fs, K (see
:mod:`mlip.md.units`). Integrators keep their own variables (thermostat chains, barostat, FIRE
parameters) in ``variables``, a typed :class:`~mlip.md.fields.Variables` dataclass whose fields are
declared per atom, per system or global, so a state is self-contained and can be cut by system
(:meth:`MDState.select`, :meth:`MDState.split`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from mlip.data.voigt import matrix_to_voigt
from mlip.md.checks import MDInputError, check_parameter, check_structure
from mlip.md.fields import Batched, Variables, atom_field, global_field, system_field
from mlip.md.units import AMU_A2_FS2_TO_EV, FS, KB

V = TypeVar("V", bound=Variables)


@dataclasses.dataclass
class MDState(Batched):
    """Batched state of ``B`` systems with ``N`` atoms in total.

    Attributes:
        positions: ``[N, 3]`` Å (float64).
        velocities: ``[N, 3]`` Å/fs.
        masses: ``[N]`` amu.
        atomic_numbers: ``[N]`` int64.
        cell: ``[B, 3, 3]`` Å, lattice vectors as rows.
        pbc: ``[B, 3]`` bool.
        batch: ``[N]`` int64, system of each atom (contiguous, ascending).
        fixed: ``[N]`` bool, atoms held fixed (zero velocity, never moved).
        dof: ``[B]`` float64, kinetic degrees of freedom (``3 N_free``, minus 3 where the integrator keeps
            the centre-of-mass momentum at zero).
        forces: ``[N, 3]`` eV/Å at ``positions`` (``None`` before the first evaluation).
        energy: ``[B]`` eV potential energy.
        stress: ``[B, 3, 3]`` eV/Å^3 (ASE sign), when the integrator needs it.
        forces_std: ``[N]`` eV/Å, a committee's per-atom force spread (``None`` for a single model).
        step: integer step counter; time: simulated time in fs.
        variables: the integrator's typed variables (set by its ``init``), e.g.
            ``LangevinVariables.temperature`` ``[B]`` K.
        generators: one seeded ``torch.Generator`` per system, so the noise a system receives does not
            depend on the other systems in the batch (a batched run equals single runs with the same seeds).
        system_ids: ``[B]`` int64, the index of each system in the batch it was built as (``arange(B)``
            unless systems were dropped by :meth:`select`): names replicas in trajectories and messages.
    """

    positions: torch.Tensor = atom_field()
    velocities: torch.Tensor = atom_field()
    masses: torch.Tensor = atom_field()
    atomic_numbers: torch.Tensor = atom_field()
    cell: torch.Tensor = system_field()
    pbc: torch.Tensor = system_field()
    batch: torch.Tensor = atom_field()
    fixed: torch.Tensor = atom_field()
    dof: torch.Tensor = system_field()
    forces: torch.Tensor | None = atom_field(default=None)
    energy: torch.Tensor | None = system_field(default=None)
    stress: torch.Tensor | None = system_field(default=None)
    forces_std: torch.Tensor | None = atom_field(default=None)
    step: int = global_field(default=0)
    time: float = global_field(default=0.0)
    variables: Variables | None = global_field(default=None)
    generators: list[torch.Generator] = system_field(default_factory=list)
    system_ids: torch.Tensor | None = system_field(default=None)

    def __post_init__(self) -> None:
        if self.system_ids is None:
            self.system_ids = torch.arange(self.num_systems, device=self.device)

    @property
    def num_systems(self) -> int:
        return self.cell.shape[0]

    @property
    def num_atoms(self) -> torch.Tensor:
        """``[B]`` int64 atoms per system."""
        return torch.bincount(self.batch, minlength=self.num_systems)

    @property
    def device(self) -> torch.device:
        return self.positions.device

    def system_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum per-atom ``values`` ``[N, ...]`` over each system: ``[B, ...]``."""
        out = values.new_zeros((self.num_systems, *values.shape[1:]))
        return out.index_add(0, self.batch, values)

    def per_atom(self, values: torch.Tensor) -> torch.Tensor:
        """Broadcast per-system ``values`` ``[B, ...]`` to atoms: ``[N, ...]``."""
        return values.index_select(0, self.batch)

    def per_system(self, value: float | torch.Tensor) -> torch.Tensor:
        """A scalar or ``[B]`` parameter as a float64 ``[B]`` tensor on the state's device."""
        t = torch.as_tensor(value, dtype=torch.float64, device=self.device)
        return t.expand(self.num_systems).clone()

    def randn_atoms(self) -> torch.Tensor:
        """Standard normal float64 noise ``[N, 3]``, each system's rows from its own generator."""
        counts = self.num_atoms.tolist()
        return torch.cat([self._randn(g, (n, 3)) for g, n in zip(self._rngs(), counts, strict=True)])

    def randn_systems(self, counts: torch.Tensor) -> list[torch.Tensor]:
        """Per system ``b``, ``counts[b]`` standard normal float64 numbers from its own generator."""
        return [self._randn(g, (int(n),)) for g, n in zip(self._rngs(), counts.tolist(), strict=True)]

    def _rngs(self) -> list[torch.Generator]:
        if len(self.generators) != self.num_systems:
            raise ValueError(
                f"the state has {len(self.generators)} generators for {self.num_systems} systems"
            )
        return self.generators

    def _randn(self, generator: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=generator, dtype=torch.float64, device=generator.device).to(
            self.device
        )

    def volume(self) -> torch.Tensor:
        """``[B]`` Å^3 cell volumes (0 for a system without a full cell)."""
        return torch.linalg.det(self.cell).abs()

    def kinetic_energy(self) -> torch.Tensor:
        """``[B]`` eV."""
        mv2 = self.masses * (self.velocities * self.velocities).sum(dim=1)
        return 0.5 * AMU_A2_FS2_TO_EV * self.system_sum(mv2)

    def kinetic_tensor(self) -> torch.Tensor:
        """``[B, 3, 3]`` eV, ``sum_i m_i v_i v_i^T`` (twice the kinetic-energy tensor)."""
        mvv = self.masses[:, None, None] * self.velocities[:, :, None] * self.velocities[:, None, :]
        return AMU_A2_FS2_TO_EV * self.system_sum(mvv)

    def temperature(self) -> torch.Tensor:
        """``[B]`` K, ``2 KE / (dof kB)``."""
        return 2.0 * self.kinetic_energy() / (self.dof.clamp(min=1.0) * KB)

    def pressure(self) -> torch.Tensor:
        """``[B]`` eV/Å^3 instantaneous pressure ``(2 KE / 3 - V tr(stress) / 3) / V`` (needs ``stress``)."""
        if self.stress is None:
            raise ValueError("pressure needs the stress: evaluate the model with compute_stress=True")
        volume = self.volume()
        trace = self.stress.diagonal(dim1=1, dim2=2).sum(dim=1)
        return 2.0 * self.kinetic_energy() / (3.0 * volume) - trace / 3.0

    def acceleration(self) -> torch.Tensor:
        """``[N, 3]`` Å/fs^2 from ``forces`` (zero for fixed atoms)."""
        if self.forces is None:
            raise ValueError("the state has no forces: call an integrator's init first")
        a = self.forces / (self.masses[:, None] * AMU_A2_FS2_TO_EV)
        return torch.where(self.fixed[:, None], torch.zeros_like(a), a)

    def clone(self) -> MDState:
        """A deep copy (tensors cloned; the generator states copied)."""
        return self.select(range(self.num_systems))

    def select(self, systems: Sequence[int]) -> MDState:
        """A new state holding only ``systems`` (ascending indices into this batch), with their atoms,
        variables, generators (copied) and ``system_ids``; tensors are copies."""
        index = torch.as_tensor(list(systems), dtype=torch.int64, device=self.device)
        if index.numel() and not bool((index.diff() > 0).all()):
            raise ValueError(f"select needs ascending system indices, got {index.tolist()}")
        atoms = torch.isin(self.batch, index).nonzero().squeeze(1)
        fields = self.selected(atoms, index)
        renumber = torch.full((self.num_systems,), -1, dtype=torch.int64, device=self.device)
        renumber[index] = torch.arange(index.numel(), device=self.device)
        fields["batch"] = renumber[fields["batch"]]
        return MDState(**fields)

    def split(self) -> list[MDState]:
        """One single-system state per system (see :meth:`select`)."""
        return [self.select([b]) for b in range(self.num_systems)]

    def variables_of(self, kind: type[V]) -> V:
        """``variables`` checked to be of the integrator's ``kind``: an error says which ``init`` to call."""
        if not isinstance(self.variables, kind):
            raise ValueError(
                f"the state holds {type(self.variables).__name__} variables, not {kind.__name__}: "
                "call the integrator's init first"
            )
        return self.variables


def from_atoms(
    atoms_list: Any | Sequence[Any],
    device: str | torch.device = "cpu",
    seed: int | Sequence[int] = 0,
    source: str | Path | None = None,
) -> MDState:
    """Build a state from one ``ase.Atoms`` or a list of them (masses, fixed atoms from ``FixAtoms``,
    velocities from ASE momenta converted to Å/fs). System ``b``'s generator is seeded with ``seed + b``
    (an int) or ``seed[b]`` (a sequence). The structure is checked
    (:func:`mlip.md.checks.check_structure`); errors name ``source`` (the file it came from)."""
    from ase.constraints import FixAtoms

    if not isinstance(atoms_list, Sequence):
        atoms_list = [atoms_list]
    if len(atoms_list) == 0:
        raise MDInputError("from_atoms needs at least one ase.Atoms")
    positions, velocities, masses, numbers, fixed = [], [], [], [], []
    for atoms in atoms_list:
        positions.append(atoms.get_positions())
        velocities.append(atoms.get_velocities() * FS)  # ASE Å/ASE-time -> Å/fs
        masses.append(atoms.get_masses())
        numbers.append(atoms.get_atomic_numbers())
        mask = np.zeros(len(atoms), dtype=bool)
        for constraint in atoms.constraints:
            if not isinstance(constraint, FixAtoms):
                where = f"{source}: " if source is not None else ""
                raise MDInputError(
                    f"{where}unsupported ASE constraint {type(constraint).__name__}: only FixAtoms"
                )
            mask[constraint.get_indices()] = True
        fixed.append(mask)
    f64 = dict(dtype=torch.float64, device=device)
    counts = torch.tensor([len(a) for a in atoms_list], device=device)
    fixed_t = torch.as_tensor(np.concatenate(fixed), device=device)
    batch = torch.repeat_interleave(torch.arange(len(atoms_list), device=device), counts)
    n_free = torch.zeros(len(atoms_list), **f64).index_add(0, batch, (~fixed_t).to(torch.float64))
    state = MDState(
        positions=torch.as_tensor(np.concatenate(positions), **f64),
        velocities=torch.as_tensor(np.concatenate(velocities), **f64),
        masses=torch.as_tensor(np.concatenate(masses), **f64),
        atomic_numbers=torch.as_tensor(np.concatenate(numbers), dtype=torch.int64, device=device),
        cell=torch.as_tensor(np.stack([np.asarray(a.get_cell()) for a in atoms_list]), **f64),
        pbc=torch.as_tensor(np.stack([a.get_pbc() for a in atoms_list]), device=device),
        batch=batch,
        fixed=fixed_t,
        dof=3.0 * n_free,
    )
    state.velocities[state.fixed] = 0.0
    seeds = [int(seed) + b for b in range(len(atoms_list))] if isinstance(seed, int) else list(seed)
    if len(seeds) != len(atoms_list):
        raise MDInputError(f"{len(seeds)} seeds for {len(atoms_list)} systems")
    state.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
    check_structure(state, source)
    return state


def to_atoms(state: MDState) -> list[Any]:
    """One ``ase.Atoms`` per system with positions, cell, pbc, masses, velocities (ASE units), fixed atoms
    and, when present, energy/forces/stress in a ``SinglePointCalculator`` and a committee's per-atom
    ``forces_std`` (eV/Å) as ``arrays["forces_std"]`` with its maximum in ``info["max_forces_std"]``."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.constraints import FixAtoms

    out = []
    ptr = torch.cumsum(state.num_atoms, 0).tolist()
    start = 0
    for b, end in enumerate(ptr):
        sl = slice(start, end)
        atoms = Atoms(
            numbers=state.atomic_numbers[sl].cpu().numpy(),
            positions=state.positions[sl].detach().cpu().numpy(),
            cell=state.cell[b].cpu().numpy(),
            pbc=state.pbc[b].cpu().numpy(),
            masses=state.masses[sl].cpu().numpy(),
        )
        atoms.set_velocities(state.velocities[sl].detach().cpu().numpy() / FS)
        if bool(state.fixed[sl].any()):
            atoms.set_constraint(FixAtoms(mask=state.fixed[sl].cpu().numpy()))
        results = {}
        if state.energy is not None:
            results["energy"] = float(state.energy[b])
        if state.forces is not None:
            results["forces"] = state.forces[sl].detach().cpu().numpy()
        if state.stress is not None:
            results["stress"] = matrix_to_voigt(state.stress[b].detach().cpu().numpy())
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        if state.forces_std is not None:
            spread = state.forces_std[sl].detach().cpu().numpy()
            atoms.arrays["forces_std"] = spread
            atoms.info["max_forces_std"] = float(spread.max())
        out.append(atoms)
        start = end
    return out


def maxwell_boltzmann(state: MDState, temperature: float | torch.Tensor) -> MDState:
    """Draw velocities from the Maxwell–Boltzmann distribution at ``temperature`` (K, scalar or ``[B]``)
    with the state's generator, zero the centre-of-mass momentum of systems without fixed atoms, and
    rescale each system to exactly that temperature. Fixed atoms get zero velocity. In place; returns it."""
    check_parameter("temperature", temperature, "K", allow_zero=True)
    t = state.per_system(temperature)
    sigma = torch.sqrt(KB * state.per_atom(t) / (state.masses * AMU_A2_FS2_TO_EV))  # Å/fs
    state.velocities = state.randn_atoms() * sigma[:, None]
    state.velocities[state.fixed] = 0.0
    zero_momentum(state)
    current = state.temperature()
    scale = torch.where(current > 0, torch.sqrt(t / current.clamp(min=1e-300)), torch.zeros_like(current))
    state.velocities = state.velocities * state.per_atom(scale)[:, None]
    return state


def zero_momentum(state: MDState) -> MDState:
    """Remove the centre-of-mass velocity of every system without fixed atoms and count those systems
    with ``dof = 3 N - 3`` (their total momentum is then conserved by deterministic integrators).
    Idempotent; in place; returns the state."""
    free = state.system_sum(state.fixed.to(torch.int64)) == 0  # [B]
    total_mass = state.system_sum(state.masses)
    com_velocity = state.system_sum(state.masses[:, None] * state.velocities) / total_mass[:, None]
    remove = torch.where(free[:, None], com_velocity, torch.zeros_like(com_velocity))
    state.velocities = state.velocities - state.per_atom(remove)
    n_free = state.system_sum((~state.fixed).to(torch.float64))
    state.dof = torch.where(free & (n_free > 1), 3.0 * n_free - 3.0, 3.0 * n_free)
    return state
