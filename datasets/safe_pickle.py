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

The work a record can cause is bounded by its size: the memo lets a few bytes reference one container many
times (a 340-byte pickle can describe lists of 12.6 M elements), which costs nothing to unpickle but
explodes in whatever walks or converts the result. :func:`restricted_loads` therefore measures the
unpickled object graph, counting every container entry as often as it is reachable (shared containers
counted once per reference, in time linear in the unique objects), and refuses a record whose expanded
size exceeds its byte length plus :data:`ELEMENT_SLACK`, or whose containers nest deeper than
:data:`MAX_DEPTH`, before any caller sees it.
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


MAX_DEPTH = 64  # deepest container nesting accepted (OC20 records nest 4 deep)
ELEMENT_SLACK = 100_000  # container entries accepted beyond one per pickle byte


def _children(node: Any) -> list[Any] | None:
    """Entries of a container (``None`` for a leaf: numbers, strings, tensors, arrays)."""
    if isinstance(node, list | tuple | set | frozenset):
        return list(node)
    if isinstance(node, dict):
        return [*node.keys(), *node.values()]
    if isinstance(node, PickledObject):
        return [getattr(node, "state", None)]
    return None


def check_bounds(obj: Any, max_elements: int, where: str) -> None:
    """Raise :class:`DataError` when ``obj``'s containers, with shared ones expanded, hold more than
    ``max_elements`` entries or nest deeper than :data:`MAX_DEPTH`. A reference back to a container being
    walked (torch-geometric's storage points to its parent ``Data``) counts as one entry."""
    expanded: dict[int, int] = {}  # id -> entries reachable below the container (each reference counted)
    walking: set[int] = set()  # containers on the current path (their children are being measured)
    stack: list[tuple[Any, int, list[Any] | None]] = [(obj, 0, None)]
    while stack:
        node, depth, finished = stack.pop()
        if finished is not None:  # all children measured: sum them up
            total = len(finished) + sum(expanded.get(id(c), 0) for c in finished)
            if total > max_elements:
                raise DataError(
                    f"{where}: refused, containers expand to more than {max_elements} entries "
                    "(shared references in the pickle memo)"
                )
            expanded[id(node)] = total
            walking.discard(id(node))
            continue
        children = _children(node)
        if children is None or id(node) in expanded or id(node) in walking:
            continue
        if depth >= MAX_DEPTH:
            raise DataError(f"{where}: refused, containers nest deeper than {MAX_DEPTH} levels")
        walking.add(id(node))
        stack.append((node, depth, children))
        stack.extend((c, depth + 1, None) for c in children)


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
    """Unpickle ``data`` admitting only OC20 record types, within the bounds of :func:`check_bounds`;
    errors name ``where`` (file and record key)."""
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), where).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated or corrupt pickles raise many types (EOFError, UnpicklingError, ...)
        raise DataError(f"{where}: corrupt pickle ({type(exc).__name__}: {exc})") from exc
    check_bounds(obj, len(data) + ELEMENT_SLACK, where)
    return obj


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
