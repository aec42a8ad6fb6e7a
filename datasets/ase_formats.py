"""Generic files read through ASE: extxyz, trajectories, ASE databases, VASP outputs, any ``ase.io`` format.

Labels are looked up by configurable names: a calculator's stored results first (what ASE's extxyz, traj
and VASP readers fill), then ``atoms.info`` / ``atoms.arrays``, then (ASE db) the row's key-value pairs and
``data``. Files are assumed to be in eV and Å (the ASE convention). A virial ``[3, 3]`` (or 9 / Voigt-6
values, eV) becomes stress ``-virial / volume``. Per-config weights (``config_weight``,
``config_energy_weight``, ``config_forces_weight``, ``config_stress_weight``) become the ``*_weight`` keys.

A label present on some frames and missing on others is filled with zeros and weight 0, so every record
of a dataset holds the same keys (batches collate).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlip.data import AtomicData, DataError, from_atoms
from mlip.data import keys as K
from mlip.data.voigt import voigt_to_matrix
from mlip.datasets.base import DEFAULT_UNITS, ListDataset

_CALC_NAMES = ("energy", "free_energy", "forces", "stress")
ISOLATED_ATOM = "IsolatedAtom"  # the config_type of single-atom reference frames (MACE's convention)


@dataclass(frozen=True)
class LabelKeys:
    """Names under which a file stores its labels and per-config weights."""

    energy: str = "energy"
    forces: str = "forces"
    stress: str = "stress"
    virial: str = "virial"
    weight: str = "config_weight"
    energy_weight: str = "config_energy_weight"
    forces_weight: str = "config_forces_weight"
    stress_weight: str = "config_stress_weight"
    config_type: str = "config_type"  # frames whose config_type is "IsolatedAtom" give E0s (as in MACE)

    @classmethod
    def from_option(cls, value: LabelKeys | Mapping[str, str] | None) -> LabelKeys:
        """The ``keys`` loader option as given: ``None`` (defaults), a :class:`LabelKeys`, or a mapping such
        as ``{energy: REF_energy, forces: REF_forces}`` (YAML ``data.options.keys``, ``--option
        keys=...``)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise DataError(f"option keys: expected a mapping label -> key name, got {value!r}")
        known = [f.name for f in fields(cls)]
        for label, name in value.items():
            if label not in known:
                raise DataError(f"option keys: unknown label {label!r}; known: {known}")
            if not isinstance(name, str):
                raise DataError(f"option keys.{label}: expected a key name, got {name!r}")
        return cls(**value)

    def looked_for(self) -> list[str]:
        """The label key names (energy, forces, stress, virial)."""
        return [self.energy, self.forces, self.stress, self.virial]


def stored_keys(frames: Iterable[tuple[Any, dict[str, Any]]]) -> list[str]:
    """Names of everything the frames store (``info``, per-atom arrays, calculator results, extra)."""
    names: set[str] = set()
    for atoms, extra in frames:
        results = getattr(getattr(atoms, "calc", None), "results", None) or {}
        names.update(atoms.info, atoms.arrays, results, extra)
    return sorted(names - {"numbers", "positions"})


def _lookup(atoms: Any, name: str, extra: dict[str, Any]) -> Any:
    """Value stored under ``name``: calculator results, ``atoms.info``, ``atoms.arrays``, then ``extra``."""
    calc = getattr(atoms, "calc", None)
    results = getattr(calc, "results", None) or {}
    if name in _CALC_NAMES and name in results:
        return results[name]
    for store in (atoms.info, atoms.arrays, extra):
        if name in store:
            return store[name]
    return None


def _numeric(value: Any, source: str, index: int, field: str) -> np.ndarray:
    """``value`` as a float64 array; :class:`DataError` naming the record and field when it is not numeric."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}, record {index}: field '{field}' is not numeric ({exc})") from exc


def _virial_to_stress(virial: Any, atoms: Any, source: str, index: int, field: str) -> np.ndarray:
    """Stress ``[3, 3]`` eV/Å^3 (ASE sign) from a virial (``[3, 3]``, 9 or Voigt-6 values, eV)."""
    v = _numeric(virial, source, index, field)
    if v.size == 9:
        v = v.reshape(3, 3)
    elif v.shape == (6,):
        v = voigt_to_matrix(v)
    else:
        raise DataError(f"{source}, record {index}: field 'virial' has shape {v.shape}, expected [3, 3]")
    volume = abs(float(np.linalg.det(np.asarray(atoms.get_cell()))))
    if volume == 0.0:
        raise DataError(
            f"{source}, record {index}: field 'virial' given for a structure without a cell volume"
        )
    return -v / volume


def atoms_to_record(
    atoms: Any, keys: LabelKeys, source: str, index: int, extra: dict[str, Any] | None = None
) -> AtomicData:
    """One ``ase.Atoms`` (eV, Å) -> validated record with the labels named by ``keys`` and any weights.

    Forces are the raw stored forces (not projected by constraints); ``FixAtoms`` becomes ``fixed``.
    """
    extra = extra or {}
    energy = _lookup(atoms, keys.energy, extra)
    forces = _lookup(atoms, keys.forces, extra)
    stress = _lookup(atoms, keys.stress, extra)
    if stress is None:
        virial = _lookup(atoms, keys.virial, extra)
        if virial is not None:
            stress = _virial_to_stress(virial, atoms, source, index, keys.virial)
    if energy is not None:
        energy = _numeric(energy, source, index, keys.energy)
        if energy.size != 1:
            raise DataError(f"{source}, record {index}: field '{keys.energy}' holds {energy.size} values")
    if forces is not None:
        forces = _numeric(forces, source, index, keys.forces)
        if forces.shape != (len(atoms), 3):
            raise DataError(
                f"{source}, record {index}: field 'forces' has shape {forces.shape}, "
                f"expected [{len(atoms)}, 3]"
            )
    if stress is not None:
        stress = _numeric(stress, source, index, keys.stress)
        if stress.shape not in ((6,), (3, 3), (9,)):
            raise DataError(
                f"{source}, record {index}: field 'stress' has shape {stress.shape}, expected [3, 3] or [6]"
            )
        stress = stress.reshape(3, 3) if stress.size == 9 else stress
    data = from_atoms(
        atoms,
        energy=None if energy is None else float(energy.reshape(())),
        forces=forces,
        stress=stress,
        use_calculator_labels=False,
        source=source,
        index=index,
    )
    weight = _lookup(atoms, keys.weight, extra)
    if weight is not None:
        weight = _numeric(weight, source, index, keys.weight)
    for label, key, name in (
        (K.ENERGY, K.ENERGY_WEIGHT, keys.energy_weight),
        (K.FORCES, K.FORCES_WEIGHT, keys.forces_weight),
        (K.STRESS, K.STRESS_WEIGHT, keys.stress_weight),
    ):
        specific = _lookup(atoms, name, extra)
        if specific is not None:
            specific = _numeric(specific, source, index, name)
        if label in data and (weight is not None or specific is not None):
            w = (1.0 if weight is None else float(weight)) * (1.0 if specific is None else float(specific))
            data[key] = torch.tensor(w, dtype=torch.float64)
    return data


_FILL_WEIGHT = {K.ENERGY: K.ENERGY_WEIGHT, K.FORCES: K.FORCES_WEIGHT, K.STRESS: K.STRESS_WEIGHT}
# field -> (shape as a function of the atom count, dtype) of the zero fill for a record that lacks it
_FILL = {
    K.ENERGY: (lambda n: (), torch.float64),
    K.FORCES: (lambda n: (n, 3), torch.float64),
    K.STRESS: (lambda n: (3, 3), torch.float64),
    K.TAGS: (lambda n: (n,), torch.int64),
    K.FIXED: (lambda n: (n,), torch.bool),
}


def make_uniform(records: list[AtomicData]) -> list[AtomicData]:
    """Give every record the same keys: a missing label becomes zeros with weight 0, weights default to 1,
    missing ``tags`` become 0 and missing ``fixed`` False. Modifies and returns ``records``."""
    present = set().union(*(r.keys() for r in records)) if records else set()
    for label, weight_key in _FILL_WEIGHT.items():
        if label in present and any(label not in r for r in records):
            present.add(weight_key)
    for r in records:
        n = r[K.POSITIONS].shape[0]
        for label, weight_key in _FILL_WEIGHT.items():
            if weight_key in present and weight_key not in r:
                r[weight_key] = torch.tensor(1.0 if label in r else 0.0, dtype=torch.float64)
        for key, (shape, dtype) in _FILL.items():
            if key in present and key not in r:
                r[key] = torch.zeros(shape(n), dtype=dtype)
    return records


def records_from_atoms(
    frames: Iterable[tuple[Any, dict[str, Any]]], keys: LabelKeys, source: str
) -> list[AtomicData]:
    """Convert ``(atoms, extra)`` pairs to uniform records (see :func:`make_uniform`)."""
    return make_uniform([atoms_to_record(a, keys, source, i, extra) for i, (a, extra) in enumerate(frames)])


def _read_ase(path: Path, ase_format: str | None, index: str) -> Iterator[tuple[Any, dict[str, Any]]]:
    """``ase.io.read(path, index)`` frames, each paired with an empty extra-label dict."""
    import ase.io

    try:
        frames = ase.io.read(str(path), index=index, format=ase_format)
    except Exception as exc:  # ASE raises many types on malformed files; report them uniformly
        raise DataError(
            f"{path}: cannot be read as {ase_format or 'an ASE format'} ({type(exc).__name__}: {exc})"
        ) from exc
    for atoms in frames if isinstance(frames, list) else [frames]:
        yield atoms, {}


def _read_db(path: Path, selection: str | None) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Rows of an ASE database as ``(atoms, key_value_pairs | data)``."""
    import ase.db

    try:
        db = ase.db.connect(str(path))
        rows = list(db.select(selection))
    except Exception as exc:  # sqlite/json backends raise their own types on corrupt files
        raise DataError(f"{path}: cannot be read as an ASE database ({type(exc).__name__}: {exc})") from exc
    for row in rows:
        extra = dict(row.key_value_pairs)
        extra.update(row.data)
        yield row.toatoms(), extra


def load_ase(
    path: str | Path,
    format: str | None = None,
    index: str = ":",
    keys: LabelKeys | Mapping[str, str] | None = None,
    selection: str | None = None,
) -> ListDataset:
    """Load every frame of an ASE-readable file (extxyz, traj, db, OUTCAR, vasprun.xml, ...) in eV, Å.

    ``format`` is the ``ase.io`` format name (guessed by ASE when ``None``; ``"db"`` reads an ASE database,
    where ``selection`` is an ASE db query). ``keys`` renames labels and weights: a :class:`LabelKeys` or a
    mapping (``{"energy": "REF_energy", "forces": "REF_forces"}``). ``metadata["stored_keys"]`` lists what
    the file holds, so a file read with the wrong keys can be told from one without labels;
    ``metadata["isolated_atom_indices"]`` the frames with ``config_type=IsolatedAtom`` (E0 references).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    keys = LabelKeys.from_option(keys)
    is_db = format == "db" or (format is None and path.suffix == ".db")
    frames = list(_read_db(path, selection) if is_db else _read_ase(path, format, index))
    records = records_from_atoms(frames, keys, str(path))
    metadata = {
        "format": "ase-db" if is_db else (format or "ase"),
        "units": dict(DEFAULT_UNITS),
        "label_keys": keys.__dict__,
        "stored_keys": stored_keys(frames),
        "isolated_atom_indices": [
            i
            for i, (atoms, extra) in enumerate(frames)
            if _lookup(atoms, keys.config_type, extra) == ISOLATED_ATOM
        ],
    }
    return ListDataset(records, str(path), metadata)
