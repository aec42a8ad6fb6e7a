"""Exponential moving average of model parameters, with a warm-up of the decay."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


class EMA:
    """Shadow weights ``θ̄ ← d·θ̄ + (1 - d)·θ`` with ``d = min(decay, (1 + n) / (10 + n))`` at update ``n``."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.num_updates = 0
        self.shadow = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the shadow weights towards the current ones."""
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for s, p in zip(self.shadow, model.parameters(), strict=True):
            s.lerp_(p.detach(), 1.0 - d)
        self.num_updates += 1

    @contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """Temporarily load the shadow weights into ``model`` (restored on exit)."""
        saved = [p.detach().clone() for p in model.parameters()]
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for p, v in zip(model.parameters(), saved, strict=True):
                    p.copy_(v)

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        """Overwrite ``model``'s parameters with the shadow weights."""
        for p, s in zip(model.parameters(), self.shadow, strict=True):
            p.copy_(s)

    def state_dict(self) -> dict[str, object]:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": list(self.shadow)}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        with torch.no_grad():
            for s, v in zip(self.shadow, state["shadow"], strict=True):
                s.copy_(v)
