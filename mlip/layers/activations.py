"""Scalar activations normalized to unit second moment on standard-normal inputs (e3nn's
``normalize2mom``), so deep stacks keep their scale at initialization."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": torch.nn.functional.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "abs": torch.abs,
    "gelu": torch.nn.functional.gelu,
}


@functools.cache
def second_moment_scale(name: str) -> float:
    """``1 / sqrt(E[f(z)^2])`` for ``z ~ N(0, 1)``, by 200-point Gauss-Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    values = _ACTIVATIONS[name](torch.as_tensor(nodes, dtype=torch.float64)).numpy()
    return float(1.0 / np.sqrt((weights * values**2).sum() / weights.sum()))


class NormalizedActivation(torch.nn.Module):
    """``c · f(x)`` with ``c`` from :func:`second_moment_scale`; ``name``: silu, tanh, sigmoid, abs, gelu."""

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}")
        self.name, self.fn, self.scale = name, _ACTIVATIONS[name], second_moment_scale(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x) * self.scale


def normalized_activation(name: str) -> NormalizedActivation:
    """The normalized activation called ``name``."""
    return NormalizedActivation(name)
