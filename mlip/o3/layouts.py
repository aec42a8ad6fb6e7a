"""The three layouts of equivariant features in this package, and the conversions between them.

- **e3nn** ``[N, Σ mul·(2l+1)]``: irreps one after another, each block ``mul`` copies of its ``2l+1``
  components (multiplicity-major: ``x[n, offset + u·(2l+1) + m]``). The layout at every
  :class:`~mlip.o3.Irreps`-typed API: ``Linear``, ``Gate``, ``TensorProduct``, ``tp_conv`` and the
  features the models pass between layers.
- **channels** ``[N, C, Σ(2l+1)]``: one multiplicity ``C`` shared by every irrep, components of all
  irreps side by side per channel. Node-wise products that act per channel (MACE's symmetric
  contraction, the grid product basis) take it.
- **grid-packed** ``[N, (L+1)², C]``: degrees ``0..L``, each once with natural parity, components
  ``lm`` in order along dim 1 and the channels contiguous. The spherical-grid kernels (``gaunt_tp``,
  ``s2_activation``, ``symmetric_product``) and :mod:`mlip.layers.s2` take it.

``to_channels``/``from_channels`` convert e3nn <-> channels for irreps of one multiplicity;
channels <-> grid-packed is a transpose of the last two dims (:func:`channels_to_grid`,
:func:`grid_to_channels`) when the irreps are ``0e+1o+2e+...+L`` (natural parity, every degree once).
"""

from __future__ import annotations

import torch

from mlip.o3.irreps import Irreps

__all__ = ["channels_to_grid", "from_channels", "grid_to_channels", "to_channels"]


def to_channels(x: torch.Tensor, irreps: Irreps) -> torch.Tensor:
    """e3nn ``[N, C·Σ(2l+1)]`` (every irrep of multiplicity ``C``) -> channels ``[N, C, Σ(2l+1)]``."""
    n, blocks = x.shape[0], x.split([mi.dim for mi in irreps], dim=1)
    return torch.cat([b.reshape(n, mul, ir.dim) for b, (mul, ir) in zip(blocks, irreps, strict=True)], dim=2)


def from_channels(x: torch.Tensor, irreps: Irreps) -> torch.Tensor:
    """Channels ``[N, C, Σ(2l+1)]`` -> e3nn ``[N, C·Σ(2l+1)]``; the inverse of :func:`to_channels`."""
    blocks = x.split([ir.dim for _, ir in irreps], dim=2)
    return torch.cat([b.reshape(x.shape[0], mi.dim) for b, mi in zip(blocks, irreps, strict=True)], dim=1)


def channels_to_grid(x: torch.Tensor) -> torch.Tensor:
    """Channels ``[N, C, (L+1)²]`` -> grid-packed ``[N, (L+1)², C]`` (a view; not contiguous)."""
    return x.transpose(1, 2)


def grid_to_channels(x: torch.Tensor) -> torch.Tensor:
    """Grid-packed ``[N, (L+1)², C]`` -> channels ``[N, C, (L+1)²]`` (a view; not contiguous)."""
    return x.transpose(1, 2)
