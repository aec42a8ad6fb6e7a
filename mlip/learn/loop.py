"""The active-learning loop of ``mlip learn``: rounds of train -> MD -> select -> label, resumable.

Round ``r`` (from 0):

1. ``train``: the committee (``train`` section, ``train.committee`` members) on the seed set plus every
   frame labelled in rounds ``< r`` (``round<r>/train.extxyz``), in ``round<r>/committee``; with
   ``warm_start`` member ``i`` starts from member ``i`` of round ``r - 1``. Test force MAE when ``test``.
2. ``md``: committee MD from the start structures (:mod:`mlip.learn.explore`); its frames in
   ``round<r>/md.extxyz``.
3. ``select``: stop when the whole run stayed below ``select.threshold`` (``converged``), after
   ``stop.max_rounds`` labelling rounds (``max_rounds``), at ``stop.max_dft_calls`` (``max_dft_calls``) or
   when no candidate is far enough from the training set (``no_new_frames``); else the most uncertain,
   spread-out frames (:func:`mlip.learn.selection.select_uncertain`) go to ``round<r>/selected.extxyz``
   with config ids ``r * 100000 + j``.
4. ``label``: PySCF (:func:`mlip.dft.labelling.label_configurations`) appends each frame to
   ``labelled.extxyz`` as it is computed; all frames of a round failing is a :class:`RunFailedError`.

``state.json`` (round, phase, DFT calls, history) is replaced atomically after every phase, and each phase
redoes only what its own files lack: a run killed anywhere resumes (``resume=True``) without losing a
labelled frame or labelling one twice (the labelling skips the config ids already in ``labelled.extxyz``;
a frame torn by the kill is dropped and relabelled). ``stop.time_limit`` ends an invocation at the next
phase boundary (or inside the labelling) with the state ready to resume.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

from mlip.errors import RunFailedError, UserInputError
from mlip.learn.config import LearnConfig, dump_config, resume_changes

STATE = "state.json"
LABELLED = "labelled.extxyz"
ID_STRIDE = 100_000  # config id of selected frame j of round r: r * ID_STRIDE + j
PHASES = ("train", "md", "select", "label", "done")
OUTPUTS = (
    STATE,
    LABELLED,
    "config.yaml",
    "committee.model",
    "history.json",
    "history.csv",
    "learn.png",
    "learn.log",
)


@dataclasses.dataclass
class LoopState:
    """The loop's progress: the current ``round`` and its next ``phase``; ``failed_calls`` (DFT
    calculations that failed, all rounds), ``stopped`` (the reason the loop ended, or ``None``) and one
    ``history`` record per round (filled in phase by phase)."""

    round: int = 0
    phase: str = "train"
    failed_calls: int = 0
    stopped: str | None = None
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> LoopState:
        try:
            data = json.loads(path.read_text())
            state = cls(**data)
        except (json.JSONDecodeError, TypeError) as error:
            raise UserInputError(f"{path}: not a state file of mlip learn ({error})") from error
        if state.phase not in PHASES:
            raise UserInputError(f"{path}: phase {state.phase!r} is not one of {list(PHASES)}")
        return state

    def write(self, path: Path) -> None:
        from mlip.dft.store import write_atomic

        write_atomic(path, json.dumps(dataclasses.asdict(self), indent=1) + "\n")


class _Stop(Exception):
    """Internal: end this invocation (the reason is in the loop's log)."""


class Loop:
    """One invocation of ``mlip learn`` on the run folder ``config.output.dir``."""

    def __init__(self, config: LearnConfig, resume: bool = False, overwrite: bool = False) -> None:
        from mlip.dft.pyscf_labeler import DFTSettings

        self.config = config
        self.out = Path(config.output.dir)
        self.settings = DFTSettings(**dataclasses.asdict(config.dft))
        self.seed_frames = self._labelled_set(config.train.data.train, "train.data.train")
        self.test_frames = self._labelled_set(config.test, "test") if config.test else None
        self.starts = self._start_structures()
        self.state = self._prepare(resume, overwrite)
        self.start = time.monotonic()

    # ----------------------------------------------------------------------------------- run folder
    def _prepare(self, resume: bool, overwrite: bool) -> LoopState:
        """Check the run folder against the flags (like ``mlip train``'s) and return the state."""
        import yaml

        state_path = self.out / STATE
        if resume and overwrite:
            raise UserInputError("--resume and --overwrite exclude each other")
        if resume:
            if not state_path.is_file():
                raise UserInputError(f"--resume: no {STATE} in output.dir {self.out}, nothing to resume")
            stored = yaml.safe_load((self.out / "config.yaml").read_text())
            changed = resume_changes(stored, self.config)
            if changed:
                raise UserInputError(f"--resume: the config differs from the run's in {changed[0]}")
            state = LoopState.read(state_path)
        else:
            if not overwrite and ((self.out / STATE).exists() or (self.out / LABELLED).exists()):
                raise UserInputError(
                    f"output.dir {self.out} holds an earlier learning run: pass --resume to continue it or "
                    "--overwrite to replace it (which deletes its labelled frames)"
                )
            state = LoopState()
        self.out.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for name in OUTPUTS:
                (self.out / name).unlink(missing_ok=True)
            for folder in self.out.glob("round*"):
                shutil.rmtree(folder)
        from mlip.dft.store import write_atomic

        write_atomic(self.out / "config.yaml", dump_config(self.config))
        if not resume:
            state.write(state_path)
        return state

    def _labelled_set(self, path: str, field: str) -> list[Any]:
        """Labelled frames of ``path`` (extxyz) at this run's level of theory (``UserInputError``)."""
        from ase.io import read

        from mlip.dft.labelling import check_level_of_theory

        if not Path(path).is_file():
            raise UserInputError(f"{field}: {path} does not exist")
        frames = read(path, index=":")
        if not frames:
            raise UserInputError(f"{field}: {path} holds no frames")
        check_level_of_theory(frames, self.settings, path)
        return frames

    def _start_structures(self) -> list[Any]:
        from ase.io import read

        path = self.config.md.structures
        if path is None:
            return [self.seed_frames[0].copy()]
        if not Path(path).is_file():
            raise UserInputError(f"md.structures: {path} does not exist")
        return read(path, index=":")

    # ---------------------------------------------------------------------------------- the loop
    def log(self, message: str) -> None:
        line = f"[learn] round {self.state.round} {message}"
        print(line, flush=True)
        with open(self.out / "learn.log", "a") as f:
            f.write(line + "\n")

    def save(self, phase: str | None = None) -> None:
        if phase is not None:
            self.state.phase = phase
        self.state.write(self.out / STATE)
        from mlip.learn.report import write_history

        write_history(self.out, self.state.history, self.config.select.threshold)

    def run(self) -> dict[str, Any]:
        """Run rounds until a stop; returns ``{"stopped": reason or None, "round", "dft_calls",
        "model": the last committee file, "history"}`` (``stopped`` ``None``: the time limit ended this
        invocation; resume to go on)."""
        if self.state.phase == "done":  # a finished run resumed: the budgets may have been raised
            self.log(f"was stopped ({self.state.stopped}); checking the stops again")
            self.state.stopped = None
            self.save("select")
        steps = {"train": self._train, "md": self._md, "select": self._select, "label": self._label}
        try:
            while self.state.phase != "done":
                self._check_time()
                steps[self.state.phase]()
        except _Stop:
            pass
        model = self.out / f"round{self.state.round}" / "committee" / "committee.model"
        return {
            "stopped": self.state.stopped,
            "round": self.state.round,
            "dft_calls": self.dft_calls(),
            "model": str(model) if model.exists() else None,
            "history": self.state.history,
        }

    def _check_time(self) -> None:
        limit = self.config.stop.time_limit
        if limit is not None and time.monotonic() - self.start > limit:
            self.log(f"{self.state.phase}: time limit of {limit:.0f} s reached; resume to go on")
            raise _Stop

    def _round_dir(self) -> Path:
        return self.out / f"round{self.state.round}"

    def _record(self) -> dict[str, Any]:
        """The history record of the current round."""
        while len(self.state.history) <= self.state.round:
            self.state.history.append({"round": len(self.state.history)})
        return self.state.history[self.state.round]

    def labelled_frames(self) -> list[Any]:
        from mlip.dft import store

        return store.read_frames(self.out / LABELLED)

    def dft_calls(self) -> int:
        """PySCF calculations so far: the labelled frames plus the failed calculations."""
        return len(self.labelled_frames()) + self.state.failed_calls

    def training_frames(self) -> list[Any]:
        """The seed frames and the frames labelled in rounds before the current one."""
        earlier = [a for a in self.labelled_frames() if int(a.info["learn_round"]) < self.state.round]
        return [*self.seed_frames, *earlier]

    # ------------------------------------------------------------------------------------ phases
    def _train(self) -> None:
        from mlip.dft import store
        from mlip.models import load

        folder = self._round_dir()
        folder.mkdir(exist_ok=True)
        frames = self.training_frames()
        data = folder / "train.extxyz"
        store.write_atomic(data, "".join(store.frame_text(a) for a in frames))
        self.log(f"train: committee of {self.config.train.train.committee} on {len(frames)} frames")
        committee = self._train_committee(data, folder / "committee")
        record = self._record()
        record["train_size"] = len(frames)
        record["test_forces_mae"] = self._test_mae(load(committee)) if self.test_frames else None
        if record["test_forces_mae"] is not None:
            self.log(f"train: test force MAE {1e3 * record['test_forces_mae']:.1f} meV/Å")
        self.save("md")

    def _train_committee(self, data: Path, out: Path) -> Path:
        """Train (or finish training) the round's committee; returns its file."""
        from mlip.train import committee
        from mlip.train.run_dir import LAST_CHECKPOINT
        from mlip.train.trainer import train

        base = self.config.train
        config = dataclasses.replace(
            base,
            data=dataclasses.replace(base.data, train=str(data)),
            output=dataclasses.replace(base.output, dir=str(out)),
        )
        target = out / committee.COMMITTEE_FILE
        if target.is_file():
            return target
        previous = self.out / f"round{self.state.round - 1}" / "committee"
        if not (self.config.warm_start and self.state.round > 0):
            members = [committee.member_config(config, i) for i in range(base.train.committee)]
            started = any(Path(m.output.dir, LAST_CHECKPOINT).is_file() for m in members)
            train(config, resume=started, overwrite=not started)
            return target
        for i in range(base.train.committee):  # warm start: member i from member i of the last round
            member = committee.member_config(config, i)
            init = str(previous / f"member{i}" / "best.model")
            member = dataclasses.replace(member, model=dataclasses.replace(member.model, init=init))
            started = Path(member.output.dir, LAST_CHECKPOINT).is_file()
            train(member, resume=started, overwrite=not started)
        return committee.write_committee(config)

    def _test_mae(self, model: Any) -> float:
        """Mean absolute force error (eV/Å) of ``model`` on the test set."""
        import numpy as np

        from mlip.calculator import MLIPCalculator

        results = MLIPCalculator(model, device="cpu").calculate_many(self.test_frames)
        pairs = zip(results, self.test_frames, strict=True)
        errors = [np.abs(r["forces"] - a.get_forces()).ravel() for r, a in pairs]
        return float(np.concatenate(errors).mean())

    def _md(self) -> None:
        from mlip.dft import store
        from mlip.learn.explore import explore
        from mlip.models import load

        committee = load(self._round_dir() / "committee" / "committee.model")
        md = self.config.md
        self.log(f"md: {md.ensemble} {md.temperature:g} K, {md.steps} steps x {len(self.starts)} replica(s)")
        found = explore(committee, self.starts, md, md.seed + self.state.round, self.config.output.progress)
        store.write_atomic(
            self._round_dir() / "md.extxyz", "".join(store.frame_text(a) for a in found.frames)
        )
        record = self._record()
        record.update(
            md_steps=found.steps,
            md_stopped=found.stopped,
            max_uncertainty=found.max_std,
            mean_uncertainty=found.mean_std,
            candidates=sum(a.info["max_forces_std"] > self.config.select.threshold for a in found.frames),
        )
        self.log(
            f"md: {found.steps} steps, committee force std max {found.max_std:.3g} mean {found.mean_std:.3g} "
            f"eV/Å, {record['candidates']} frames above {self.config.select.threshold:g}"
            + (f"; stopped early: {found.stopped}" if found.stopped else "")
        )
        self.save("select")

    def _finish(self, reason: str, message: str) -> None:
        self.state.stopped = reason
        self.log(f"stop ({reason}): {message}")
        from mlip.train.checkpoint import atomic_write

        final = self._round_dir() / "committee" / "committee.model"
        atomic_write(self.out / "committee.model", lambda path: shutil.copyfile(final, path))
        self.save("done")

    def _select(self) -> None:
        import numpy as np
        from ase.io import read

        from mlip.dft import store
        from mlip.learn.selection import select_uncertain, structure_fingerprint

        record = self._record()
        threshold, stop = self.config.select.threshold, self.config.stop
        if not record["md_stopped"] and record["max_uncertainty"] <= threshold:
            return self._finish("converged", f"the whole MD run stayed below {threshold:g} eV/Å")
        if self.state.round >= stop.max_rounds:
            return self._finish("max_rounds", f"{stop.max_rounds} rounds of labelling done")
        budget = None if stop.max_dft_calls is None else stop.max_dft_calls - self.dft_calls()
        if budget is not None and budget <= 0:
            return self._finish("max_dft_calls", f"{self.dft_calls()} DFT calculations done")
        frames = read(self._round_dir() / "md.extxyz", index=":")
        candidates = [a for a in frames if a.info["max_forces_std"] > threshold]
        k = self.config.select.frames if budget is None else min(self.config.select.frames, budget)
        chosen = select_uncertain(
            [a.info["max_forces_std"] for a in candidates],
            [structure_fingerprint(a.numbers, a.positions) for a in candidates],
            k,
            self.config.select.min_distance,
            exclude=[structure_fingerprint(a.numbers, a.positions) for a in self.training_frames()],
        )
        if not chosen:
            if not candidates:  # not converged, yet no written frame above the threshold
                why = (
                    f"the MD run stopped ({record['md_stopped']}) before writing any frame above"
                    if record["md_stopped"]
                    else "only steps between written frames went above (lower md.write_interval):"
                )
                raise RunFailedError(f"round {self.state.round}: {why} {threshold:g} eV/Å: nothing to label")
            return self._finish(
                "no_new_frames",
                f"all {len(candidates)} candidates lie within {self.config.select.min_distance:g} 1/Å of a "
                "training frame",
            )
        selected = []
        for j, index in enumerate(chosen):
            atoms = candidates[index].copy()
            atoms.info = {
                "config_id": self.state.round * ID_STRIDE + j,
                "learn_round": self.state.round,
                "md_step": int(atoms.info["step"]),
                "md_system": int(atoms.info["system"]),
                "committee_forces_std": float(atoms.info["max_forces_std"]),
            }
            selected.append(atoms)
        store.write_atomic(
            self._round_dir() / "selected.extxyz", "".join(store.frame_text(a) for a in selected)
        )
        record["selected"] = len(selected)
        record["selected_std"] = [round(float(a.info["committee_forces_std"]), 6) for a in selected]
        self.log(
            f"select: {len(selected)} of {len(candidates)} candidates, committee force std "
            f"{np.round(record['selected_std'], 3).tolist()} eV/Å"
        )
        self.save("label")

    def _label(self) -> None:
        from ase.io import read

        from mlip.dft.executor import make_executor
        from mlip.dft.labelling import label_configurations

        selected = read(self._round_dir() / "selected.extxyz", index=":")
        for atoms in selected:
            atoms.info["config_id"] = int(atoms.info["config_id"])
        ids = {int(a.info["config_id"]) for a in selected}
        before = sum(int(a.info["config_id"]) in ids for a in self.labelled_frames())
        self.log(
            f"label: {len(selected) - before} of {len(selected)} frames to go, "
            f"{self.settings.xc}/{self.settings.basis}"
        )
        label = self.config.label
        executor = make_executor(label.workers, label.threads_per_worker, label.scheduler)
        remaining = None
        if self.config.stop.time_limit is not None:
            remaining = max(0.0, self.config.stop.time_limit - (time.monotonic() - self.start))
        try:
            report = label_configurations(
                selected, self.out / LABELLED, self.settings, executor, remaining, self.config.output.progress
            )
        finally:
            executor.close()
        self.state.failed_calls += len(report.failed)
        record = self._record()
        record["failed"] = record.get("failed", 0) + len(report.failed)
        if report.stopped_early:
            self.save()
            self.log("label: time limit reached; resume to label the rest")
            raise _Stop
        done = [a for a in self.labelled_frames() if int(a.info["config_id"]) in ids]
        record["labelled"] = len(done)
        record["dft_calls"] = self.dft_calls()
        if not done:
            self.save()
            failures = "; ".join(f"config {i}: {e}" for i, e in sorted(report.failed.items()))
            raise RunFailedError(f"round {self.state.round}: labelling failed for every frame ({failures})")
        if report.failed:
            self.log(f"label: {len(report.failed)} of {len(selected)} frames failed and are left out")
        self.state.round += 1
        self.save("train")
