"""Typed batched fields: every field of the MD state and of an integrator's variables is declared per
atom (leading dimension ``N``), per system (leading dimension ``B``, or a list of ``B`` items) or global
(shared by the batch), so a batched state can be cut into any subset of its systems.

    @dataclasses.dataclass
    class LangevinVariables(Variables):
        temperature: torch.Tensor = system_field()  # [B] K
        friction: torch.Tensor = system_field()  # [B] 1/fs

:meth:`Batched.selected` gives the field values of a subset of atoms and systems (copies, never views),
which :meth:`mlip.md.MDState.select` and :meth:`Variables.select` build on.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Self

import torch

ATOM, SYSTEM, GLOBAL = "atom", "system", "global"


def atom_field(**kwargs: Any) -> Any:
    """A dataclass field with leading dimension ``N`` (atoms of all systems)."""
    return dataclasses.field(metadata={"per": ATOM}, **kwargs)


def system_field(**kwargs: Any) -> Any:
    """A dataclass field with leading dimension ``B`` (a tensor) or ``B`` items (a list)."""
    return dataclasses.field(metadata={"per": SYSTEM}, **kwargs)


def global_field(**kwargs: Any) -> Any:
    """A dataclass field shared by all systems (copied whole by a selection)."""
    return dataclasses.field(metadata={"per": GLOBAL}, **kwargs)


class Batched:
    """Mixin for dataclasses whose fields are declared with :func:`atom_field`, :func:`system_field` or
    :func:`global_field` (undeclared fields count as global)."""

    def selected(self, atoms: torch.Tensor, systems: torch.Tensor) -> dict[str, Any]:
        """Field values restricted to the atom indices ``atoms`` ``[n]`` and system indices ``systems``
        ``[b]`` (int64, ascending): tensors indexed (copies), lists of per-system items picked (a
        ``torch.Generator`` is copied with its state), nested :class:`Batched` values selected, others
        kept."""
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            per = f.metadata.get("per", GLOBAL)
            if isinstance(value, Batched):
                value = value.select_indices(atoms, systems)
            elif isinstance(value, torch.Tensor):
                index = {ATOM: atoms, SYSTEM: systems}.get(per)
                value = value.clone() if index is None else value.index_select(0, index.to(value.device))
            elif isinstance(value, list) and per == SYSTEM:
                value = [_copy(value[i]) for i in systems.tolist()]
            out[f.name] = value
        return out

    def select_indices(self, atoms: torch.Tensor, systems: torch.Tensor) -> Self:
        """A new instance holding only ``atoms`` and ``systems`` (see :meth:`selected`)."""
        return type(self)(**self.selected(atoms, systems))


@dataclasses.dataclass
class Variables(Batched):
    """Base of an integrator's typed variables (thermostat, barostat, FIRE), stored in
    ``MDState.variables``."""


@dataclasses.dataclass
class ThermostatVariables(Variables):
    """Variables of an integrator that holds each system at a target temperature.

    Attributes:
        temperature: ``[B]`` K, the target.
    """

    temperature: torch.Tensor = system_field()


def _copy(item: Any) -> Any:
    if isinstance(item, torch.Generator):
        copy = torch.Generator(device=item.device)
        copy.set_state(item.get_state())
        return copy
    return item
