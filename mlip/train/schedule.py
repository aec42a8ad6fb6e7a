"""Learning-rate schedule: linear warm-up, then constant, cosine decay or reduce-on-plateau.

A pure function of the step (and, with a time limit, of the training seconds so far) plus the plateau
state, saved in checkpoints (no closures to pickle).
"""

from __future__ import annotations

import math

from mlip.train.config import ScheduleConfig


class LRSchedule:
    """``lr(step, elapsed)`` for optimizer step ``step`` (0-based) after ``elapsed`` s of training;
    :meth:`observe` feeds validation metrics. With a ``time_limit`` (s) the cosine decay follows whichever
    of the step count and the time runs out first, so a time-limited run still ends at ``min_lr``."""

    def __init__(
        self, cfg: ScheduleConfig, base_lr: float, max_steps: int, time_limit: float | None = None
    ) -> None:
        self.cfg = cfg
        self.base_lr = base_lr
        self.max_steps = max_steps
        self.time_limit = time_limit
        self.reductions = 0
        self.best = math.inf
        self.bad = 0

    def lr(self, step: int, elapsed: float | None = None) -> float:
        cfg = self.cfg
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return self.base_lr * (step + 1) / cfg.warmup_steps
        if cfg.kind == "cosine":
            span = max(1, self.max_steps - cfg.warmup_steps)
            progress = (step - cfg.warmup_steps) / span
            if self.time_limit is not None and elapsed is not None:
                progress = max(progress, elapsed / self.time_limit)
            progress = min(1.0, progress)
            return cfg.min_lr + 0.5 * (self.base_lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))
        if cfg.kind == "plateau":
            return max(cfg.min_lr, self.base_lr * cfg.plateau_factor**self.reductions)
        return self.base_lr

    def observe(self, metric: float) -> None:
        """Record a validation metric; after ``plateau_patience`` without improvement, reduce the lr."""
        if metric < self.best:
            self.best, self.bad = metric, 0
            return
        self.bad += 1
        if self.cfg.kind == "plateau" and self.bad >= self.cfg.plateau_patience:
            self.reductions += 1
            self.bad = 0

    def state_dict(self) -> dict[str, float]:
        return {"reductions": self.reductions, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.reductions, self.best, self.bad = (
            int(state["reductions"]),
            float(state["best"]),
            int(state["bad"]),
        )
