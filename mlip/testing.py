"""Helpers users (and our suite) call to check their own models: equivariance under O(3) and E(3), and
a tiny MACE to test a workflow with."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from mlip.o3 import D_from_matrix, Irreps, IrrepsLike, angles_to_matrix

if TYPE_CHECKING:
    from mlip.models.model import EquivariantModel


def random_rotation(
    generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """A uniformly random proper rotation ``[3, 3]``."""
    q = torch.randn(4, generator=generator, dtype=dtype)
    q = q / q.norm()
    a, b, c, d = q
    return torch.stack(
        [
            torch.stack([a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)]),
            torch.stack([2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)]),
            torch.stack([2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d]),
        ]
    )


def irreps_matrix(irreps: IrrepsLike, R: torch.Tensor) -> torch.Tensor:
    """Block-diagonal representation ``[dim, dim]`` of the orthogonal ``R`` on features of ``irreps``."""
    irreps = Irreps(irreps)
    blocks = []
    for mul, ir in irreps:
        D = D_from_matrix(ir.l, R, ir.p)
        blocks.extend([D] * mul)
    if not blocks:
        return R.new_zeros(0, 0)
    return torch.block_diag(*blocks)


def assert_equivariant(
    fn: Callable[[torch.Tensor], torch.Tensor],
    irreps_in: IrrepsLike,
    irreps_out: IrrepsLike,
    batch: int = 4,
    reflections: bool = True,
    atol: float = 1e-9,
    seed: int = 0,
) -> float:
    """Check ``fn(x D_in(R)^T) == fn(x) D_out(R)^T`` for random rotations (and reflections), in float64.

    ``fn`` maps ``[batch, irreps_in.dim]`` to ``[batch, irreps_out.dim]``. Raises ``AssertionError`` with
    the largest deviation if equivariance fails; returns that deviation otherwise.
    """
    g = torch.Generator().manual_seed(seed)
    irreps_in, irreps_out = Irreps(irreps_in), Irreps(irreps_out)
    x = torch.randn(batch, irreps_in.dim, generator=g, dtype=torch.float64)
    worst = 0.0
    rotations = [
        random_rotation(g),
        angles_to_matrix(*torch.rand(3, generator=g, dtype=torch.float64) * 6.28),
    ]
    if reflections:
        rotations += [-r for r in rotations]
    for R in rotations:
        out_of_rotated = fn(x @ irreps_matrix(irreps_in, R).T)
        rotated_out = fn(x) @ irreps_matrix(irreps_out, R).T
        worst = max(worst, float((out_of_rotated - rotated_out).abs().max()))
    if worst > atol:
        raise AssertionError(f"not equivariant: max deviation {worst:.3e} > {atol:.1e}")
    return worst


def assert_potential_equivariant(
    potential: torch.nn.Module,
    data: dict[str, torch.Tensor],
    atol: float = 1e-8,
    seed: int = 0,
) -> float:
    """Check a potential on one structure: energy invariant and forces equivariant under rotation,
    reflection, translation and permutation of atoms (float64). ``data`` is an ``AtomicData`` with a
    neighbour list. Returns the largest deviation; raises ``AssertionError`` past ``atol``.
    """
    from mlip.data import keys as K

    g = torch.Generator().manual_seed(seed)
    base = potential(data, compute_forces=True)
    e0, f0 = base["energy"].detach(), base["forces"].detach()
    worst = 0.0

    def compare(out: dict[str, torch.Tensor], forces_expected: torch.Tensor) -> None:
        nonlocal worst
        worst = max(worst, float((out["energy"].detach() - e0).abs().max()))
        worst = max(worst, float((out["forces"].detach() - forces_expected).abs().max()))

    R = random_rotation(g)
    for Q in (R, -R):  # rotation and rotoreflection
        moved = dict(data)
        moved[K.POSITIONS] = data[K.POSITIONS] @ Q.T
        if K.CELL in data:
            moved[K.CELL] = data[K.CELL] @ Q.T
        compare(potential(moved, compute_forces=True), f0 @ Q.T)
    shifted = dict(data)
    shifted[K.POSITIONS] = data[K.POSITIONS] + torch.randn(3, generator=g, dtype=torch.float64)
    compare(potential(shifted, compute_forces=True), f0)

    n = data[K.POSITIONS].shape[0]
    perm = torch.randperm(n, generator=g)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)
    permuted = dict(data)
    for key in (K.POSITIONS, K.ATOMIC_NUMBERS):
        permuted[key] = data[key][perm]
    permuted[K.EDGE_INDEX] = inverse[data[K.EDGE_INDEX]]
    compare(potential(permuted, compute_forces=True), f0[perm])
    if worst > atol:
        raise AssertionError(f"potential not invariant/equivariant: max deviation {worst:.3e} > {atol:.1e}")
    return worst


def tiny_mace(species: Sequence[int] = (1, 6, 8), **overrides: Any) -> EquivariantModel:
    """An untrained float64 MACE small enough for tests of a workflow (4 channels of ``0e + 1o``,
    ``max_ell`` 1, correlation 2, radial MLP ``[8]``, cutoff 3 Å, seed 0) for ``species`` (atomic
    numbers); ``overrides`` are further :class:`~mlip.models.mace.MACEConfig` fields (or ``dtype``,
    ``seed``), e.g. ``scale=0.05`` for gentle forces from random weights."""
    from mlip.models import create

    options: dict[str, Any] = dict(
        dtype=torch.float64,
        seed=0,
        hidden_irreps="4x0e+4x1o",
        max_ell=1,
        correlation=2,
        radial_mlp=[8],
        r_max=3.0,
    )
    return create("mace", species=list(species), **(options | overrides))
