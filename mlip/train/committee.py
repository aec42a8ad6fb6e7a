"""``train.committee: N``: train N models one after another and save them as one committee file.

Member ``i`` is the run's config with ``model.seed + i`` and ``train.seed + i`` (its weights and data
order; with ``train.bootstrap`` also its resample of the training set), ``train.committee: 1`` and
``output.dir/member<i>`` as its run folder, so each member is an ordinary run (checkpoints, logs,
``best.model``) and resumes as one. The validation and test sets are shared (``data.split_seed``).
At the end the members' ``best.model`` files become ``output.dir/committee.model``
(:class:`mlip.models.Committee`, loadable by :func:`mlip.models.load`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mlip.errors import UserInputError
from mlip.train.config import TrainConfig, dump_config
from mlip.train.distributed import Context
from mlip.train.run_dir import LAST_CHECKPOINT

COMMITTEE_FILE = "committee.model"


def member_config(config: TrainConfig, index: int) -> TrainConfig:
    """The config of committee member ``index`` (see the module docstring)."""
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, seed=config.model.seed + index),
        train=dataclasses.replace(config.train, seed=config.train.seed + index, committee=1),
        output=dataclasses.replace(config.output, dir=str(Path(config.output.dir) / f"member{index}")),
    )


def prepare(
    config: TrainConfig, resume: bool, overwrite: bool, is_main: bool
) -> list[tuple[TrainConfig, bool]]:
    """The members' configs, each with whether it resumes (``resume`` and it has a checkpoint); checks
    ``output.dir`` against the flags like :func:`mlip.train.run_dir.prepare` (``UserInputError``)."""
    from mlip.train.checkpoint import write_text

    out = Path(config.output.dir)
    target = out / COMMITTEE_FILE
    members = [member_config(config, i) for i in range(config.train.committee)]
    started = [Path(m.output.dir, LAST_CHECKPOINT).is_file() for m in members]
    if resume and overwrite:
        raise UserInputError("--resume and --overwrite exclude each other")
    if resume and not any(started):
        raise UserInputError(f"--resume: no member of the committee in {out} has a {LAST_CHECKPOINT}")
    if not (resume or overwrite) and (target.exists() or any(started)):
        raise UserInputError(
            f"output.dir {out} holds an earlier committee run: pass --resume to continue it or --overwrite "
            "to replace it"
        )
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        if overwrite:
            target.unlink(missing_ok=True)
        write_text(out / "config.yaml", dump_config(config))
    return [(m, resume and s) for m, s in zip(members, started, strict=True)]


def write_committee(config: TrainConfig) -> Path:
    """Write ``output.dir/committee.model`` (atomically) from the members' ``best.model``; returns it."""
    from mlip.models import Committee, load, save
    from mlip.train.checkpoint import atomic_write

    target = Path(config.output.dir) / COMMITTEE_FILE
    members = [member_config(config, i) for i in range(config.train.committee)]
    committee = Committee([load(Path(m.output.dir) / "best.model") for m in members])
    atomic_write(target, lambda path: save(committee, path))
    return target


def finish(config: TrainConfig, ctx: Context, results: list[dict[str, Any]]) -> dict[str, Any]:
    """:func:`write_committee` (main process); returns ``{"committee": path, "members": results}``
    (each member's final metrics)."""
    if ctx.is_main:
        write_committee(config)
    ctx.barrier()
    return {"committee": str(Path(config.output.dir) / COMMITTEE_FILE), "members": results}
