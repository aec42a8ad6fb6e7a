"""OC20 (Chanussot et al. 2021): S2EF / IS2RE LMDBs, ASE-DB LMDBs (``.aselmdb``), S2EF ``.extxyz.xz`` +
``.txt`` pairs, and DFT relaxation trajectories (``.traj``).

Units are eV and Å throughout (as released). Records carry ``tags`` (0 subsurface, 1 surface, 2 adsorbate),
``fixed`` (atoms held fixed in the DFT relaxation), ``sid`` and ``fid`` where the source has them, and
are fully periodic (OC20 slabs are computed in 3D-periodic cells with vacuum along z).

Energy reference, handled explicitly: the LMDB labels (``y``, ``y_init``, ``y_relaxed``) are adsorption
energies (total DFT energy minus the clean-slab + gas-phase reference); ``.traj`` and ``.extxyz.xz`` hold
total DFT energies, the ``.txt`` beside each ``.extxyz.xz`` holds the reference of each frame.
``energy_reference=None`` keeps what the source stores (named in ``metadata["energy_reference"]``);
``"total"`` or ``"adsorption"`` converts, using the ``.txt`` references or ``reference_energies``
(``{sid: eV}``, or a path to OC20's ``oc20_ref.pkl`` / a text file whose lines end with the reference).
"""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlip.data import AtomicData, DataError, validate
from mlip.data import keys as K
from mlip.datasets.ase_formats import LabelKeys, atoms_to_record, load_ase
from mlip.datasets.base import (
    DEFAULT_UNITS,
    FRAME_ID,
    REFERENCE_ENERGY,
    SYSTEM_ID,
    AtomicDataset,
    ConcatDataset,
    ListDataset,
)
from mlip.datasets.safe_pickle import record_fields, restricted_loads

EnergyRefs = Mapping[int, float]
_SID = re.compile(r"random(\d+)")


def _int_id(value: Any) -> int:
    """An OC20 system / frame id as int (``"random123"`` -> 123, ``"frame7"`` -> 7, ints kept)."""
    if isinstance(value, torch.Tensor):
        return int(value.reshape(-1)[0])
    digits = re.search(r"(\d+)$", str(value).strip())
    if digits is None:
        raise ValueError(f"not an OC20 id: {value!r}")
    return int(digits.group(1))


def read_reference_energies(refs: EnergyRefs | str | Path | None) -> dict[int, float] | None:
    """``{sid: reference energy (eV)}`` from a mapping, OC20's ``oc20_ref.pkl`` or a text/CSV file."""
    if refs is None:
        return None
    if isinstance(refs, Mapping):
        return {_int_id(k): float(v) for k, v in refs.items()}
    path = Path(refs)
    if path.suffix == ".pkl":
        loaded = restricted_loads(path.read_bytes(), str(path))
        if not isinstance(loaded, Mapping):
            raise DataError(f"{path}: expected a pickled dict of reference energies")
        return read_reference_energies(loaded)
    out = {}
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0]:
            try:
                out[_int_id(parts[0])] = float(parts[-1])
            except ValueError as exc:
                raise DataError(f"{path}, line {line_no}: expected '<sid>,...,<reference energy>'") from exc
    return out


def convert_energy(
    data: AtomicData, stored: str, wanted: str | None, reference: float | None, where: str
) -> AtomicData:
    """Convert ``data["energy"]`` from the ``stored`` reference (``"total"``/``"adsorption"``) to ``wanted``.

    ``total = adsorption + reference`` (eV). Adds ``reference_energy`` when known. Modifies ``data``.
    """
    if reference is not None:
        data[REFERENCE_ENERGY] = torch.tensor(float(reference), dtype=torch.float64)
    if wanted is None or wanted == stored or K.ENERGY not in data:
        return data
    if wanted not in ("total", "adsorption"):
        raise DataError(f"option energy_reference: must be None, 'total' or 'adsorption', got {wanted!r}")
    if reference is None:
        raise DataError(
            f"{where}: field 'reference_energy' missing: cannot convert a {stored} energy to {wanted}"
        )
    sign = 1.0 if wanted == "total" else -1.0
    data[K.ENERGY] = data[K.ENERGY] + sign * float(reference)
    return data


_OPEN_ENVS: dict[tuple[int, str], Any] = {}


def _read_txn(path: Path) -> Any:
    """A read transaction on the LMDB at ``path``, opened once per process and shared (py-lmdb allows one
    environment per file and process)."""
    key = (os.getpid(), str(path.resolve()))
    if key not in _OPEN_ENVS:
        import lmdb

        try:
            env = lmdb.open(
                str(path), subdir=path.is_dir(), readonly=True, lock=False, readahead=False, meminit=False
            )
        except lmdb.Error as exc:
            raise DataError(f"{path}: not a readable LMDB file ({exc})") from exc
        _OPEN_ENVS[key] = env.begin(write=False)
    return _OPEN_ENVS[key]


class _LazyLmdb:
    """Read access to an LMDB opened on first use in each process (DataLoader workers included)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, key: bytes) -> bytes | None:
        """Value stored under ``key`` (``None`` when absent)."""
        return _read_txn(self.path).get(key)

    def keys(self) -> list[bytes]:
        """All keys, in LMDB order."""
        return [k for k, _ in _read_txn(self.path).cursor()]


def _tensor(value: Any, dtype: torch.dtype) -> torch.Tensor:
    """``value`` (tensor, numpy array or number) as a tensor of ``dtype``."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(dtype)
    return torch.as_tensor(np.asarray(value), dtype=dtype)


class OC20LmdbDataset(AtomicDataset):
    """Records of one OC20 S2EF or IS2RE LMDB file (pickled torch-geometric ``Data``, restricted unpickler).

    Energy: ``y`` (S2EF), else ``target`` (IS2RE: ``"y_relaxed"`` by default, or ``"y_init"``); forces from
    ``force``. ``positions="relaxed"`` takes ``pos_relaxed`` (IS2RE) instead of ``pos``.
    """

    def __init__(
        self,
        path: str | Path,
        energy_reference: str | None = None,
        reference_energies: EnergyRefs | str | Path | None = None,
        target: str = "y_relaxed",
        positions: str = "initial",
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path} does not exist")
        if positions not in ("initial", "relaxed"):
            raise DataError(f"option positions: must be 'initial' or 'relaxed', got {positions!r}")
        self.source = str(self.path)
        self.lmdb = _LazyLmdb(self.path)
        self.target, self.positions = target, positions
        self.energy_reference = energy_reference
        self.refs = read_reference_energies(reference_energies)
        length = self.lmdb.get(b"length")
        if length is not None:
            self.length = int(restricted_loads(length, f"{self.path}, key 'length'"))
        else:
            self.length = sum(1 for k in self.lmdb.keys() if k.isdigit())
        self.metadata = {
            "format": "oc20-lmdb",
            "units": dict(DEFAULT_UNITS),
            "energy_reference": energy_reference or "adsorption",
            "target": target,
            "positions": positions,
        }

    def __len__(self) -> int:
        return self.length

    def get(self, index: int) -> AtomicData:
        """Record ``index`` (LMDB key ``"<index>"``) in eV, Å; tags, fixed, sid, fid when stored."""
        where = f"{self.path}, record {index}"
        raw = self.lmdb.get(str(index).encode("ascii"))
        if raw is None:
            raise DataError(f"{where}: key '{index}' missing from the LMDB")
        fields = record_fields(restricted_loads(raw, where), where)
        return self._convert(fields, where, index)

    def _convert(self, f: dict[str, Any], where: str, index: int) -> AtomicData:
        """AtomicData from the attribute dict of one ``Data`` record."""
        pos_key = "pos_relaxed" if self.positions == "relaxed" else "pos"
        for field in (pos_key, "atomic_numbers", "cell"):
            if field not in f:
                raise DataError(f"{where}: missing field '{field}' (record has {sorted(f)})")
        try:
            data: AtomicData = {
                K.POSITIONS: _tensor(f[pos_key], torch.float64),
                K.ATOMIC_NUMBERS: _tensor(f["atomic_numbers"], torch.float64).round().to(torch.int64),
                K.CELL: _tensor(f["cell"], torch.float64).reshape(3, 3),
                K.PBC: torch.ones(3, dtype=torch.bool),
            }
        except RuntimeError as exc:
            raise DataError(f"{where}: field 'cell' cannot be reshaped to [3, 3] ({exc})") from exc
        n = data[K.POSITIONS].shape[0]
        if "natoms" in f and int(_tensor(f["natoms"], torch.int64).reshape(-1)[0]) != n:
            raise DataError(f"{where}: field 'natoms' is {f['natoms']}, but positions hold {n} atoms")
        energy_key = "y" if "y" in f else self.target
        if energy_key in f:
            data[K.ENERGY] = _tensor(f[energy_key], torch.float64).reshape(())
        if "force" in f:
            data[K.FORCES] = _tensor(f["force"], torch.float64)
        for field, key, dtype in (("tags", K.TAGS, torch.int64), ("fixed", K.FIXED, torch.bool)):
            if field in f:
                value = _tensor(f[field], torch.float64 if dtype == torch.bool else dtype).reshape(-1)
                if value.shape != (n,):
                    raise DataError(
                        f"{where}: field '{field}' has shape {tuple(value.shape)}, expected [{n}]"
                    )
                data[key] = value.to(dtype)
        for field, key in (("sid", SYSTEM_ID), ("fid", FRAME_ID)):
            if field in f:
                data[key] = torch.tensor(_int_id(f[field]), dtype=torch.int64)
        validate(data, self.source, index)
        sid = int(data[SYSTEM_ID]) if SYSTEM_ID in data else None
        ref = self.refs.get(sid) if (self.refs is not None and sid is not None) else None
        return convert_energy(data, "adsorption", self.energy_reference, ref, where)


def _files(path: Path, suffix: str) -> list[Path]:
    """``path`` itself, or the files of folder ``path`` ending in ``suffix`` (sorted)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.endswith(suffix))
        if not files:
            raise DataError(f"{path}: no *{suffix} files in this folder")
        return files
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return [path]


def _concat(parts: list[AtomicDataset], path: Path) -> AtomicDataset:
    return parts[0] if len(parts) == 1 else ConcatDataset(parts, str(path))


def load_oc20_lmdb(path: str | Path, **options: Any) -> AtomicDataset:
    """An OC20 S2EF/IS2RE ``.lmdb`` file, or a folder of them in name order (options: see
    :class:`OC20LmdbDataset`)."""
    path = Path(path)
    return _concat([OC20LmdbDataset(p, **options) for p in _files(path, ".lmdb")], path)


class AseLmdbDataset(AtomicDataset):
    """Rows of a fairchem ASE-DB LMDB (``.aselmdb``): keys ``"<id>"`` -> zlib-compressed JSON of an ASE row.

    Labels as stored in the row (energy, forces, stress; eV, Å); ``key_value_pairs`` and ``data`` may hold
    ``sid``, ``fid`` and ``ref_energy``, which are kept. ``keys`` renames labels as in
    :class:`mlip.datasets.ase_formats.LabelKeys`.
    """

    def __init__(
        self, path: str | Path, keys: LabelKeys | dict[str, str] | None = None,
        energy_reference: str | None = None, stored_reference: str = "total",
    ) -> None:  # fmt: skip
        self.path = Path(path)
        self.source = str(self.path)
        self.lmdb = _LazyLmdb(self.path)
        self.ids = sorted(int(k) for k in self.lmdb.keys() if k.isdigit())
        deleted = self.lmdb.get(b"deleted_ids")
        if deleted is not None:
            removed = set(self._decode(deleted, "deleted_ids"))
            self.ids = [i for i in self.ids if i not in removed]
        self.keys = LabelKeys.from_option(keys)
        self.energy_reference, self.stored_reference = energy_reference, stored_reference
        self.metadata = {
            "format": "aselmdb",
            "units": dict(DEFAULT_UNITS),
            "energy_reference": energy_reference or stored_reference,
        }

    def _decode(self, raw: bytes, where: str) -> Any:
        """JSON value of one zlib-compressed LMDB entry."""
        try:
            return json.loads(zlib.decompress(raw))
        except (zlib.error, ValueError) as exc:
            raise DataError(f"{self.path}, {where}: corrupt entry ({exc})") from exc

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, index: int) -> AtomicData:
        """Row ``ids[index]`` as a record (eV, Å)."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator
        from ase.constraints import dict2constraint

        row_id = self.ids[index]
        where = f"{self.path}, record {index} (id {row_id})"
        raw = self.lmdb.get(str(row_id).encode("ascii"))
        if raw is None:
            raise DataError(f"{where}: row missing from the LMDB")
        row = self._decode(raw, f"record {index} (id {row_id})")
        for field in ("numbers", "positions"):
            if field not in row:
                raise DataError(f"{where}: missing field '{field}'")
        try:
            atoms = Atoms(
                numbers=row["numbers"],
                positions=row["positions"],
                cell=row.get("cell"),
                pbc=row.get("pbc", False),
                tags=row.get("tags"),
            )
            atoms.set_constraint([dict2constraint(c) for c in row.get("constraints", [])])
        except (ValueError, TypeError, KeyError) as exc:
            raise DataError(f"{where}: field 'positions'/'cell' malformed ({exc})") from exc
        results = {k: np.asarray(row[k]) for k in ("energy", "free_energy", "forces", "stress") if k in row}
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        extra = {**row.get("key_value_pairs", {}), **row.get("data", {})}
        data = atoms_to_record(atoms, self.keys, self.source, index, extra)
        for field, key in (("sid", SYSTEM_ID), ("fid", FRAME_ID)):
            if field in extra:
                data[key] = torch.tensor(_int_id(extra[field]), dtype=torch.int64)
        ref = extra.get("ref_energy")
        return convert_energy(data, self.stored_reference, self.energy_reference, ref, where)


def load_aselmdb(path: str | Path, **options: Any) -> AtomicDataset:
    """A ``.aselmdb`` file, or a folder of them in name order (options: see :class:`AseLmdbDataset`)."""
    path = Path(path)
    return _concat([AseLmdbDataset(p, **options) for p in _files(path, ".aselmdb")], path)


def _with_ids(
    dataset: ListDataset, ids: Callable[[int], tuple[int, int, float | None]], wanted: str | None, stored: str
) -> ListDataset:
    """Add ``sid``, ``fid`` and the energy reference to every record of ``dataset`` (``ids(i)``)."""
    for i, record in enumerate(dataset.records):
        sid, fid, ref = ids(i)
        record[SYSTEM_ID] = torch.tensor(sid, dtype=torch.int64)
        record[FRAME_ID] = torch.tensor(fid, dtype=torch.int64)
        convert_energy(record, stored, wanted, ref, f"{dataset.source}, record {i}")
    dataset.metadata.update(energy_reference=wanted or stored)
    return dataset


def _read_s2ef_pair(xyz: Path, energy_reference: str | None) -> ListDataset:
    """One ``.extxyz.xz`` (total energies) and its ``.txt`` of ``random<sid>,frame<fid>,<ref>`` lines."""
    txt = (
        xyz.with_name(xyz.name[: -len(".extxyz.xz")] + ".txt")
        if xyz.name.endswith(".xz")
        else xyz.with_suffix(".txt")
    )
    if not txt.is_file():
        raise DataError(f"{xyz}: the paired reference file {txt.name} is missing")
    dataset = load_ase(xyz, format="extxyz")
    lines = [line.split(",") for line in txt.read_text().splitlines() if line.strip()]
    if len(lines) != len(dataset):
        raise DataError(f"{txt}: {len(lines)} lines for {len(dataset)} frames in {xyz.name}")

    def ids(i: int) -> tuple[int, int, float | None]:
        try:
            return _int_id(lines[i][0]), _int_id(lines[i][1]), float(lines[i][2])
        except (IndexError, ValueError) as exc:
            raise DataError(
                f"{txt}, record {i}: field 'sid,fid,reference_energy' malformed: {lines[i]}"
            ) from exc

    dataset.metadata["format"] = "oc20-s2ef"
    return _with_ids(dataset, ids, energy_reference, "total")


def load_s2ef_extxyz(path: str | Path, energy_reference: str | None = None) -> AtomicDataset:
    """S2EF ``.extxyz.xz`` + ``.txt`` pairs: one file or a folder of them (energies stored as totals)."""
    path = Path(path)
    return _concat([_read_s2ef_pair(p, energy_reference) for p in _files(path, ".extxyz.xz")], path)


def load_oc20_trajectories(
    path: str | Path,
    energy_reference: str | None = None,
    reference_energies: EnergyRefs | str | Path | None = None,
) -> AtomicDataset:
    """OC20 relaxation trajectories ``random<sid>.traj`` (one file or a folder): total DFT energies, raw
    forces, tags, fixed atoms; ``sid`` from the file name, ``fid`` the frame index."""
    path = Path(path)
    refs = read_reference_energies(reference_energies) or {}
    parts = []
    for traj in _files(path, ".traj"):
        match = _SID.search(traj.stem)
        if match is None:
            raise DataError(f"{traj}: file name does not hold an OC20 system id (random<sid>.traj)")
        sid = int(match.group(1))
        dataset = load_ase(traj, format="traj")
        dataset.metadata["format"] = "oc20-traj"
        parts.append(
            _with_ids(dataset, lambda i, sid=sid: (sid, i, refs.get(sid)), energy_reference, "total")
        )
    return _concat(parts, path)
