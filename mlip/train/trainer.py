"""The training loop of ``mlip train``: one process or many under ``torchrun`` (DDP).

Files in ``output.dir``: ``config.yaml`` (resolved), ``checkpoint_last.pt`` / ``checkpoint_best.pt``
(resume state, written atomically), ``last.model`` / ``best.model`` (EMA weights, ``mlip.models.load``),
``log.csv`` (+ ``tensorboard/``), and at the end ``metrics.json``, ``learning_curve.png``,
``parity_<split>.png``. A folder holding an earlier run is only reused with ``resume`` (the config must
keep the fields that define the model and the data) or ``overwrite`` (see :mod:`mlip.train.run_dir`).

A non-finite loss term or gradient norm stops the run before the update with
:class:`~mlip.errors.RunFailedError` naming the step and the term; the checkpoints already written (all
finite) are kept.

Determinism: the data order is a function of (seed, step), the loss of a global batch does not depend on
how it is sharded, and checkpoints hold the optimizer, EMA, schedule, early-stopping and RNG states, so
``--resume`` continues exactly where the checkpoint left off (the running train-loss means included).
"""

from __future__ import annotations

import gc
import json
import math
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import torch

from mlip.data import keys as K
from mlip.errors import RunFailedError
from mlip.kernels import set_backend
from mlip.models.io import ModelFileError
from mlip.train import data as D
from mlip.train import report, run_dir
from mlip.train.checkpoint import load_checkpoint, save_checkpoint, write_text
from mlip.train.config import TrainConfig, dump_config, resume_changes
from mlip.train.distributed import Context, setup, teardown
from mlip.train.ema import EMA
from mlip.train.loss import loss_sums, loss_terms, total_loss, uses_stress, weights_at
from mlip.train.metrics import ErrorSums, Predictions, predict
from mlip.train.model_setup import build_model, cutoff_of, e0_option
from mlip.train.schedule import LRSchedule
from mlip.train.typed_config import ConfigError

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_RECENT = 50  # steps in the running means of the training loss and errors


class Trainer:
    """State of one run; :meth:`run` trains, :meth:`finish` evaluates and plots."""

    def __init__(
        self, config: TrainConfig, ctx: Context, resume: bool = False, overwrite: bool = False
    ) -> None:
        from mlip.datasets.statistics import compute_statistics

        self.cfg, self.ctx = config, ctx
        self.out = Path(config.output.dir)
        checkpoint = run_dir.prepare(self.out, resume, overwrite, ctx.is_main)
        state, changed = self._resume_state(checkpoint) if checkpoint is not None else (None, [])
        if ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(config.train.seed)
        splits = D.load_splits(config.data)
        if config.train.bootstrap:
            splits.train = D.bootstrap(splits.train, config.train.seed)
        cutoff = cutoff_of(config.model)
        e0 = e0_option(config.model, splits.isolated, config.data.train)
        self.stats = compute_statistics(splits.train, e0=e0, cutoff=cutoff)
        if self.stats.e0_method == "average_fallback" and ctx.is_main:
            print(
                "mlip train: warning: least squares cannot separate the E0s of elements "
                f"{self.stats.elements} in {config.data.train} (too few distinct compositions): "
                "every element gets the mean energy per atom; give isolated-atom frames "
                "(config_type=IsolatedAtom) or model.e0s {symbol: eV}",
                file=sys.stderr,
            )
        self.train_records = D.with_neighbors(splits.train, cutoff)
        D.require_labels(splits.train, self.train_records, config.data.train)
        self.valid_records = D.with_neighbors(splits.valid, cutoff) if splits.valid is not None else []
        self.test_records = D.with_neighbors(splits.test, cutoff) if splits.test is not None else []
        self.num_atoms = D.atom_counts(self.train_records)
        if len(self.train_records) < config.train.batch_size:
            raise ConfigError(
                f"train.batch_size: {config.train.batch_size} exceeds the {len(self.train_records)} "
                f"training structures of {config.data.train}"
            )
        if config.train.batch_size < ctx.world_size:
            raise ConfigError(f"train.batch_size: {config.train.batch_size} < {ctx.world_size} processes")
        self.model = build_model(config.model, self.stats, _DTYPES[config.train.dtype], ctx.device)
        set_backend(self.model, config.train.backend)
        self.stress = uses_stress(config.loss) and K.STRESS in self.train_records[0]
        self.net = self.model
        if ctx.world_size > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(self.model)
        o = config.optim
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=o.lr,
            betas=tuple(o.betas),
            eps=o.eps,
            weight_decay=o.weight_decay,
            amsgrad=o.amsgrad,
        )
        self.ema = EMA(self.model, o.ema_decay) if o.ema_decay else None
        self.schedule = LRSchedule(config.schedule, o.lr, config.train.max_steps, config.train.time_limit)
        self.step, self.elapsed, self.best, self.bad_validations = 0, 0.0, math.inf, 0
        self.recent = {k: deque(maxlen=_RECENT) for k in ("loss", "energy_mae", "forces_mae")}
        self.saved_step: int | None = None  # step of the last checkpoint written or resumed from
        if state is not None:
            self._restore(state, checkpoint)
            if changed and ctx.is_main:
                print(
                    f"mlip train: warning: resuming with changed fields: {'; '.join(changed)}",
                    file=sys.stderr,
                )
        from mlip.train.logs import RunLog

        self.log = (
            RunLog(self.out, self.step if state is not None else None, config.output.tensorboard)
            if ctx.is_main
            else None
        )
        self.bar = None  # the tqdm progress bar while run() runs (output.progress)
        if ctx.is_main:
            write_text(self.out / "config.yaml", dump_config(config))
            report.say(self.out, report.summary(self))

    # -- checkpoints ---------------------------------------------------------------------------------
    def _resume_state(self, path: Path) -> tuple[dict[str, Any], list[str]]:
        """The checkpoint at ``path`` and the fields of this run's config that differ from its config and
        may (run length, optimiser, ...); :class:`ConfigError` naming every field that defines the model or
        the data and differs."""
        state = load_checkpoint(path)
        if not isinstance(state.get("config"), dict):
            raise ModelFileError(f"{path}: not an mlip training checkpoint (no stored config)")
        fixed, free = resume_changes(state["config"], self.cfg)
        if fixed:
            raise ConfigError(
                f"--resume: the config differs from the one {path} was trained with in fields that define "
                f"the model or the data: {'; '.join(fixed)}"
            )
        return state, free

    def _state(self) -> dict[str, Any]:
        from mlip.train.typed_config import to_dict

        return {
            "step": self.step,
            "elapsed": self.elapsed,
            "best": self.best,
            "bad_validations": self.bad_validations,
            "model_name": self.model.name,
            "model_config": self.model.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "schedule": self.schedule.state_dict(),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "config": to_dict(self.cfg),
            "recent": {k: list(v) for k, v in self.recent.items()},
        }

    def _restore(self, state: dict[str, Any], path: Path) -> None:
        """Load a training state; :class:`ModelFileError` naming ``path`` when it does not fit this run."""
        try:
            self._restore_weights(state)
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
            self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
            self.best, self.bad_validations = float(state["best"]), int(state["bad_validations"])
            for key, values in state.get("recent", {}).items():  # absent in checkpoints before it was saved
                self.recent[key] = deque(values, maxlen=_RECENT)
            torch.set_rng_state(state["rng"])
            if state["cuda_rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda_rng"])
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise ModelFileError(
                f"{path}: checkpoint does not fit this run ({type(exc).__name__}: {exc})"
            ) from exc
        self.saved_step = self.step

    def _save(self, name: str) -> None:
        """Write ``checkpoint_<name>.pt`` and ``<name>.model`` (EMA weights) atomically (main process)."""
        if not self.ctx.is_main:
            return
        from mlip.train.checkpoint import atomic_write

        save_checkpoint(self.out / f"checkpoint_{name}.pt", self._state())
        with self._averaged():
            atomic_write(self.out / f"{name}.model", self.model.save)
        self.saved_step = self.step

    def _averaged(self):
        """Context with the EMA weights loaded (or a no-op without EMA)."""
        from contextlib import nullcontext

        return self.ema.applied(self.model) if self.ema else nullcontext(self.model)

    # -- evaluation ----------------------------------------------------------------------------------
    def evaluate(self, records: list, keep: Predictions | None = None) -> dict[str, float]:
        """Errors (meV units) and ``loss`` on ``records``, sharded over processes, with the EMA weights."""
        ctx = self.ctx
        indices = D.shard(torch.arange(len(records)), ctx.rank, ctx.world_size).tolist()
        errors = ErrorSums()
        terms = ("energy", "forces", "stress")
        totals = torch.zeros(2 + len(terms), dtype=torch.float64)  # structures, atoms, loss sums
        self.model.eval()
        with self._averaged():
            for batch, pred in predict(
                self.model,
                D.batches(records, self.cfg.train.valid_batch_size, ctx.device, indices),
                self.stress,
            ):
                errors.update(pred, batch)
                if keep is not None:
                    keep.update(pred, batch)
                sums = loss_sums(pred, batch, self.cfg.loss)
                totals[0] += batch[K.NUM_ATOMS].numel()
                totals[1] += float(batch[K.NUM_ATOMS].sum())
                for k, name in enumerate(terms):
                    totals[2 + k] += float(sums.get(name, 0.0))
        self.model.train()
        errors.reduce(ctx.all_reduce_sum)
        totals = ctx.all_reduce_sum(totals)
        result = errors.result()
        present = {n: totals[2 + k] for k, n in enumerate(terms) if f"{n}_mae" in result}
        if present and totals[0] > 0:
            weights = weights_at(self.cfg.loss, self.step)
            result["loss"] = float(total_loss(present, int(totals[0]), int(totals[1]), weights))
        return result

    # -- training ------------------------------------------------------------------------------------
    def _train_step(self) -> tuple[float, dict[str, torch.Tensor], dict]:
        """One optimizer step on the global batch of ``self.step``; returns the loss and the local batch."""
        cfg, ctx = self.cfg, self.ctx
        indices = D.global_batch(len(self.train_records), cfg.train.batch_size, cfg.train.seed, self.step)
        local = D.shard(indices, ctx.rank, ctx.world_size)
        batch = D.batch_of(self.train_records, local.tolist(), ctx.device)
        pred = self.net(batch, compute_forces=True, compute_stress=self.stress)
        sums = loss_sums(pred, batch, cfg.loss)
        weights = weights_at(cfg.loss, self.step)
        num_atoms = int(self.num_atoms[indices].sum())
        # DDP averages gradients over processes: scale so the average is the global-batch gradient.
        terms = loss_terms(sums, len(indices), num_atoms, weights)
        bad = [f"loss term '{n}' is {float(v.detach())}" for n, v in terms.items() if not torch.isfinite(v)]
        if ctx.any(bool(bad)):
            self._fail(bad[0] if bad else "a loss term is not finite on another process")
        loss = torch.stack(list(terms.values())).sum() * ctx.world_size
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.clip_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.clip_grad_norm)
            if not bool(torch.isfinite(norm)):  # gradients are all-reduced: every process sees this norm
                self._fail(f"gradient norm is {float(norm)}")
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule.lr(self.step, self._elapsed_all())
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return float(loss.detach()) / ctx.world_size, pred, batch

    def _elapsed_all(self) -> float | None:
        """Training seconds so far, averaged over processes (so every process sets the same learning
        rate); ``None`` without ``train.time_limit`` (the schedule then depends on the step only)."""
        if self.cfg.train.time_limit is None:
            return None
        if self.ctx.world_size == 1:
            return self.elapsed
        total = self.ctx.all_reduce_sum(torch.tensor([self.elapsed], dtype=torch.float64))
        return float(total[0]) / self.ctx.world_size

    def _fail(self, reason: str) -> None:
        """Stop the run at this step (before the update): :class:`RunFailedError` naming what is kept."""
        if self.saved_step is None:
            kept = "no checkpoint had been written yet"
        else:
            kept = f"kept {self.out}/checkpoint_last.pt (step {self.saved_step}) and best.model"
        raise RunFailedError(f"step {self.step}: {reason}; training stopped, {kept}")

    def _validate(self, train_row: dict[str, float]) -> bool:
        """Validate, log, checkpoint; returns True when early stopping triggers."""
        cfg = self.cfg
        metrics = self.evaluate(self.valid_records) if self.valid_records else {}
        metric = metrics.get(cfg.train.best_metric, train_row["train_loss"])
        if metrics:
            self.schedule.observe(metric)
        improved = metric < self.best
        if improved:
            self.best, self.bad_validations = metric, 0
        else:
            self.bad_validations += 1
        row = {
            "step": self.step,
            "epoch": self.step / max(1, len(self.train_records) // cfg.train.batch_size),
            "time_s": self.elapsed,
            "lr": self.schedule.lr(self.step, self._elapsed_all()),
            **train_row,
            **{f"valid_{k}": v for k, v in metrics.items()},
        }
        if self.log is not None:
            self.log.write(row)
            report.say(self.out, report.validation_line(row, cfg.train.max_steps), self.bar)
        if improved:
            self._save("best")
        self._save("last")
        patience = cfg.train.early_stopping_patience
        return patience is not None and self.bad_validations >= patience

    def run(self) -> None:
        """Train until ``max_steps``, the time limit or early stopping."""
        cfg, ctx = self.cfg, self.ctx
        bar = None
        if ctx.is_main and cfg.output.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.train.max_steps, initial=self.step, desc="train", unit="step")
        self.model.train()
        self.bar = bar
        try:
            self._loop(bar)
        finally:
            self.bar = None
            if bar is not None:
                bar.close()

    def _loop(self, bar: Any) -> None:
        """The steps of :meth:`run` (``bar``: a tqdm progress bar or ``None``)."""
        cfg, ctx, recent = self.cfg, self.ctx, self.recent
        while self.step < cfg.train.max_steps:
            start = time.perf_counter()
            loss, pred, batch = self._train_step()
            self.elapsed += time.perf_counter() - start
            errors = ErrorSums()
            errors.update(pred, batch)
            live = errors.result()
            recent["loss"].append(loss)
            for key in ("energy_mae", "forces_mae"):
                if key in live:
                    recent[key].append(live[key])
            if bar is not None:
                if cfg.train.time_limit is not None:  # the ETA of whichever ends the run first
                    bar.total = expected_steps(
                        self.step, self.elapsed, cfg.train.max_steps, cfg.train.time_limit
                    )
                bar.update(1)
                bar.set_postfix(
                    loss=f"{loss:.3g}",
                    E=f"{_mean(recent['energy_mae']):.1f}meV/at",
                    F=f"{_mean(recent['forces_mae']):.0f}meV/Å",
                )
            out_of_time = ctx.any(cfg.train.time_limit is not None and self.elapsed >= cfg.train.time_limit)
            done = out_of_time or self.step == cfg.train.max_steps
            if done or self.step % cfg.train.valid_every == 0:
                train_row = {f"train_{k}": _mean(v) for k, v in recent.items()}
                if self._validate(train_row):
                    break
            elif cfg.train.checkpoint_every and self.step % cfg.train.checkpoint_every == 0:
                self._save("last")
            if out_of_time:
                break

    def finish(self) -> dict[str, Any]:
        """Evaluate the best weights on valid and test data; write ``metrics.json`` and the plots."""
        self.ctx.barrier()  # the main process has written the best checkpoint
        best = self.out / "checkpoint_best.pt"
        if best.exists():
            self._restore_weights(load_checkpoint(best))
        results: dict[str, Any] = {"step": self.step, "train_seconds": self.elapsed}
        plots = self.cfg.output.plots and self.ctx.is_main
        for name, records in (("valid", self.valid_records), ("test", self.test_records)):
            if records:
                keep = Predictions() if plots else None
                results[name] = self.evaluate(records, keep)
                if keep is not None and self.ctx.world_size == 1:
                    from mlip.train.plots import parity

                    parity(keep.arrays(), self.out / f"parity_{name}.png", title=name)
        if self.ctx.is_main:
            write_text(self.out / "metrics.json", json.dumps(results, indent=2))
            if plots:
                from mlip.train.logs import read_log
                from mlip.train.plots import learning_curve

                learning_curve(read_log(self.out / "log.csv"), self.out / "learning_curve.png")
            if self.log is not None:
                self.log.close()
        return results

    def _restore_weights(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])


def expected_steps(step: int, elapsed: float, max_steps: int, time_limit: float) -> int:
    """Steps the run will have made when it stops: ``max_steps`` or, at the pace so far (``step``
    steps in ``elapsed`` s), the step at which ``time_limit`` s are spent, whichever comes first."""
    if step <= 0 or elapsed <= 0:
        return max_steps
    remaining = max(0.0, time_limit - elapsed) * step / elapsed
    return max(step, min(max_steps, step + math.ceil(remaining)))


def _mean(values: deque) -> float:
    return sum(values) / len(values) if values else float("nan")


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Run ``config`` (under ``torchrun`` when ``WORLD_SIZE`` > 1); returns the final metrics.

    ``resume`` continues from ``output.dir/checkpoint_last.pt``; ``overwrite`` replaces an earlier run
    in ``output.dir`` (without either, a folder holding one is refused). ``train.committee`` > 1 trains
    a committee (:mod:`mlip.train.committee`), member after member."""
    ctx = setup(config.train.device)
    try:
        return _run(config, ctx, resume, overwrite)
    finally:
        # The trainers (their DDP reducers) are gone with _run's frame; collect any cycles too, so that
        # no reducer outlives the process group: destroying gloo's last reference from a reducer's
        # finaliser joins its worker threads while holding the GIL they wait for (a deadlock at exit).
        gc.collect()
        teardown(ctx)


def _run(config: TrainConfig, ctx: Context, resume: bool, overwrite: bool) -> dict[str, Any]:
    """The body of :func:`train` in the process group ``ctx``."""
    if config.train.committee > 1:
        from mlip.train import committee

        results = []
        for member, resume_member in committee.prepare(config, resume, overwrite, ctx.is_main):
            trainer = Trainer(member, ctx, resume=resume_member, overwrite=overwrite)
            trainer.run()
            results.append(trainer.finish())
        return committee.finish(config, ctx, results)
    trainer = Trainer(config, ctx, resume=resume, overwrite=overwrite)
    trainer.run()
    return trainer.finish()
