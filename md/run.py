"""The MD loop: step an initialised state, log observables, write frames, guard against explosions."""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from mlip.md.checks import ExplosionError, MDInputError, UncertaintyError, check_parameter, check_structure
from mlip.md.forcefield import ForceField
from mlip.md.observers import EnergyLog, ExplosionGuard
from mlip.md.state import MDState

Step = Callable[[MDState, ForceField, float], MDState]


class Writer(Protocol):
    def write(self, state: MDState) -> None: ...

    def close(self) -> None: ...


@dataclasses.dataclass
class RunResult:
    """Outcome of :func:`simulate`: final state (the systems still running), log, wall time (s),
    throughput in atom-steps/s and ns/day, and the replicas dropped on the way (``{system id: error}``,
    each an :class:`~mlip.md.checks.ExplosionError` with its step and reason; only with
    ``on_explosion="drop"``)."""

    state: MDState
    log: EnergyLog
    wall_time: float
    atom_steps_per_s: float
    ns_per_day: float
    dropped: dict[int, ExplosionError] = dataclasses.field(default_factory=dict)


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
    on_explosion: str = "stop",
) -> RunResult:
    """Run ``steps`` steps of ``dt`` fs with an integrator's ``step`` (the state initialised by its
    ``init``). Logs every ``log_interval`` steps and the last one; writes the first frame, every
    ``write_interval``-th and always the last one. ``progress`` shows a tqdm bar with ns/day.

    The state and the parameters are checked before the first step (:class:`~mlip.md.checks.MDInputError`).
    ``guard`` (default ``ExplosionGuard()``) checks every step. When a system explodes, the frame of
    that step is logged and written (unless it is non-finite), then with ``on_explosion="stop"`` the run
    stops and :class:`~mlip.md.checks.ExplosionError` is raised with the step, the reason and the partial
    result; with ``"drop"`` the exploded replicas leave the batch (a ``RuntimeWarning`` names each, and
    :attr:`RunResult.dropped` lists them) and the others run on (the error is raised once none is left).
    With ``"drop"`` the returned ``RunResult.state`` is a new state holding the remaining systems.
    """
    from tqdm import tqdm

    _check_run(state, dt, steps, log_interval, write_interval, on_explosion)
    guard = guard if guard is not None else ExplosionGuard()
    edge_index, vectors = model.neighbours(state)
    guard.start(state, edge_index)
    log = EnergyLog()
    log.record(state)
    dropped: dict[int, ExplosionError] = {}
    written: int | None = None
    if _finite(state):
        for w in writers:
            w.write(state)
        written = state.step
    bar = tqdm(total=steps, disable=not progress, unit="step")
    start = time.perf_counter()

    def survivors(state: MDState, exploded: dict[int, str], done: int) -> MDState:
        """The state to go on with: all of it, the replicas that did not explode, or none (raise)."""
        if not exploded:
            return state
        if on_explosion == "stop" or len(exploded) == state.num_systems:
            bar.close()
            result = _result(state, log, done, dt, time.perf_counter() - start, dropped)
            raise _explosion(exploded, written if writers else None, result, guard)
        return _drop(state, exploded, guard, dropped)

    state = survivors(state, guard.check(state, edge_index, vectors), 0)
    for i in range(1, steps + 1):
        step(state, model, dt)
        exploded = guard.check(state, *model.neighbours(state))
        last = i == steps or bool(exploded)
        if i % log_interval == 0 or last:
            log.record(state)
        if (i % write_interval == 0 or last) and _finite(state):
            for w in writers:
                w.write(state)
            written = state.step
        if progress:
            elapsed = time.perf_counter() - start
            bar.set_postfix(ns_day=f"{i * dt * 1e-6 / max(elapsed, 1e-9) * 86400:.3g}", refresh=False)
            bar.update(1)
        state = survivors(state, exploded, i)
    wall = time.perf_counter() - start
    bar.close()
    return _result(state, log, steps, dt, wall, dropped)


def _check_run(
    state: MDState, dt: float, steps: int, log_interval: int, write_interval: int, on_explosion: str
) -> None:
    """Refuse bad run parameters and a state no step can start from (:class:`MDInputError`)."""
    check_parameter("dt", dt, "fs")
    for name, value in (("steps", steps), ("log_interval", log_interval), ("write_interval", write_interval)):
        if int(value) != value or value < (0 if name == "steps" else 1):
            raise MDInputError(f"{name} = {value}: must be an integer >= {0 if name == 'steps' else 1}")
    if on_explosion not in ("stop", "drop"):
        raise MDInputError(f"on_explosion = {on_explosion!r}: must be 'stop' or 'drop'")
    check_structure(state, "initial state")
    if state.forces is None or state.energy is None:
        raise MDInputError("the state has no forces: call the integrator's init first")


def _drop(
    state: MDState, exploded: dict[int, str], guard: ExplosionGuard, dropped: dict[int, ExplosionError]
) -> MDState:
    """The state without the ``exploded`` systems (batch indices); each is named in a warning and in
    ``dropped``."""
    ids = state.system_ids.tolist()
    for b, reason in exploded.items():
        dropped[ids[b]] = _error_class(guard, b)(state.step, reason, ids[b])
        warnings.warn(
            f"replica {ids[b]} dropped at step {state.step}: {reason}", RuntimeWarning, stacklevel=3
        )
    keep = [b for b in range(state.num_systems) if b not in exploded]
    guard.keep(torch.tensor(keep, device=state.device))
    return state.select(keep)


def _result(
    state: MDState, log: EnergyLog, done: int, dt: float, wall: float, dropped: dict[int, ExplosionError]
) -> RunResult:
    n_atoms = state.positions.shape[0]
    return RunResult(
        state=state,
        log=log,
        wall_time=wall,
        atom_steps_per_s=n_atoms * done / max(wall, 1e-12),
        ns_per_day=done * dt * 1e-6 / max(wall, 1e-12) * 86400,
        dropped=dict(dropped),
    )


def _finite(state: MDState) -> bool:
    tensors = (state.positions, state.velocities, state.forces, state.energy, state.cell)
    return all(bool(torch.isfinite(t).all()) for t in tensors if t is not None)


def _error_class(guard: ExplosionGuard, system: int) -> type[ExplosionError]:
    """:class:`UncertaintyError` when ``guard`` stopped batch index ``system`` as uncertain only."""
    return UncertaintyError if guard.uncertain(system) else ExplosionError


def _explosion(
    exploded: dict[int, str], written: int | None, result: RunResult, guard: ExplosionGuard
) -> ExplosionError:
    """The error for the first exploded system (:class:`UncertaintyError` when it was only uncertain),
    saying what the trajectory kept (``written``: the step of the last frame written, ``None`` without
    writers or frames)."""
    b, reason = next(iter(exploded.items()))
    others = f" ({len(exploded) - 1} other system(s) too)" if len(exploded) > 1 else ""
    earlier = f"; dropped before: {len(result.dropped)} replica(s)" if result.dropped else ""
    kept = f"; trajectory kept up to step {written}" if written is not None else ""
    system = int(result.state.system_ids[b])
    error = _error_class(guard, b)
    return error(result.state.step, f"{reason}{others}{earlier}{kept}", system, result)
