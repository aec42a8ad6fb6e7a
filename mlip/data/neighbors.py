"""The neighbour list of the package: all pairs closer than a cutoff, with periodic images.

Two implementations with identical output sets: our own, pure torch (CPU and CUDA), O(N log N) through
sort-based Cartesian binning (the sort is the only super-linear step): periodic in any subset of
directions, triclinic cells, cells shorter than the cutoff (several images of an atom, including its
own), batches of structures in one call; and vesin's cell list (C++, CPU), which is faster on the CPU
at every size, and for batches of small molecules too, called once per structure
(``benchmarks/neighbors.py``). ``method="auto"`` takes vesin on the CPU when every structure is periodic in
all directions or in none, and ours otherwise (CUDA, mixed periodicity such as slabs).

An edge ``e`` goes from ``src = edge_index[0, e]`` to ``dst = edge_index[1, e]``; its vector is
``positions[dst] - positions[src] + cell_shifts[e] @ cell`` (Å) and its length is strictly below the
cutoff. The set of ``(src, dst, shift)`` triples equals that of
``ase.neighborlist.primitive_neighbor_list("ijS", ...)`` (with ``i = src``, ``j = dst``). The edge order
is the method's own (ours groups edges by ascending ``src``; consumers that need an order sort, as
:class:`mlip.kernels.ConvGraph` does). Shifts refer to the positions as given (they need not be wrapped
into the cell).

:class:`SkinNeighborList` reuses a list built at ``cutoff + skin`` across MD steps and rebuilds it only
when atoms (or the cell) have moved enough for a pair to cross into the cutoff.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import torch

from mlip.data import keys as K
from mlip.data.atomic_data import AtomicData, DataError

log = logging.getLogger(__name__)

HARD_MIN_DISTANCE = 0.1  # Å: atoms closer than this are refused (no potential is meaningful there)

METHODS = ("auto", "torch", "vesin")

_WINDOW_EPS = 1e-9  # widening (in fractional units) of the image window: extra candidates, never missed pairs


def neighbor_list(
    positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, cutoff: float, method: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """All pairs of one structure closer than ``cutoff``.

    Args:
        positions: ``[N, 3]`` Cartesian positions, Å.
        cell: ``[3, 3]`` lattice vectors as rows, Å (rows of non-periodic directions are ignored).
        pbc: ``[3]`` bool, periodicity of each lattice direction.
        cutoff: pair cutoff, Å (pairs with distance ``< cutoff``).
        method: ``"auto"``, ``"torch"`` (ours) or ``"vesin"`` (see the module docstring).

    Returns:
        ``edge_index`` ``[2, E]`` int64 and ``cell_shifts`` ``[E, 3]`` float64 (integer image offsets), on
        the device of ``positions``.
    """
    batch = torch.zeros(positions.shape[0], dtype=torch.int64, device=positions.device)
    return batched_neighbor_list(positions, cell.reshape(1, 3, 3), pbc.reshape(1, 3), batch, cutoff, method)


def batched_neighbor_list(
    positions: torch.Tensor,
    cell: torch.Tensor,
    pbc: torch.Tensor,
    batch: torch.Tensor,
    cutoff: float,
    method: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """All pairs closer than ``cutoff`` within each structure of a batch, in one vectorized pass.

    Args:
        positions: ``[N, 3]`` Å, atoms of all structures concatenated.
        cell: ``[B, 3, 3]`` Å, lattice vectors as rows.
        pbc: ``[B, 3]`` bool.
        batch: ``[N]`` int64, structure index of each atom (atoms of a structure need not be contiguous).
        cutoff: Å.
        method: ``"auto"``, ``"torch"`` (ours) or ``"vesin"`` (structures periodic in all directions or
            none; see the module docstring).

    Returns:
        ``edge_index`` ``[2, E]`` int64 (global atom indices) and ``cell_shifts`` ``[E, 3]`` float64.
    """
    if not cutoff > 0:
        raise ValueError(f"neighbour-list cutoff must be positive, got {cutoff}")
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions have shape {tuple(positions.shape)}, expected [N, 3]")
    if cell.ndim != 3 or cell.shape[1:] != (3, 3) or pbc.shape != (cell.shape[0], 3):
        raise ValueError(f"cell {tuple(cell.shape)} / pbc {tuple(pbc.shape)}: expected [B, 3, 3] / [B, 3]")
    if method not in METHODS:
        raise ValueError(f"neighbour-list method {method!r}: expected one of {METHODS}")
    device = positions.device
    lengths = cell.detach().norm(dim=2).to(pbc.device)
    if bool((pbc.to(torch.bool) & (lengths == 0)).any()):
        raise ValueError("a periodic direction has a zero lattice vector")
    uniform = bool((pbc.all(dim=1) | ~pbc.any(dim=1)).all())
    if method == "vesin" and not uniform:
        raise ValueError("the vesin neighbour list takes structures periodic in all directions or none")
    if method == "vesin" or (method == "auto" and uniform and device.type == "cpu" and positions.shape[0]):
        return _vesin_neighbor_list(positions, cell, pbc.to(torch.bool), batch, cutoff)
    with torch.no_grad():
        pos = positions.detach().to(torch.float64)
        cell = cell.detach().to(device=device, dtype=torch.float64)
        pbc = pbc.to(device=device, dtype=torch.bool)
        batch = batch.to(device)
        if pos.shape[0] == 0:
            return torch.zeros(2, 0, dtype=torch.int64, device=device), torch.zeros(
                0, 3, dtype=torch.float64, device=device
            )
        lattice = torch.where(pbc[:, :, None], cell, torch.zeros_like(cell))
        periodic_lengths = lattice.norm(dim=2)
        # Dual vectors of the periodic rows (columns of the pseudo-inverse): frac_d = r . b_d.
        dual = torch.linalg.pinv(lattice)  # [B, 3, 3]
        frac = torch.einsum("ni,nid->nd", pos, dual[batch])
        wrap = torch.where(pbc[batch], torch.floor(frac), torch.zeros_like(frac))  # [N, 3]
        frac = frac - wrap
        pos = pos - torch.einsum("nd,ndi->ni", wrap, lattice[batch])
        # Periodic images within `cutoff` (in plane distance) of the home cell of each structure.
        window = torch.where(pbc, cutoff * dual.norm(dim=1) + _WINDOW_EPS, torch.zeros_like(periodic_lengths))
        image, shift = _images(frac, batch, window)
        image_pos = pos.index_select(0, image) + torch.einsum("kd,kdi->ki", shift, lattice[batch[image]])
        src, cand = _close_pairs(pos, batch, image_pos, batch.index_select(0, image), cutoff, cell.shape[0])
        dst = image.index_select(0, cand)
        shift = shift.index_select(0, cand)
        keep = ((src != dst) | (shift != 0).any(dim=1)).nonzero().squeeze(1)
        src, dst, shift = src[keep], dst[keep], shift.index_select(0, keep)
        shift += wrap.index_select(0, src) - wrap.index_select(0, dst)
        return torch.stack([src, dst]), shift


_VESIN = threading.local()


def _vesin_calculator(cutoff: float) -> object:
    """This thread's ``vesin.NeighborList`` for ``cutoff``, kept between calls: a new one reallocates its
    output buffers on the first call, which costs as much as a third of a call on a large system."""
    from vesin import NeighborList

    cache = _VESIN.__dict__.setdefault("by_cutoff", {})
    if cutoff not in cache:
        if len(cache) > 8:
            cache.clear()
        cache[cutoff] = NeighborList(cutoff=cutoff, full_list=True)
    return cache[cutoff]


def _vesin_neighbor_list(
    positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, batch: torch.Tensor, cutoff: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """vesin's full list, one call per structure (each periodic in all directions or none), in our
    convention (arguments as for :func:`batched_neighbor_list`): global indices, vesin's edge order, on
    the device of ``positions``. vesin already keeps only pairs strictly closer than ``cutoff``."""
    device = positions.device
    pos = np.ascontiguousarray(positions.detach().to("cpu", torch.float64).numpy())
    cells = cell.detach().to("cpu", torch.float64).numpy()
    periodic = pbc.all(dim=1).tolist()
    num = len(periodic)
    if num == 1:
        groups: list[np.ndarray | None] = [None]
    else:
        b = batch.cpu().numpy()
        order = np.argsort(b, kind="stable")
        bounds = np.searchsorted(b[order], np.arange(num + 1))
        groups = [order[bounds[k] : bounds[k + 1]] for k in range(num)]
    calculator = _vesin_calculator(cutoff)
    src, dst, shifts = [], [], []
    for k, atoms in enumerate(groups):
        if atoms is not None and atoms.size == 0:
            continue
        points = pos if atoms is None else pos[atoms]
        box = cells[k] if periodic[k] else np.zeros((3, 3))
        i, j, s = calculator.compute(points=points, box=box, periodic=periodic[k], quantities="ijS")
        i, j = i.view(np.int64), j.view(np.int64)  # indices < 2**63: the same bits
        src.append(i if atoms is None else atoms[i])
        dst.append(j if atoms is None else atoms[j])
        shifts.append(s.astype(np.float64))
    if not src:
        return torch.zeros(2, 0, dtype=torch.int64, device=device), torch.zeros(
            0, 3, dtype=torch.float64, device=device
        )
    if len(src) == 1:
        edge_index, cell_shifts = np.stack([src[0], dst[0]]), shifts[0]
    else:
        edge_index, cell_shifts = np.stack([np.concatenate(src), np.concatenate(dst)]), np.concatenate(shifts)
    return torch.from_numpy(edge_index).to(device), torch.from_numpy(cell_shifts).to(device)


def _images(
    frac: torch.Tensor, batch: torch.Tensor, window: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Periodic images ``(atom, shift)`` whose fractional coordinates lie in ``(-w, 1 + w)``.

    ``frac`` ``[N, 3]`` is wrapped into ``[0, 1)`` in periodic directions; ``window`` ``[B, 3]`` is ``w`` per
    structure and direction (0 where not periodic, which gives the single image ``shift = 0``). Returns the
    atom index ``[M]`` and the integer shift ``[M, 3]`` (float64) of every kept image.
    """
    reach = torch.ceil(window).to(torch.int64)[batch]  # [N, 3]: shifts run over [-reach, reach]
    side = 2 * reach + 1
    count = side.prod(dim=1)
    atom = torch.repeat_interleave(torch.arange(frac.shape[0], device=frac.device), count)
    local = torch.arange(atom.shape[0], device=frac.device) - (torch.cumsum(count, 0) - count)[atom]
    side_a, reach_a = side[atom], reach[atom]
    sx = local % side_a[:, 0]
    rest = local // side_a[:, 0]
    sy = rest % side_a[:, 1]
    sz = rest // side_a[:, 1]
    shift = (torch.stack([sx, sy, sz], dim=1) - reach_a).to(torch.float64)
    image_frac = frac[atom] + shift
    w = window[batch[atom]]
    inside = ((image_frac > -w) & (image_frac < 1.0 + w)) | (shift == 0)
    keep = inside.all(dim=1)
    return atom[keep], shift[keep]


_OFFSETS_CACHE: dict[str, torch.Tensor] = {}


def _bin_offsets(device: torch.device) -> torch.Tensor:
    """The 27 integer offsets ``[27, 3]`` from a bin to itself and its neighbours."""
    key = str(device)
    if key not in _OFFSETS_CACHE:
        r = torch.arange(-1, 2, device=device)
        _OFFSETS_CACHE[key] = torch.cartesian_prod(r, r, r)
    return _OFFSETS_CACHE[key]


def _close_pairs(
    query_pos: torch.Tensor,
    query_batch: torch.Tensor,
    image_pos: torch.Tensor,
    image_batch: torch.Tensor,
    cutoff: float,
    num_structures: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All pairs (query atom, image) of the same structure closer than ``cutoff``, sorted by query.

    Images are sorted by the key (structure, bin z, bin y, bin x) of Cartesian bins of edge ``cutoff``; each
    query finds the image ranges of its 27 neighbouring bins by binary search, so every close pair is a
    candidate exactly once. Returns query indices ``[P]`` and image indices ``[P]``.
    """
    device = query_pos.device
    big = torch.full((num_structures, 3), float("inf"), dtype=torch.float64, device=device)
    origin = big.scatter_reduce(0, image_batch[:, None].expand(-1, 3), image_pos, "amin")
    image_bin = torch.floor((image_pos - origin.index_select(0, image_batch)) / cutoff).to(torch.int64)
    query_bin = torch.floor((query_pos - origin.index_select(0, query_batch)) / cutoff).to(torch.int64)
    dims = image_bin.max(dim=0).values + 1  # [3], strides shared by all structures
    if float(num_structures) * float(dims.prod()) > 2.0**62:
        raise ValueError("neighbour list: the structures are too sparse for int64 bin keys (atoms far apart)")

    def key(b: torch.Tensor, ijk: torch.Tensor) -> torch.Tensor:
        return ((b * dims[2] + ijk[..., 2]) * dims[1] + ijk[..., 1]) * dims[0] + ijk[..., 0]

    sorted_key, order = torch.sort(key(image_batch, image_bin))
    sorted_xyz = image_pos.index_select(0, order).T.contiguous()  # [3, M]: one contiguous row per axis
    offsets = _bin_offsets(device)
    neighbor_bin = query_bin[:, None, :] + offsets[None, :, :]  # [N, 27, 3]
    valid = ((neighbor_bin >= 0) & (neighbor_bin < dims)).all(dim=2)
    neighbor_key = key(query_batch[:, None], neighbor_bin)
    start = torch.searchsorted(sorted_key, neighbor_key, side="left").reshape(-1)
    end = torch.searchsorted(sorted_key, neighbor_key, side="right").reshape(-1)
    count = torch.where(valid.reshape(-1), end - start, torch.zeros_like(start))
    first = torch.cumsum(count, 0) - count  # position of each (query, bin) range in the candidate list
    total = int(first[-1] + count[-1])
    sorted_index = torch.arange(total, device=device) + torch.repeat_interleave(
        start - first, count, output_size=total
    )
    query_of_slot = torch.arange(query_pos.shape[0], device=device).repeat_interleave(offsets.shape[0])
    query = torch.repeat_interleave(query_of_slot, count, output_size=total)
    query_xyz = query_pos.T.contiguous()
    distance2 = torch.zeros(total, dtype=torch.float64, device=device)
    for axis in range(3):
        d = sorted_xyz[axis].index_select(0, sorted_index) - query_xyz[axis].index_select(0, query)
        distance2 += d * d
    close = (distance2 < cutoff * cutoff).nonzero().squeeze(1)
    return query.index_select(0, close), order.index_select(0, sorted_index.index_select(0, close))


def edge_vectors(
    positions: torch.Tensor,
    cell: torch.Tensor,
    batch: torch.Tensor,
    edge_index: torch.Tensor,
    cell_shifts: torch.Tensor,
) -> torch.Tensor:
    """``[E, 3]`` Å vectors ``positions[dst] - positions[src] + cell_shifts @ cell[batch[src]]`` of the
    edges ``edge_index`` ``[2, E]`` (``positions`` ``[N, 3]``, ``cell`` ``[B, 3, 3]``, ``batch`` ``[N]``,
    ``cell_shifts`` ``[E, 3]``, cast to the cell's dtype); differentiable in positions and cell."""
    src, dst = edge_index
    offsets = torch.einsum("ei,eij->ej", cell_shifts.to(cell.dtype), cell[batch[src]])
    return positions[dst] - positions[src] + offsets


class CloseAtomsError(DataError):
    """Two atoms (or an atom and its periodic image) closer than :data:`HARD_MIN_DISTANCE`."""


def closest_pair(
    positions: torch.Tensor,
    cell: torch.Tensor,
    batch: torch.Tensor,
    edge_index: torch.Tensor,
    cell_shifts: torch.Tensor,
) -> tuple[int, int, float] | None:
    """``(src, dst, distance)`` (Å) of the shortest edge (arguments as for :func:`edge_vectors`), or
    ``None`` without edges; ``src == dst`` means an atom and its own periodic image."""
    if edge_index.shape[1] == 0:
        return None
    with torch.no_grad():
        lengths = edge_vectors(positions, cell, batch, edge_index, cell_shifts).norm(dim=1)
        e = int(lengths.argmin())
        return int(edge_index[0, e]), int(edge_index[1, e]), float(lengths[e])


def pad_edges(
    edge_index: torch.Tensor, shifts: torch.Tensor, capacity: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``edge_index`` ``[2, E]`` and ``shifts`` ``[E, 3]`` extended to ``capacity >= E`` edges by padding
    edges: atom 0 to itself with a zero shift, a pair no neighbour list produces. The compiled step
    (:class:`mlip.compile.step.ForceStep`) gives them exactly zero weight; an eager model cannot take them
    (zero-length edge)."""
    extra = capacity - edge_index.shape[1]
    if extra < 0:
        raise ValueError(f"{edge_index.shape[1]} edges do not fit a capacity of {capacity}")
    pad_index = edge_index.new_zeros(2, extra)
    return torch.cat([edge_index, pad_index], dim=1), torch.cat([shifts, shifts.new_zeros(extra, 3)])


def add_neighbors(data: AtomicData, cutoff: float) -> AtomicData:
    """A copy of ``data`` (one record or a collated batch) with ``edge_index`` and ``cell_shifts`` added.

    For a batch, edges connect atoms of the same structure only; indices are global (already offset per
    structure), as :func:`mlip.data.collate` produces them.
    """
    pos = data[K.POSITIONS]
    if K.BATCH in data:
        batch, cell, pbc = data[K.BATCH], data[K.CELL], data[K.PBC]
    else:
        batch = torch.zeros(pos.shape[0], dtype=torch.int64, device=pos.device)
        cell, pbc = data[K.CELL].reshape(1, 3, 3), data[K.PBC].reshape(1, 3)
    edge_index, shifts = batched_neighbor_list(pos, cell, pbc, batch, cutoff)
    out = dict(data)
    out[K.EDGE_INDEX] = edge_index
    out[K.CELL_SHIFTS] = shifts
    return out


class SkinNeighborList:
    """A batched neighbour list built at ``cutoff + skin`` and reused while it is provably complete.

    Rebuilt when (a) the atoms, structures or periodicity change, or (b) for some structure
    ``cutoff / (1 - m) + 2 δ >= cutoff + skin``, where ``m = ||h0^-1 h - 1||_2`` measures the cell
    deformation since the last build (0 for an unchanged cell) and ``δ`` the largest displacement of an
    atom in the frame of the old cell (``r h^-1 h0 - r0``). With a fixed cell this is the classic rule:
    rebuild when any atom moved more than ``skin / 2``. A changed cell that is not fully periodic forces a
    rebuild. Each call returns only the stored pairs that are closer than ``cutoff`` now (in their stored
    order), so a model never computes messages for the skin shell, where its weights are zero: with a
    1 Å skin on a 5 Å cutoff that shell holds about 40 % of the stored pairs of a dense system.

    Attributes:
        builds: number of builds so far.
        capacity: edge count of the lists :meth:`padded` hands out (settable: a larger value reserves
            room, a smaller one makes the next call grow it).
        growths: times :meth:`padded` had to grow the capacity after its first list.
    """

    def __init__(self, cutoff: float, skin: float) -> None:
        if not cutoff > 0 or skin < 0:
            raise ValueError(f"need cutoff > 0 and skin >= 0, got cutoff={cutoff}, skin={skin}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.builds = 0
        self.capacity = 0
        self.growths = 0
        self._ref: tuple[torch.Tensor, ...] | None = None
        self._edges: tuple[torch.Tensor, torch.Tensor] | None = None
        self._padded: tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor, torch.Tensor] | None = None

    def __call__(
        self, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, batch: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``edge_index`` ``[2, E]`` and ``cell_shifts`` ``[E, 3]`` of the pairs closer than ``cutoff`` for
        ``positions`` ``[N, 3]`` (Å), ``cell`` ``[B, 3, 3]`` (Å), ``pbc`` ``[B, 3]``, ``batch`` ``[N]``;
        the list at ``cutoff + skin`` behind them is rebuilt only when needed."""
        edge_index, shifts = self._stored(positions, cell, pbc, batch)
        with torch.no_grad():
            inside = edge_vectors(positions, cell, batch, edge_index, shifts).norm(dim=1) < self.cutoff
        return edge_index[:, inside], shifts[inside]

    def padded(
        self, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, batch: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole stored list (pairs closer than ``cutoff + skin``) padded by :func:`pad_edges` to
        ``capacity`` edges, for a fixed-shape step (compiled package, CUDA graph): the same tensors are
        returned until the next rebuild, and the shape stays the same across rebuilds until a list
        outgrows the capacity, which then grows to ``1.25 E`` rounded up to a multiple of 64 (logged as
        a warning: the fixed-shape step sees a new edge count, a CUDA graph is captured again). The first
        list sets the capacity the same way. Only for steps that treat padding edges as zero
        (:mod:`mlip.compile`): an eager model cannot take a zero-length edge."""
        stored = self._stored(positions, cell, pbc, batch)
        count = stored[0].shape[1]
        if count > self.capacity:
            grown = -(-int(1.25 * count) // 64) * 64
            if self.capacity:
                self.growths += 1
                log.warning(
                    "neighbour list: %d edges exceed the padded capacity of %d; it grows to %d (a new edge "
                    "count for the fixed-shape step; a CUDA graph is captured again)",
                    count,
                    self.capacity,
                    grown,
                )
            self.capacity = grown
        cached = self._padded
        if cached is None or cached[0] is not stored or cached[1].shape[1] != self.capacity:
            self._padded = (stored, *pad_edges(*stored, self.capacity))
        return self._padded[1], self._padded[2]

    def _stored(
        self, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, batch: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self._edges is None or self.needs_rebuild(positions, cell, pbc, batch):
            self._edges = batched_neighbor_list(positions, cell, pbc, batch, self.cutoff + self.skin)
            self._ref = tuple(t.detach().clone() for t in (positions, cell, pbc, batch))
            self.builds += 1
        return self._edges

    def needs_rebuild(
        self, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, batch: torch.Tensor
    ) -> bool:
        """Whether the stored list may miss a pair now closer than ``cutoff`` (see the class docstring)."""
        if self._ref is None:
            return True
        pos0, cell0, pbc0, batch0 = self._ref
        if positions.shape != pos0.shape or cell.shape != cell0.shape or not torch.equal(batch, batch0):
            return True
        if not torch.equal(pbc, pbc0):
            return True
        with torch.no_grad():
            pos = positions.detach().to(pos0.dtype)
            cell = cell.detach().to(cell0.dtype)
            changed = (cell != cell0).any(dim=(1, 2))  # [B]
            deformation = torch.zeros(cell.shape[0], dtype=pos.dtype, device=pos.device)
            if bool(changed.any()):
                if not bool(pbc[changed].all()):
                    return True
                to_old = torch.linalg.solve(cell[changed], cell0[changed])  # h^-1 h0
                strain = torch.linalg.solve(cell0[changed], cell[changed])  # h0^-1 h
                eye = torch.eye(3, dtype=pos.dtype, device=pos.device)
                deformation[changed] = torch.linalg.matrix_norm(strain - eye, ord=2)
                full = torch.eye(3, dtype=pos.dtype, device=pos.device).repeat(cell.shape[0], 1, 1)
                full[changed] = to_old
                pos = torch.einsum("ni,nij->nj", pos, full[batch])
            if bool((deformation >= 1).any()):
                return True
            moved = (pos - pos0).norm(dim=1)
            delta = torch.zeros_like(deformation).scatter_reduce(0, batch, moved, "amax")
            reach = self.cutoff / (1 - deformation) + 2 * delta
            return bool((reach >= self.cutoff + self.skin).any())
