"""Restricted unpickling of OC20 LMDB records (pickled torch-geometric ``Data``).

Only the globals such records reference are resolved, each to a harmless stand-in:

* ``torch_geometric`` ``Data``, ``GlobalStorage``, ``DataEdgeAttr``, ``DataTensorAttr`` ->
  :class:`PickledObject`, which only stores its pickled state (no torch-geometric code runs);
* ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_tensor`` (tensor views of a storage), and
  ``torch.storage._load_from_bytes`` -> :func:`_storage_from_bytes`, which reads the storage with
  ``torch.load(..., weights_only=True)``;
* ``collections.OrderedDict`` (tensor backward hooks, always empty), ``_codecs.encode`` (bytes in protocol
  2), numpy array/scalar/dtype rebuilders.

Any other global is refused with :class:`UnsafePickleError` before it is looked up, so nothing it names is
ever imported or called.
"""

from __future__ import annotations

import codecs
import collections
import io
import pickle
from typing import Any

import numpy as np
import torch

from mlip.data import DataError


class UnsafePickleError(DataError):
    """A pickle references a class or function outside the allowed set; the message names it."""


class PickledObject:
    """Stand-in for an allowed torch-geometric class: ``cls_name`` and the state pickle restored."""

    cls_name = "object"

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _stand_in(name: str) -> type:
    """A :class:`PickledObject` subclass remembering the torch-geometric class name it replaces."""
    return type(name, (PickledObject,), {"cls_name": name})


def _storage_from_bytes(data: bytes) -> Any:
    """A tensor storage from the bytes ``torch.storage`` pickles (a legacy ``torch.save`` stream)."""
    return torch.load(io.BytesIO(data), weights_only=True)


def _numpy_reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _numpy_scalar() -> Any:
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    return scalar


_ALLOWED: dict[tuple[str, str], Any] = {
    **{("torch_geometric.data.data", n): _stand_in(n) for n in ("Data", "DataEdgeAttr", "DataTensorAttr")},
    ("torch_geometric.data.storage", "GlobalStorage"): _stand_in("GlobalStorage"),
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): codecs.encode,  # protocol-2 pickles spell bytes as encode(str, "latin1")
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy.core.multiarray", "scalar"): _numpy_scalar(),
    ("numpy._core.multiarray", "scalar"): _numpy_scalar(),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` only resolves :data:`_ALLOWED` globals."""

    def __init__(self, file: Any, where: str) -> None:
        super().__init__(file)
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.where}: refused to unpickle class '{module}.{name}' (not an OC20 record type)"
            ) from None


def restricted_loads(data: bytes, where: str) -> Any:
    """Unpickle ``data`` admitting only OC20 record types; errors name ``where`` (file and record key)."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), where).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated or corrupt pickles raise many types (EOFError, UnpicklingError, ...)
        raise DataError(f"{where}: corrupt pickle ({type(exc).__name__}: {exc})") from exc


def record_fields(obj: Any, where: str) -> dict[str, Any]:
    """Attribute dict of an unpickled torch-geometric ``Data`` (2.x ``_store`` or 1.x plain attributes)."""
    if not isinstance(obj, PickledObject) or obj.cls_name != "Data":
        raise DataError(f"{where}: expected a pickled torch_geometric Data record, got {type(obj).__name__}")
    state = getattr(obj, "state", None)
    if not isinstance(state, dict):
        raise DataError(f"{where}: Data record without attribute state")
    store = state.get("_store")
    if isinstance(store, PickledObject):
        mapping = store.state.get("_mapping", {}) if isinstance(store.state, dict) else {}
    else:
        mapping = state
    return {k: v for k, v in mapping.items() if v is not None and not k.startswith("_")}
