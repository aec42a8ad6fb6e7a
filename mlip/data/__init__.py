"""Atomic structures as dicts of tensors (``AtomicData``), conversions, validation and batching."""

from mlip.data import keys
from mlip.data.atomic_data import (
    AtomicData,
    DataError,
    collate,
    from_atoms,
    from_pymatgen,
    from_rdkit,
    to_atoms,
    validate,
)

__all__ = [
    "AtomicData",
    "DataError",
    "collate",
    "from_atoms",
    "from_pymatgen",
    "from_rdkit",
    "keys",
    "to_atoms",
    "validate",
]
