"""Irreducible representations of O(3) and their direct sums, with e3nn's string syntax.

``Irrep(l, p)``: degree ``l >= 0`` and parity ``p = ±1`` (``"1o"`` is ``l=1, p=-1``). ``Irreps``: a
sequence of ``(mul, Irrep)`` such as ``"32x0e+32x1o"``; a feature of these irreps is a tensor
``[..., dim]`` laid out block after block, each block ``[mul, 2l+1]`` flattened multiplicity-major (e3nn
layout).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple

_IRREP = re.compile(r"^\s*(\d+)\s*([eoy])\s*$")
_MUL_IRREP = re.compile(r"^\s*(?:(\d+)\s*x\s*)?(\d+\s*[eoy])\s*$")


class Irrep(NamedTuple):
    """Degree ``l`` and parity ``p`` (+1 even, -1 odd) of an O(3) irrep; ``dim = 2l + 1``."""

    l: int
    p: int

    @classmethod
    def parse(cls, spec: IrrepLike) -> Irrep:
        """Accept an ``Irrep``, a ``(l, p)`` tuple or a string ``"2e"``, ``"1o"``, ``"3y"`` (p = (-1)^l)."""
        if isinstance(spec, Irrep):
            return spec
        if isinstance(spec, tuple):
            l, p = spec
        else:
            match = _IRREP.match(str(spec))
            if match is None:
                raise ValueError(f"cannot parse irrep {spec!r}: expected e.g. '0e', '1o', '2y'")
            l = int(match.group(1))
            p = {"e": 1, "o": -1, "y": (-1) ** l}[match.group(2)]
        if l < 0 or p not in (1, -1):
            raise ValueError(f"invalid irrep (l={l}, p={p})")
        return cls(int(l), int(p))

    @property
    def dim(self) -> int:
        return 2 * self.l + 1

    def __str__(self) -> str:
        return f"{self.l}{'e' if self.p == 1 else 'o'}"

    def __repr__(self) -> str:
        return str(self)

    def __mul__(self, other: Irrep) -> Iterator[Irrep]:  # type: ignore[override]
        """Irreps in the tensor product of two irreps: ``|l1-l2| .. l1+l2`` with parity ``p1 p2``."""
        other = Irrep.parse(other)
        p = self.p * other.p
        for l in range(abs(self.l - other.l), self.l + other.l + 1):
            yield Irrep(l, p)


class MulIrrep(NamedTuple):
    """``mul`` copies of ``ir``."""

    mul: int
    ir: Irrep

    @property
    def dim(self) -> int:
        return self.mul * self.ir.dim

    def __str__(self) -> str:
        return f"{self.mul}x{self.ir}"

    def __repr__(self) -> str:
        return str(self)


IrrepLike = Irrep | str | tuple[int, int]


class Irreps(tuple):
    """A direct sum of irreps: ``Irreps("16x0e + 8x1o")``, immutable and hashable."""

    def __new__(cls, spec: IrrepsLike = ()) -> Irreps:
        if isinstance(spec, Irreps):
            return super().__new__(cls, spec)
        items: list[MulIrrep] = []
        if isinstance(spec, str):
            text = spec.strip()
            for term in text.split("+") if text else []:
                match = _MUL_IRREP.match(term)
                if match is None:
                    raise ValueError(f"cannot parse irreps {spec!r}: bad term {term!r}")
                mul = int(match.group(1)) if match.group(1) is not None else 1
                items.append(MulIrrep(mul, Irrep.parse(match.group(2))))
        else:
            for entry in spec:
                if isinstance(entry, MulIrrep):
                    items.append(entry)
                elif isinstance(entry, (Irrep, str)):
                    items.append(MulIrrep(1, Irrep.parse(entry)))
                else:
                    mul, ir = entry
                    items.append(MulIrrep(int(mul), Irrep.parse(ir)))
        for item in items:
            if item.mul < 0:
                raise ValueError(f"negative multiplicity in {spec!r}")
        return super().__new__(cls, items)

    @staticmethod
    def spherical_harmonics(lmax: int, p: int = -1) -> Irreps:
        """``0e + 1o + 2e + ...`` up to ``lmax`` (parity ``p**l``)."""
        return Irreps([(1, (l, p**l)) for l in range(lmax + 1)])

    @property
    def dim(self) -> int:
        return sum(item.dim for item in self)

    @property
    def num_irreps(self) -> int:
        return sum(item.mul for item in self)

    @property
    def lmax(self) -> int:
        if not self:
            raise ValueError("empty Irreps has no lmax")
        return max(item.ir.l for item in self)

    def slices(self) -> list[slice]:
        """Slice of each block in a feature vector of dimension ``dim``."""
        out, start = [], 0
        for item in self:
            out.append(slice(start, start + item.dim))
            start += item.dim
        return out

    def count(self, ir: IrrepLike) -> int:  # type: ignore[override]
        """Total multiplicity of ``ir``."""
        ir = Irrep.parse(ir)
        return sum(item.mul for item in self if item.ir == ir)

    def simplify(self) -> Irreps:
        """Merge neighbouring blocks of the same irrep and drop empty ones (order is kept)."""
        out: list[MulIrrep] = []
        for item in self:
            if item.mul == 0:
                continue
            if out and out[-1].ir == item.ir:
                out[-1] = MulIrrep(out[-1].mul + item.mul, item.ir)
            else:
                out.append(item)
        return Irreps(out)

    def sort(self) -> tuple[Irreps, tuple[int, ...], tuple[int, ...]]:
        """Blocks sorted by ``(l, p)`` (odd before even, as e3nn orders ``p``).

        Returns ``(sorted_irreps, p, inv)`` where ``sorted_irreps[i] = self[inv[i]]`` and
        ``self[i] = sorted_irreps[p[i]]``.
        """
        order = sorted(range(len(self)), key=lambda i: (self[i].ir.l, self[i].ir.p, i))
        inv = tuple(order)
        p = tuple(sorted(range(len(order)), key=lambda i: order[i]))
        return Irreps([self[i] for i in inv]), p, inv

    def __add__(self, other: IrrepsLike) -> Irreps:  # type: ignore[override]
        return Irreps(tuple(self) + tuple(Irreps(other)))

    def __radd__(self, other: IrrepsLike) -> Irreps:
        return Irreps(tuple(Irreps(other)) + tuple(self))

    def __mul__(self, factor: int) -> Irreps:  # type: ignore[override]
        return Irreps(tuple(self) * factor)

    def __getitem__(self, index):  # type: ignore[override]
        item = super().__getitem__(index)
        return Irreps(item) if isinstance(index, slice) else item

    def __contains__(self, ir: object) -> bool:
        ir = Irrep.parse(ir)  # type: ignore[arg-type]
        return any(item.ir == ir for item in self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            other = Irreps(other)
        return tuple.__eq__(self, other)

    def __hash__(self) -> int:
        return tuple.__hash__(self)

    def __str__(self) -> str:
        return "+".join(str(item) for item in self)

    def __repr__(self) -> str:
        return f"Irreps('{self}')"


IrrepsLike = Irreps | str | Iterable
