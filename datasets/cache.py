"""HDF5 cache: convert any dataset once, then read records fast.

Layout (format version 1)::

    /                      attrs: format_version, source, source_format, source_sha256, units (JSON),
                                  metadata (JSON), num_structures, num_atoms, atom_keys, structure_keys
    /offsets               [B + 1] int64: atom offset of each structure
    /atoms/<key>           per-atom fields concatenated over structures, [N_total, ...]
    /structures/<key>      per-structure fields stacked, [B, ...]
    /neighbors/<cutoff>/   stored neighbour lists (attrs: cutoff in Å)
        edge_index         [E_total, 2] int32, atom indices local to their structure (source, destination)
        cell_shifts        [E_total, 3] int32, integer image offsets
        offsets            [B + 1] int64: edge offset of each structure

Arrays are chunked and compressed (gzip + shuffle by default) with a Fletcher-32 checksum per chunk, which
HDF5 verifies on every read (a flipped byte is a :class:`DataError`, not a changed number). Per-atom keys
are those of ``mlip.data.keys.PER_ATOM_KEYS``; every other key is per structure. Records are validated
while writing and again when read (finite positions and labels, neighbour indices in range), so a cache
edited or damaged after writing, or written without checksums, is refused by file, record and field.
:class:`CacheDataset` opens the file lazily in each process (so every
DataLoader worker gets its own handle) and by default holds the arrays in memory when they fit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlip.data import AtomicData, DataError, validate
from mlip.data import keys as K
from mlip.datasets.base import AtomicDataset, file_sha256

FORMAT_VERSION = 1
NeighborFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]

_SKIPPED_KEYS = (K.EDGE_INDEX, K.CELL_SHIFTS, K.BATCH, K.PTR, K.NUM_ATOMS)
_CHUNK_ROWS = 16384


def default_neighbor_fn() -> NeighborFn:
    """``mlip.data.neighbors.neighbor_list`` (positions, cell, pbc, cutoff) -> (edge_index, cell_shifts)."""
    try:
        from mlip.data.neighbors import neighbor_list
    except ImportError as exc:
        raise ImportError(
            "mlip.data.neighbors is not available: pass neighbor_fn=(positions, cell, pbc, cutoff) -> "
            "(edge_index [2, E], cell_shifts [E, 3])"
        ) from exc
    return neighbor_list


def cutoff_name(cutoff: float) -> str:
    """Group name of a cutoff in ``/neighbors`` (e.g. 5.0 -> ``"5"``, 4.5 -> ``"4.5"``)."""
    return f"{float(cutoff):g}"


def source_files(source: str | Path) -> list[Path]:
    """The files behind a dataset source: the file itself, or every file under a folder (sorted)."""
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return []


class _Appender:
    """Buffered appends to resizable, chunked, compressed HDF5 datasets along axis 0."""

    def __init__(self, group: Any, compression: str | None) -> None:
        self.group = group
        self.compression = compression
        self.buffers: dict[str, list[np.ndarray]] = {}

    def add(self, key: str, value: np.ndarray) -> None:
        """Queue ``value`` (``[rows, ...]``) for appending to dataset ``key``."""
        self.buffers.setdefault(key, []).append(value)

    def flush(self) -> None:
        """Write every queued block."""
        for key, blocks in self.buffers.items():
            if not blocks:
                continue
            block = np.concatenate(blocks, axis=0)
            if key not in self.group:
                chunk_rows = max(1, min(_CHUNK_ROWS, block.shape[0]))
                self.group.create_dataset(
                    key,
                    data=block,
                    maxshape=(None, *block.shape[1:]),
                    chunks=(chunk_rows, *block.shape[1:]),
                    compression=self.compression,
                    shuffle=self.compression is not None,
                    fletcher32=True,
                )
            else:
                dset = self.group[key]
                start = dset.shape[0]
                dset.resize(start + block.shape[0], axis=0)
                dset[start:] = block
            blocks.clear()


def write_cache(
    dataset: AtomicDataset,
    path: str | Path,
    cutoffs: Sequence[float] = (),
    neighbor_fn: NeighborFn | None = None,
    compression: str | None = "gzip",
    progress: bool = False,
    flush_every: int = 4096,
) -> Path:
    """Write ``dataset`` to an HDF5 cache at ``path`` (overwritten); return the path.

    ``cutoffs`` (Å) store a neighbour list per cutoff computed by ``neighbor_fn`` (default
    :func:`default_neighbor_fn`). Every record must hold the same keys as record 0; each is validated, and a
    bad one raises :class:`mlip.data.DataError` naming the source and record.
    """
    import h5py

    path = Path(path)
    n = len(dataset)
    if n == 0:
        raise DataError(f"{dataset.source}: dataset is empty, nothing to cache")
    if cutoffs and neighbor_fn is None:
        neighbor_fn = default_neighbor_fn()
    first_keys = sorted(k for k in dataset[0] if k not in _SKIPPED_KEYS)
    atom_keys = [k for k in first_keys if k in K.PER_ATOM_KEYS]
    structure_keys = [k for k in first_keys if k not in K.PER_ATOM_KEYS]
    iterator: Any = range(n)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc=f"caching {Path(dataset.source).name}", unit="structures")
    tmp = path.with_name(path.name + ".partial")
    try:
        with h5py.File(tmp, "w") as f:
            atoms_out = _Appender(f.create_group("atoms"), compression)
            structures_out = _Appender(f.create_group("structures"), compression)
            neighbor_out = {
                c: _Appender(f.require_group(f"neighbors/{cutoff_name(c)}"), compression) for c in cutoffs
            }
            atom_offsets = np.zeros(n + 1, dtype=np.int64)
            edge_offsets = {c: np.zeros(n + 1, dtype=np.int64) for c in cutoffs}
            for i in iterator:
                record = validate(dataset[i], dataset.source, i)
                keys = sorted(k for k in record if k not in _SKIPPED_KEYS)
                if keys != first_keys:
                    raise DataError(
                        f"{dataset.source}, record {i}: has fields {keys}, record 0 has {first_keys}"
                    )
                atom_offsets[i + 1] = atom_offsets[i] + record[K.POSITIONS].shape[0]
                for key in atom_keys:
                    atoms_out.add(key, record[key].numpy())
                for key in structure_keys:
                    structures_out.add(key, record[key].numpy()[None])
                for cutoff in cutoffs:
                    edges, shifts = neighbor_fn(
                        record[K.POSITIONS], record[K.CELL], record[K.PBC], float(cutoff)
                    )
                    edges = np.asarray(edges, dtype=np.int64)
                    neighbor_out[cutoff].add("edge_index", edges.T.astype(np.int32).reshape(-1, 2))
                    neighbor_out[cutoff].add(
                        "cell_shifts", np.rint(np.asarray(shifts)).astype(np.int32).reshape(-1, 3)
                    )
                    edge_offsets[cutoff][i + 1] = edge_offsets[cutoff][i] + edges.shape[1]
                if (i + 1) % flush_every == 0:
                    for out in (atoms_out, structures_out, *neighbor_out.values()):
                        out.flush()
            for out in (atoms_out, structures_out, *neighbor_out.values()):
                out.flush()
            f.create_dataset("offsets", data=atom_offsets, fletcher32=True)
            for cutoff in cutoffs:
                group = f[f"neighbors/{cutoff_name(cutoff)}"]
                group.create_dataset("offsets", data=edge_offsets[cutoff], fletcher32=True)
                group.attrs["cutoff"] = float(cutoff)
                for key, width in (("edge_index", 2), ("cell_shifts", 3)):
                    if key not in group:  # no edges at all at this cutoff
                        group.create_dataset(key, shape=(0, width), dtype=np.int32, maxshape=(None, width))
            files = source_files(dataset.source)
            f.attrs.update(
                {
                    "format_version": FORMAT_VERSION,
                    "source": str(dataset.source),
                    "source_format": str(dataset.metadata.get("format", "unknown")),
                    "source_sha256": file_sha256(files) if files else "",
                    "units": json.dumps(dataset.metadata.get("units", {}), ensure_ascii=False),
                    "metadata": json.dumps(dataset.metadata, ensure_ascii=False, default=str),
                    "num_structures": n,
                    "num_atoms": int(atom_offsets[-1]),
                    "atom_keys": json.dumps(atom_keys),
                    "structure_keys": json.dumps(structure_keys),
                }
            )
        os.replace(tmp, path)
    except BaseException:  # a failed or interrupted conversion leaves no partial file
        tmp.unlink(missing_ok=True)
        raise
    return path


class CacheDataset(AtomicDataset):
    """Records read from an HDF5 cache written by :func:`write_cache`.

    ``cutoff`` (Å) adds the stored neighbour list of that cutoff (``edge_index`` ``[2, E]`` int64,
    ``cell_shifts`` ``[E, 3]`` float64). ``in_memory``: ``True`` reads every array into memory on first
    access in each process, ``False`` reads each record from the file, ``"auto"`` loads when the
    uncompressed arrays are below ``memory_limit_bytes``. The file is opened on first ``__getitem__`` in
    the calling process, so a dataset built in the main process is safe to pass to DataLoader workers.
    """

    def __init__(
        self,
        path: str | Path,
        cutoff: float | None = None,
        in_memory: bool | str = "auto",
        memory_limit_bytes: int = 2 << 30,
    ) -> None:
        import h5py

        self.path = Path(path)
        self.source = str(self.path)
        self.cutoff = cutoff
        try:
            with h5py.File(self.path, "r") as f:
                attrs = dict(f.attrs)
                version = int(attrs.get("format_version", -1))
                if version != FORMAT_VERSION:
                    raise DataError(
                        f"{self.path}: cache format version {version}, this reader needs {FORMAT_VERSION}"
                    )
                self.offsets = np.asarray(f["offsets"][:], dtype=np.int64)
                if self.offsets.size == 0 or self.offsets[0] != 0 or (np.diff(self.offsets) < 0).any():
                    raise DataError(f"{self.path}: field 'offsets' is not an increasing atom offset table")
                self.atom_keys = json.loads(attrs["atom_keys"])
                self.structure_keys = json.loads(attrs["structure_keys"])
                self.cutoffs = sorted(float(g.attrs["cutoff"]) for g in f.get("neighbors", {}).values())
                nbytes = sum(f[f"atoms/{k}"].nbytes for k in self.atom_keys)
                nbytes += sum(f[f"structures/{k}"].nbytes for k in self.structure_keys)
                if cutoff is not None:
                    if not any(abs(c - cutoff) < 1e-9 for c in self.cutoffs):
                        raise DataError(
                            f"{self.path}: no neighbour list stored for cutoff {cutoff} Å "
                            f"(stored: {self.cutoffs})"
                        )
                    group = f[f"neighbors/{cutoff_name(cutoff)}"]
                    self.edge_offsets = np.asarray(group["offsets"][:], dtype=np.int64)
                    nbytes += group["edge_index"].nbytes + group["cell_shifts"].nbytes
            self.metadata = json.loads(attrs["metadata"])
            self.metadata.update(
                {
                    "format": "hdf5-cache",
                    "source_format": attrs["source_format"],
                    "source": attrs["source"],
                    "source_sha256": attrs["source_sha256"],
                    "units": json.loads(attrs["units"]),
                }
            )
        except DataError:
            raise
        except OSError as exc:
            raise DataError(f"{self.path}: not a readable HDF5 cache ({exc})") from exc
        except KeyError as exc:
            raise DataError(f"{self.path}: incomplete HDF5 cache, missing {exc}") from exc
        except ValueError as exc:  # attributes that are not the JSON the writer stored
            raise DataError(f"{self.path}: corrupt HDF5 cache attributes ({exc})") from exc
        self.in_memory = bool(nbytes <= memory_limit_bytes) if in_memory == "auto" else bool(in_memory)
        self._file: Any = None
        self._arrays: Any = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_file=None, _arrays=None, _pid=None)
        return state

    def _open(self) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]], tuple[Any, Any] | None]:
        """Per-atom, per-structure and neighbour arrays of this process, opened on first use per process
        (and read into memory when ``in_memory``)."""
        if self._pid == os.getpid():
            return self._arrays
        import h5py

        self._file = h5py.File(self.path, "r", rdcc_nbytes=64 << 20)

        def load(name: str) -> Any:
            if not self.in_memory:
                return self._file[name]
            try:
                return self._file[name][:]
            except OSError as exc:  # a failed Fletcher-32 checksum or a corrupt compressed chunk
                raise DataError(
                    f"{self.path}: field '{name}' cannot be read, the file is corrupt ({exc})"
                ) from exc

        atoms = [(key, load(f"atoms/{key}")) for key in self.atom_keys]
        structures = [(key, load(f"structures/{key}")) for key in self.structure_keys]
        edges = None
        if self.cutoff is not None:
            group = f"neighbors/{cutoff_name(self.cutoff)}"
            edges = (load(f"{group}/edge_index"), load(f"{group}/cell_shifts"))
        if self.in_memory:
            self._file.close()
            self._file = None
        self._arrays = (atoms, structures, edges)
        self._pid = os.getpid()
        return self._arrays

    def get(self, index: int) -> AtomicData:
        """Record ``index``: the stored fields plus, when a cutoff was chosen, its neighbour list.

        In memory, fields are views of the loaded arrays (like torch-geometric's in-memory datasets):
        clone a tensor before modifying it in place.
        """
        atoms, structures, edges = self._open()
        a0, a1 = int(self.offsets[index]), int(self.offsets[index + 1])
        try:
            data: AtomicData = {key: torch.from_numpy(array[a0:a1]) for key, array in atoms}
            for key, array in structures:
                data[key] = torch.from_numpy(np.asarray(array[index, ...]))  # [index, ...]: 0-d, not scalar
            if edges is not None:
                e0, e1 = int(self.edge_offsets[index]), int(self.edge_offsets[index + 1])
                data[K.EDGE_INDEX] = torch.from_numpy(edges[0][e0:e1].T.astype(np.int64))
                data[K.CELL_SHIFTS] = torch.from_numpy(edges[1][e0:e1].astype(np.float64))
        except OSError as exc:  # read from the file (in_memory=False): failed checksum, corrupt chunk
            raise DataError(
                f"{self.path}, record {index}: cannot be read, the file is corrupt ({exc})"
            ) from exc
        validate(data, self.source, index)
        if edges is not None and data[K.EDGE_INDEX].numel():
            if int(data[K.EDGE_INDEX].min()) < 0 or int(data[K.EDGE_INDEX].max()) >= a1 - a0:
                raise DataError(
                    f"{self.path}, record {index}: field '{K.EDGE_INDEX}' points outside the structure"
                )
        return data

    def verify_source(self) -> bool:
        """True when the source files still hash to the ``source_sha256`` recorded at conversion."""
        files = source_files(self.metadata["source"])
        return bool(files) and file_sha256(files) == self.metadata["source_sha256"]
