"""QM9 (Ramakrishnan et al. 2014): the raw ``dsgdb9nsd_*.xyz`` records and the ``qm9pack`` CSV files.

Raw record layout: line 1 the atom count; line 2 ``gdb <id>`` and 15 properties (A, B, C in GHz; mu in D;
alpha in a0^3; homo, lumo, gap in Ha; r2 in a0^2; zpve, U0, U, H, G in Ha; Cv in cal/mol/K); then one
line per atom ``element x y z mulliken_charge`` (Å); then frequencies, SMILES and InChI. Numbers may use
Mathematica exponents (``1.2*^-6``).

Each record gets ``targets`` ``[19]`` in torch-geometric's ``QM9`` order and units (:data:`TARGET_NAMES`,
:data:`TARGET_UNITS`): energies Hartree -> eV (``ase.units.Hartree``), atomization energies from the
single-atom references (:data:`ATOM_REFS`), mu, alpha, r2, Cv, A, B, C as in the file.
``bohr_to_angstrom=True`` converts alpha to Å^3 and r2 to Å^2 instead (then no longer torch-geometric
units). ``energy`` (default ``"U0"``, eV) picks the target stored as the record's energy label. QM9 has no
forces (all geometries are relaxed minima).
"""

from __future__ import annotations

import csv
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import units
from ase.data import atomic_numbers

from mlip.data import AtomicData, DataError, validate
from mlip.datasets.base import DEFAULT_UNITS, TARGETS, ListDataset, molecule_record

TARGET_NAMES = (
    "mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H", "G", "cv",
    "U0_atom", "U_atom", "H_atom", "G_atom", "A", "B", "C",
)  # fmt: skip
TARGET_UNITS = (
    "D", "a0^3", "eV", "eV", "eV", "a0^2", "eV", "eV", "eV", "eV", "eV", "cal/mol/K",
    "eV", "eV", "eV", "eV", "GHz", "GHz", "GHz",
)  # fmt: skip
# Order of the 15 properties on line 2 of a raw record.
RAW_PROPERTIES = (
    "A",
    "B",
    "C",
    "mu",
    "alpha",
    "homo",
    "lumo",
    "gap",
    "r2",
    "zpve",
    "U0",
    "U",
    "H",
    "G",
    "cv",
)
CSV_COLUMNS = {
    "A": "RotA_GHz", "B": "RotB_GHz", "C": "RotC_GHz", "mu": "Dipole_debye", "alpha": "Polarizability_bohr3",
    "homo": "HOMO_au", "lumo": "LUMO_au", "gap": "HOMO_LUMO_gap_au", "r2": "R2_bohr2", "zpve": "ZPVE_au",
    "U0": "InternalEnergy_0K_au", "U": "InternalEnergy_298K_au", "H": "Enthalphy_298K_au",
    "G": "GibbsFreeEnergy_298K_au", "cv": "Heatcapacity_Cv_cal_mol_K",
}  # fmt: skip
HARTREE_PROPERTIES = ("homo", "lumo", "gap", "zpve", "U0", "U", "H", "G")
# Single-atom reference energies (Hartree) of QM9's atomref table: U0, U(298.15 K), H, G per element.
ATOM_REFS = {
    1: (-0.500273, -0.498857, -0.497912, -0.510927),
    6: (-37.846772, -37.845355, -37.844411, -37.861317),
    7: (-54.583861, -54.582445, -54.581501, -54.598897),
    8: (-75.064579, -75.063163, -75.062219, -75.079532),
    9: (-99.718730, -99.717314, -99.716370, -99.733544),
}
NUM_UNCHARACTERIZED = 3054
_FLOAT = re.compile(r"\*\^")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_ELEMENT = re.compile(r"[A-Z][a-z]?")


def _float(token: str) -> float:
    """A QM9 number, accepting Mathematica exponents (``1.2*^-6`` -> ``1.2e-6``)."""
    return float(_FLOAT.sub("e", token))


def _parse_float_list(text: str) -> np.ndarray:
    """All numbers of a nested list literal such as ``[[0.,1.2*^-6,3],[...]]`` as a flat float64 array."""
    return np.array(_NUMBER.findall(_FLOAT.sub("e", text)), dtype=np.float64)


def targets_from_properties(
    props: dict[str, float], numbers: np.ndarray, bohr_to_angstrom: bool
) -> np.ndarray:
    """The 19 torch-geometric targets ``[19]`` from the 15 raw properties (Hartree, a0) and atomic numbers."""
    out = dict(props)
    for name in HARTREE_PROPERTIES:
        out[name] = props[name] * units.Hartree
    refs = np.array([ATOM_REFS[int(z)] for z in numbers]).sum(axis=0)
    for k, name in enumerate(("U0", "U", "H", "G")):
        out[f"{name}_atom"] = (props[name] - refs[k]) * units.Hartree
    if bohr_to_angstrom:
        out["alpha"] = props["alpha"] * units.Bohr**3
        out["r2"] = props["r2"] * units.Bohr**2
    return np.array([out[name] for name in TARGET_NAMES], dtype=np.float64)


def _record(
    positions: np.ndarray,
    symbols: list[str],
    props: dict[str, float],
    energy: str,
    bohr_to_angstrom: bool,
    source: str,
    gdb_id: int,
) -> AtomicData:
    """Validated record of molecule ``gdb_id``: positions Å, energy eV (target ``energy``), targets [19]."""
    try:
        numbers = np.array([atomic_numbers[s] for s in symbols], dtype=np.int64)
    except KeyError as exc:
        raise DataError(
            f"{source}, record gdb {gdb_id}: field 'atomic_numbers': unknown element {exc}"
        ) from exc
    unknown = sorted(set(numbers.tolist()) - set(ATOM_REFS))
    if unknown:
        raise DataError(
            f"{source}, record gdb {gdb_id}: field 'atomic_numbers' has {unknown}, QM9 holds H C N O F"
        )
    for name, value in props.items():
        if not np.isfinite(value):
            raise DataError(f"{source}, record gdb {gdb_id}: field '{name}' is not finite")
    targets = targets_from_properties(props, numbers, bohr_to_angstrom)
    data = molecule_record(positions, numbers, targets[TARGET_NAMES.index(energy)])
    data[TARGETS] = torch.from_numpy(targets)
    return validate(data, source, gdb_id)


def parse_xyz_record(text: str, source: str) -> tuple[int, np.ndarray, list[str], dict[str, float]]:
    """Parse one raw record: ``(gdb id, positions [N, 3] Å, element symbols, the 15 raw properties)``."""
    lines = text.splitlines()
    try:
        n = int(lines[0])
    except (IndexError, ValueError) as exc:
        raise DataError(f"{source}: field 'num_atoms': line 1 is not an atom count") from exc
    header = lines[1].split() if len(lines) > 1 else []
    if len(header) < 17 or header[0] != "gdb":
        raise DataError(
            f"{source}: field 'properties': line 2 needs 'gdb <id>' and 15 properties, got {len(header)}"
        )
    gdb_id = int(header[1])
    where = f"{source}, record gdb {gdb_id}"
    try:
        props = {name: _float(tok) for name, tok in zip(RAW_PROPERTIES, header[2:17], strict=True)}
    except ValueError as exc:
        raise DataError(f"{where}: field 'properties': {exc}") from exc
    if len(lines) < 2 + n:
        raise DataError(f"{where}: field 'positions': {len(lines) - 2} atom lines, expected {n} (truncated?)")
    symbols, positions = [], []
    for k, line in enumerate(lines[2 : 2 + n]):
        tokens = line.split()
        try:
            symbols.append(tokens[0])
            positions.append([_float(t) for t in tokens[1:4]])
        except (IndexError, ValueError) as exc:
            raise DataError(f"{where}: field 'positions': atom line {k + 1} is malformed ({line!r})") from exc
    pos = np.array(positions, dtype=np.float64)
    if pos.shape != (n, 3):
        raise DataError(f"{where}: field 'positions' has shape {pos.shape}, expected [{n}, 3]")
    return gdb_id, pos, symbols, props


def read_uncharacterized(path: str | Path) -> set[int]:
    """GDB ids listed in QM9's ``uncharacterized.txt`` (a header, then lines starting with the 1-based id)."""
    ids = set()
    for line in Path(path).read_text().splitlines():
        tokens = line.split()
        if len(tokens) >= 2 and tokens[0].isdigit():
            ids.add(int(tokens[0]))
    return ids


def _raw_texts(path: Path) -> Iterator[tuple[str, str]]:
    """``(source name, text)`` of each raw record in a file, folder or tarball (sorted by name)."""
    if path.is_dir():
        for f in sorted(path.glob("dsgdb9nsd_*.xyz")):
            yield str(f), f.read_text()
    elif tarfile.is_tarfile(path):
        try:
            with tarfile.open(path) as tar:
                members = sorted(
                    (m for m in tar if m.isfile() and m.name.endswith(".xyz")), key=lambda m: m.name
                )
                for m in members:
                    yield f"{path}:{m.name}", tar.extractfile(m).read().decode()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(f"{path}: corrupt or truncated tar archive ({exc})") from exc
    elif path.suffixes[-2:] == [".tar", ".bz2"] or path.suffix in (".bz2", ".tar"):
        raise DataError(f"{path}: not a readable tar archive (corrupt or truncated)")
    else:
        yield str(path), path.read_text()


def _find_uncharacterized(path: Path, given: str | Path | None) -> set[int]:
    """Excluded ids: from ``given``, else ``uncharacterized.txt`` in/next to ``path`` or in its tarball."""
    if given is not None:
        return read_uncharacterized(given)
    folder = path if path.is_dir() else path.parent
    if (folder / "uncharacterized.txt").is_file():
        return read_uncharacterized(folder / "uncharacterized.txt")
    if path.is_file() and tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            for m in tar:
                if m.name.endswith("uncharacterized.txt"):
                    text = tar.extractfile(m).read().decode()
                    return {
                        int(t.split()[0])
                        for t in text.splitlines()
                        if len(t.split()) >= 2 and t.split()[0].isdigit()
                    }
    raise FileNotFoundError(
        f"{path}: exclude_uncharacterized needs QM9's uncharacterized.txt (figshare 1057644): pass "
        "uncharacterized=<path> or put it next to the data"
    )


def _metadata(fmt: str, energy: str, bohr_to_angstrom: bool, excluded: int) -> dict:
    """Dataset metadata: format, units, target names/units, number of excluded molecules."""
    target_units = list(TARGET_UNITS)
    if bohr_to_angstrom:
        target_units[TARGET_NAMES.index("alpha")] = "Å^3"
        target_units[TARGET_NAMES.index("r2")] = "Å^2"
    return {
        "format": fmt,
        "units": dict(DEFAULT_UNITS),
        "energy_target": energy,
        "targets": {"names": list(TARGET_NAMES), "units": target_units},
        "excluded_uncharacterized": excluded,
    }


def _finish(
    records: Iterable[tuple[int, AtomicData]],
    path: Path,
    exclude: set[int],
    fmt: str,
    energy: str,
    bohr: bool,
) -> ListDataset:
    """Sort by gdb id, drop excluded ids, wrap in a dataset."""
    kept = sorted((r for r in records if r[0] not in exclude), key=lambda r: r[0])
    dataset = ListDataset([r for _, r in kept], str(path), _metadata(fmt, energy, bohr, len(exclude)))
    dataset.gdb_ids = np.array([i for i, _ in kept], dtype=np.int64)
    return dataset


def _check_energy(energy: str) -> None:
    if energy not in TARGET_NAMES:
        raise DataError(f"option energy: must be one of {TARGET_NAMES}, got {energy!r}")


def load_qm9(
    path: str | Path,
    energy: str = "U0",
    exclude_uncharacterized: bool = False,
    uncharacterized: str | Path | None = None,
    bohr_to_angstrom: bool = False,
) -> ListDataset:
    """Raw QM9 records from one ``.xyz``, a folder of them or the ``.tar.bz2``; sorted by gdb id.

    ``exclude_uncharacterized`` drops the 3,054 molecules of ``uncharacterized.txt`` (path given or found
    next to / inside the data). The dataset's ``gdb_ids`` ``[M]`` maps records to QM9 ids.
    """
    path = Path(path)
    _check_energy(energy)
    exclude = _find_uncharacterized(path, uncharacterized) if exclude_uncharacterized else set()
    records = []
    for source, text in _raw_texts(path):
        gdb_id, pos, symbols, props = parse_xyz_record(text, source)
        records.append((gdb_id, _record(pos, symbols, props, energy, bohr_to_angstrom, source, gdb_id)))
    if not records:
        raise DataError(f"{path}: no dsgdb9nsd_*.xyz records found")
    return _finish(records, path, exclude, "qm9", energy, bohr_to_angstrom)


def _cell(row: dict[str, str], column: str, parse: Callable[[str], Any], where: str) -> Any:
    """``parse(row[column])``; :class:`DataError` naming ``where`` and the column on a malformed value."""
    try:
        return parse(row[column])
    except ValueError as exc:
        raise DataError(f"{where}: field '{column}': malformed value ({exc})") from exc


def _csv_records(
    reader: csv.DictReader, source: str, energy: str, bohr_to_angstrom: bool
) -> Iterator[tuple[int, AtomicData]]:
    """``(gdb id, record)`` of each row of a ``qm9pack`` CSV; :class:`DataError` naming row and field."""
    missing = [
        c
        for c in ("Index", "Elements", "XYZ_Ang", *CSV_COLUMNS.values())
        if c not in (reader.fieldnames or [])
    ]
    if missing:
        raise DataError(f"{source}: missing field(s) {missing} in the CSV header")
    for row_no, row in enumerate(reader):
        where = f"{source}, record {row_no} (CSV row {row_no + 2})"
        missing = [name for name, value in row.items() if value is None]
        if missing:
            raise DataError(
                f"{where}: field '{missing[0]}' missing (row cut short: {len(missing)} fields absent)"
            )
        if None in row:
            raise DataError(
                f"{where}: {len(row[None])} values beyond the {len(reader.fieldnames)} header fields"
            )
        gdb_id = _cell(row, "Index", int, where)
        symbols = _cell(row, "Elements", _ELEMENT.findall, where)
        positions = _cell(row, "XYZ_Ang", _parse_float_list, where).reshape(-1, 3)
        props = {name: _cell(row, col, _float, where) for name, col in CSV_COLUMNS.items()}
        if positions.shape != (len(symbols), 3):
            raise DataError(
                f"{source}, record gdb {gdb_id}: field 'positions' has shape {positions.shape}, "
                f"expected [{len(symbols)}, 3]"
            )
        yield gdb_id, _record(positions, symbols, props, energy, bohr_to_angstrom, source, gdb_id)


def load_qm9_csv(
    path: str | Path,
    energy: str = "U0",
    exclude_uncharacterized: bool = False,
    uncharacterized: str | Path | None = None,
    bohr_to_angstrom: bool = False,
) -> ListDataset:
    """QM9 from the ``qm9pack`` CSV layout (one molecule per row; Å, Hartree, a0 as in the raw records).

    The full ``qm9pack`` tables already leave out the uncharacterized molecules.
    """
    path = Path(path)
    _check_energy(energy)
    exclude = _find_uncharacterized(path, uncharacterized) if exclude_uncharacterized else set()
    source = str(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            records = list(_csv_records(csv.DictReader(f), source, energy, bohr_to_angstrom))
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: not a UTF-8 text CSV file ({exc.reason} in its bytes)") from exc
    except csv.Error as exc:
        raise DataError(f"{source}: malformed CSV ({exc})") from exc
    return _finish(records, path, exclude, "qm9-csv", energy, bohr_to_angstrom)
