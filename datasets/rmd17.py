"""rMD17 and the original MD17: molecular-dynamics frames of one molecule in ``.npz`` files.

Layouts read:

* the rMD17 release: ``<root>/npz_data/rmd17_<molecule>.npz`` (100k frames) with
  ``<root>/splits/index_{train,test}_0N.csv`` (official splits, one frame index per line);
* per-split files ``rmd17_<molecule>_{train,test}_0N.npz`` (as in ``andersx/rmd17-npz``);
* any single npz with rMD17 keys (``nuclear_charges, coords, energies, forces``; ``old_*`` hold the
  original MD17 labels and are ignored unless ``old_labels=True``) or MD17 keys (``z, R, E, F``).

Units at the boundary: energies kcal/mol -> eV and forces kcal/mol/Å -> eV/Å
(1 kcal/mol = ``ase.units.kcal / ase.units.mol`` = 0.0433641 eV); coordinates are already Å.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from ase import units

from mlip.data import AtomicData, DataError
from mlip.datasets.base import DEFAULT_UNITS, AtomicDataset, Subset, check_finite, molecule_record
from mlip.datasets.splits import read_index_file

KCAL_PER_MOL = units.kcal / units.mol  # eV

RMD17_KEYS = {"numbers": "nuclear_charges", "positions": "coords", "energy": "energies", "forces": "forces"}
RMD17_OLD_KEYS = {
    "numbers": "nuclear_charges",
    "positions": "coords",
    "energy": "old_energies",
    "forces": "old_forces",
}
MD17_KEYS = {"numbers": "z", "positions": "R", "energy": "E", "forces": "F"}


class FramesDataset(AtomicDataset):
    """Frames of one molecule held as arrays; records are built on access (no per-record validation).

    ``positions`` ``[F, N, 3]`` Å, ``numbers`` ``[N]``, ``energies`` ``[F]`` eV, ``forces`` ``[F, N, 3]``
    eV/Å. Shapes and finiteness are checked once here, naming the source, record and field.
    """

    def __init__(
        self,
        positions: np.ndarray,
        numbers: np.ndarray,
        energies: np.ndarray | None,
        forces: np.ndarray | None,
        source: str,
        metadata: dict,
    ) -> None:
        self.source = source
        self.metadata = metadata
        n_atoms = numbers.shape[0]
        if numbers.ndim != 1 or numbers.size == 0 or numbers.min() < 1 or numbers.max() > 118:
            raise DataError(
                f"{source}: field 'atomic_numbers' holds {numbers.tolist()}, expected [N] in 1..118"
            )
        if positions.ndim != 3 or positions.shape[1:] != (n_atoms, 3):
            raise DataError(
                f"{source}: field 'positions' has shape {positions.shape}, expected [frames, {n_atoms}, 3]"
            )
        frames = positions.shape[0]
        check_finite(positions, source, "positions")
        if energies is not None:
            energies = energies.reshape(-1) if energies.size == frames else energies
            if energies.shape != (frames,):
                raise DataError(f"{source}: field 'energy' has shape {energies.shape}, expected [{frames}]")
            check_finite(energies[:, None], source, "energy")
        if forces is not None:
            if forces.shape != positions.shape:
                raise DataError(
                    f"{source}: field 'forces' has shape {forces.shape}, expected {positions.shape}"
                )
            check_finite(forces, source, "forces")
        self.positions = np.ascontiguousarray(positions, dtype=np.float64)
        self.numbers = np.ascontiguousarray(numbers, dtype=np.int64)
        self.energies = None if energies is None else np.ascontiguousarray(energies, dtype=np.float64)
        self.forces = None if forces is None else np.ascontiguousarray(forces, dtype=np.float64)

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def get(self, index: int) -> AtomicData:
        """Frame ``index``: positions ``[N, 3]`` Å, energy eV, forces ``[N, 3]`` eV/Å, no cell."""
        return molecule_record(
            self.positions[index],
            self.numbers,
            None if self.energies is None else self.energies[index],
            None if self.forces is None else self.forces[index],
        )


def read_npz(path: str | Path, old_labels: bool = False) -> FramesDataset:
    """Read one rMD17 or MD17 npz file (keys detected); energies and forces converted to eV, eV/Å.

    ``old_labels=True`` takes the original MD17 labels an rMD17 file carries (``old_energies``,
    ``old_forces``) instead of the recomputed ones.
    """
    source = str(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            if RMD17_KEYS["positions"] in names:
                key_map, flavour = (RMD17_OLD_KEYS if old_labels else RMD17_KEYS), "rmd17"
            elif MD17_KEYS["positions"] in names:
                if old_labels:
                    raise DataError(f"{source}: old_labels=True needs an rMD17 file, this one has MD17 keys")
                key_map, flavour = MD17_KEYS, "md17"
            else:
                raise DataError(
                    f"{source}: missing field 'coords' (rMD17) or 'R' (MD17); the file holds {sorted(names)}"
                )
            for field in ("numbers", "positions"):
                if key_map[field] not in names:
                    raise DataError(f"{source}: missing field '{key_map[field]}'")
            arrays = {field: np.asarray(npz[key]) if key in names else None for field, key in key_map.items()}
            for field, array in arrays.items():
                if array is not None and array.dtype.kind not in "biuf":
                    raise DataError(
                        f"{source}: field '{key_map[field]}' holds {array.dtype} values, expected numbers"
                    )
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{source}: not a readable npz file ({exc})") from exc
    energies = None if arrays["energy"] is None else arrays["energy"].astype(np.float64) * KCAL_PER_MOL
    forces = None if arrays["forces"] is None else arrays["forces"].astype(np.float64) * KCAL_PER_MOL
    metadata = {
        "format": flavour,
        "units": dict(DEFAULT_UNITS),
        "source_units": {"energy": "kcal/mol", "forces": "kcal/mol/Å", "length": "Å"},
        "labels": "old_md17" if old_labels else flavour,
    }
    return FramesDataset(
        arrays["positions"], arrays["numbers"].reshape(-1), energies, forces, source, metadata
    )


def load_rmd17(
    path: str | Path,
    molecule: str | None = None,
    split: int | None = None,
    part: str | None = None,
    old_labels: bool = False,
) -> AtomicDataset:
    """Load rMD17 / MD17 frames in eV, Å, eV/Å.

    ``path`` is an npz file, a per-split folder (``rmd17_<molecule>_<part>_<NN>.npz``) or the release
    root (``npz_data/`` + ``splits/``). ``split`` (1-5) with ``part`` (``"train"`` or ``"test"``) selects
    an official split: the per-split file when it exists, else the release's index CSV applied to the
    100k-frame file.
    """
    path = Path(path)
    if (split is None) != (part is None):
        raise DataError(
            f"{path}: options split, part: give both split (1-5) and part ('train' or 'test'), or neither"
        )
    if part is not None and part not in ("train", "test"):
        raise DataError(f"{path}: option part: must be 'train' or 'test', got {part!r}")
    if path.is_file():
        dataset = read_npz(path, old_labels)
        if split is None:
            return dataset
        root = path.parent.parent if path.parent.name == "npz_data" else path.parent
        return Subset(dataset, read_index_file(_split_file(root, split, part)))
    if molecule is None:
        raise DataError(
            f"{path}: option molecule: the path is a folder, name the molecule (e.g. molecule='aspirin')"
        )
    if split is not None:
        per_split = path / f"rmd17_{molecule}_{part}_{split:02d}.npz"
        if per_split.is_file():
            return read_npz(per_split, old_labels)
    full = next(
        (
            p
            for p in (path / "npz_data" / f"rmd17_{molecule}.npz", path / f"rmd17_{molecule}.npz")
            if p.is_file()
        ),
        None,
    )
    if full is None:
        raise FileNotFoundError(f"{path}: no rmd17_{molecule}.npz (nor npz_data/rmd17_{molecule}.npz) found")
    dataset = read_npz(full, old_labels)
    if split is None:
        return dataset
    return Subset(dataset, read_index_file(_split_file(path, split, part)))


def _split_file(root: Path, split: int, part: str) -> Path:
    """Path of the official index CSV ``<root>/splits/index_<part>_0N.csv``; FileNotFoundError if absent."""
    path = root / "splits" / f"index_{part}_{split:02d}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"official split file {path} not found")
    return path
