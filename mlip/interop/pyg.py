"""torch-geometric bridge: ``AtomicData`` <-> ``torch_geometric.data.Data`` / ``Batch``.

A record becomes a ``Data`` with PyG's usual names for positions (``pos``, ``[N, 3]``) and atomic numbers
(``z``, ``[N]``), ``edge_index`` as is, and every other field under its ``mlip.data.keys`` name; the
per-structure fields (``cell`` ``[1, 3, 3]``, ``pbc`` ``[1, 3]``, ``energy`` ``[1]``, ...) get a leading
axis of one, so PyG's ``Batch`` / ``DataLoader`` stack them to ``[B, ...]`` while concatenating per-atom
and per-edge ones and offsetting ``edge_index``. :func:`from_pyg` inverts this for a ``Data`` (a record)
or a ``Batch`` (a batched ``AtomicData``), and our models accept either directly.

    from torch_geometric.loader import DataLoader
    loader = DataLoader(PyGDataset(mlip.datasets.load("train.extxyz"), cutoff=model.cutoff), batch_size=8)
    for batch in loader:
        out = model(batch)
"""

from __future__ import annotations

from typing import Any

import torch

from mlip.data import keys as K
from mlip.data.atomic_data import AtomicData

_RENAMED = {K.POSITIONS: "pos", K.ATOMIC_NUMBERS: "z"}
_BACK = {v: k for k, v in _RENAMED.items()}
_DERIVED = (K.BATCH, K.PTR, K.NUM_ATOMS)  # PyG's Batch keeps its own batch / ptr


def to_pyg(data: AtomicData) -> Any:
    """A ``torch_geometric.data.Data`` holding the fields of record ``data`` (tensors shared, no copy)."""
    from torch_geometric.data import Data

    if K.BATCH in data:
        raise ValueError("to_pyg takes one record; convert the records before batching them")
    fields = {}
    for key, value in data.items():
        if key in _DERIVED:
            continue
        fields[_RENAMED.get(key, key)] = value.unsqueeze(0) if key in K.PER_STRUCTURE_KEYS else value
    return Data(num_nodes=data[K.POSITIONS].shape[0], **fields)


def from_pyg(data: Any) -> AtomicData:
    """``AtomicData`` from a PyG ``Data`` (a record) or ``Batch`` (a batch with ``batch``/``ptr``)."""
    from torch_geometric.data import Batch

    out: AtomicData = {}
    for key in data.keys():  # noqa: SIM118 (PyG's keys() method)
        if key in ("batch", "ptr", "num_nodes"):
            continue
        out[_BACK.get(key, key)] = data[key]
    if isinstance(data, Batch):
        ptr = data.ptr
        out[K.BATCH], out[K.PTR], out[K.NUM_ATOMS] = data.batch, ptr, ptr[1:] - ptr[:-1]
    else:
        for key in K.PER_STRUCTURE_KEYS:
            if key in out:
                out[key] = out[key].squeeze(0)
    return out


class PyGDataset(torch.utils.data.Dataset):
    """Any dataset of ``AtomicData`` records (``mlip.datasets.load``, a list, ...) as PyG ``Data``, with
    the neighbour list for ``cutoff`` (Å) added when the records lack one; for PyG's ``DataLoader``."""

    def __init__(self, records: Any, cutoff: float | None = None) -> None:
        self.records, self.cutoff = records, cutoff

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Any:
        record = self.records[index]
        if K.EDGE_INDEX not in record:
            if self.cutoff is None:
                raise ValueError(f"record {index} has no neighbour list: give PyGDataset a cutoff")
            from mlip.data.neighbors import add_neighbors

            record = add_neighbors(record, self.cutoff)
        return to_pyg(record)
