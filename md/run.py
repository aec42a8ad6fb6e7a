"""The MD loop: step an initialised state, log observables, write frames, guard against explosions."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from mlip.md.forcefield import ForceField
from mlip.md.observers import EnergyLog, ExplosionGuard
from mlip.md.state import MDState

Step = Callable[[MDState, ForceField, float], MDState]


class Writer(Protocol):
    def write(self, state: MDState) -> None: ...

    def close(self) -> None: ...


@dataclasses.dataclass
class RunResult:
    """Outcome of :func:`simulate`: final state, log, why it stopped early (``None`` if it did not),
    wall time (s), and throughput in atom-steps/s and ns/day."""

    state: MDState
    log: EnergyLog
    stopped: str | None
    wall_time: float
    atom_steps_per_s: float
    ns_per_day: float


def simulate(
    state: MDState,
    model: ForceField,
    step: Step,
    steps: int,
    dt: float,
    log_interval: int = 1,
    writers: Sequence[Writer] = (),
    write_interval: int = 10,
    guard: ExplosionGuard | None = None,
    progress: bool = False,
) -> RunResult:
    """Run ``steps`` steps of ``dt`` fs with an integrator's ``step`` (the state initialised by its
    ``init``). Logs every ``log_interval`` steps, writes every ``write_interval`` steps (and the first
    frame), checks ``guard`` after every logged step: on a violation the last frame is written, the run
    stops and ``RunResult.stopped`` says why. ``progress`` shows a tqdm bar with ns/day."""
    from tqdm import tqdm

    log = EnergyLog()
    log.record(state)
    for w in writers:
        w.write(state)
    stopped = None
    done = 0
    bar = tqdm(total=steps, disable=not progress, unit="step")
    start = time.perf_counter()
    for i in range(1, steps + 1):
        step(state, model, dt)
        done = i
        if i % log_interval == 0 or i == steps:
            log.record(state)
            if guard is not None:
                stopped = guard.check(state, model.edge_vectors(state))
        if i % write_interval == 0 or stopped is not None:
            for w in writers:
                w.write(state)
        if progress:
            elapsed = time.perf_counter() - start
            bar.set_postfix(ns_day=f"{i * dt * 1e-6 / max(elapsed, 1e-9) * 86400:.3g}", refresh=False)
            bar.update(1)
        if stopped is not None:
            break
    wall = time.perf_counter() - start
    bar.close()
    n_atoms = state.positions.shape[0]
    return RunResult(
        state=state,
        log=log,
        stopped=stopped,
        wall_time=wall,
        atom_steps_per_s=n_atoms * done / max(wall, 1e-12),
        ns_per_day=done * dt * 1e-6 / max(wall, 1e-12) * 86400,
    )
