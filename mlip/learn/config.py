"""The ``mlip learn`` configuration: a typed dataclass tree loaded from YAML (like ``mlip train``'s).

Every field has a default and a comment (units in brackets) except ``train``, a whole ``mlip train``
config (:class:`mlip.train.config.TrainConfig`) whose ``data.train`` is the seed training set and whose
``train.committee`` (>= 2) is the committee size. A minimal config::

    train:
      data: {train: seed.extxyz, valid_fraction: 0.1}
      model: {name: mace, hyperparameters: {r_max: 4.0}}
      train: {max_steps: 2000, committee: 4}
    md: {temperature: 500, steps: 2000}
    select: {threshold: 0.1, frames: 10}
    dft: {xc: PBE, basis: def2-SVP}
    stop: {max_rounds: 10, max_dft_calls: 200}
    output: {dir: runs/learn}

Errors name the dotted field (``select.frames: must be >= 1, got 0``; :class:`ConfigError`, exit 2).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mlip.dft.pyscf_labeler import DFTSettings
from mlip.train.config import TrainConfig
from mlip.train.typed_config import ConfigError, apply_override, from_dict, read_mapping, to_dict


def _positive(obj: object, names: tuple[str, ...], minimum: float = 0.0, strict: bool = True) -> None:
    for name in names:
        value = getattr(obj, name)
        ok = value is None or (math.isfinite(value) and (value > minimum if strict else value >= minimum))
        if not ok:
            raise ValueError(f"{name}: must be {'>' if strict else '>='} {minimum}, got {value}")


@dataclass
class MDSection:
    """The committee MD run of every round that finds the frames to label."""

    # start structures: every frame of this file is one replica (None: the first frame of train.data.train)
    structures: str | None = None
    ensemble: Literal["langevin", "nve", "nhc", "csvr"] = "langevin"  # integrator (mlip md --ensemble)
    temperature: float = 300.0  # thermostat target and initial velocities [K]
    steps: int = 1000  # MD steps per round
    dt: float = 0.5  # time step [fs]
    friction: float = 0.01  # Langevin friction [1/fs]
    tau_t: float = 100.0  # thermostat time of nhc and csvr [fs]
    write_interval: int = 10  # keep a candidate frame every this many steps
    # stop a replica once its largest per-atom force std exceeds this [eV/Å] (None: run all steps)
    max_uncertainty: float | None = None
    skin: float = 1.0  # neighbour-list skin [Å]
    seed: int = 0  # velocities and thermostat noise; round r uses seed + r

    def __post_init__(self) -> None:
        _positive(self, ("temperature",), strict=False)
        _positive(self, ("dt", "max_uncertainty", "tau_t", "friction"))
        _positive(self, ("steps", "write_interval"), minimum=1, strict=False)
        _positive(self, ("skin",), strict=False)


@dataclass
class SelectSection:
    """Which MD frames go to DFT (mlip.learn.selection.select_uncertain)."""

    # frames whose largest per-atom committee force std exceeds this are candidates; an MD run that stays
    # below it at every step ends the loop as converged [eV/Å]
    threshold: float = 0.05
    frames: int = 10  # most uncertain frames labelled per round (k)
    # no two selected frames, and none and a training frame, closer than this fingerprint distance [1/Å]
    min_distance: float = 0.01

    def __post_init__(self) -> None:
        _positive(self, ("threshold",))
        _positive(self, ("frames",), minimum=1, strict=False)
        _positive(self, ("min_distance",), strict=False)


@dataclass
class LabelSection:
    """Where the PySCF calculations run (mlip.dft.executor)."""

    workers: int = 1  # parallel PySCF processes on this machine (1: inline)
    threads_per_worker: int | None = None  # OpenMP threads per worker (None: cores / workers)
    scheduler: str | None = None  # Dask distributed scheduler address (tcp://host:8786) instead of workers

    def __post_init__(self) -> None:
        _positive(self, ("workers", "threads_per_worker"), minimum=1, strict=False)


@dataclass
class StopSection:
    """When the loop ends (besides convergence)."""

    max_rounds: int = 10  # rounds of labelling; the next round trains on all of them, runs MD and stops
    max_dft_calls: int | None = None  # PySCF calculations in total, failed ones included (None: no limit)
    time_limit: float | None = None  # wall time of one `mlip learn` invocation [s]; resume to go on

    def __post_init__(self) -> None:
        _positive(self, ("max_rounds",), minimum=1, strict=False)
        _positive(self, ("max_dft_calls",), minimum=1, strict=False)
        _positive(self, ("time_limit",))


@dataclass
class LearnOutput:
    """Where and what to write."""

    dir: str = "runs/learn"  # run folder: state.json, labelled.extxyz, round<r>/, history, learn.png
    progress: bool = True  # progress bars of the MD and labelling phases


@dataclass
class LearnConfig:
    """Everything `mlip learn` needs."""

    # the committee's `mlip train` config: data.train is the seed set, train.committee >= 2 its size
    # (output.dir is set per round to output.dir/round<r>/committee)
    train: TrainConfig
    warm_start: bool = False  # member i of round r starts from member i of round r - 1 (model.init)
    test: str | None = None  # labelled test set (extxyz, same level of theory): force MAE per round
    md: MDSection = field(default_factory=MDSection)  # the MD run of each round
    select: SelectSection = field(default_factory=SelectSection)  # frame selection
    dft: DFTSettings = field(default_factory=DFTSettings)  # level of theory of the new labels
    label: LabelSection = field(default_factory=LabelSection)  # where the DFT runs
    stop: StopSection = field(default_factory=StopSection)  # budgets
    output: LearnOutput = field(default_factory=LearnOutput)  # outputs

    def __post_init__(self) -> None:
        if self.train.train.committee < 2:
            size = self.train.train.committee
            raise ValueError(f"train.train.committee: the loop needs a committee of >= 2 models, got {size}")
        stop_at, threshold = self.md.max_uncertainty, self.select.threshold
        if stop_at is not None and stop_at <= threshold:
            raise ValueError(f"md.max_uncertainty: {stop_at} must exceed select.threshold = {threshold}")


def config_from_dict(data: dict[str, Any], overrides: list[str] = ()) -> LearnConfig:
    """A :class:`LearnConfig` from a plain dict and ``key=value`` overrides (:class:`ConfigError`)."""
    data = copy.deepcopy(data)
    for assignment in overrides:
        apply_override(data, assignment)
    section = data.get("train")
    seed = section.get("data") if isinstance(section, dict) else None
    if not isinstance(seed, dict) or "train" not in seed:
        raise ConfigError("train.data.train: the seed training set is required (a full `mlip train` config)")
    return from_dict(LearnConfig, data)


def load_config(path: str | Path, overrides: list[str] = ()) -> LearnConfig:
    """Read a YAML config file and apply overrides (``["select.frames=5", ...]``)."""
    return config_from_dict(read_mapping(path), overrides)


def dump_config(config: LearnConfig) -> str:
    """The resolved config as YAML text (loads back to an equal config)."""
    import yaml

    return yaml.safe_dump(to_dict(config), sort_keys=False)


FIXED_ON_RESUME = ("train.data", "train.model", "dft", "md.structures", "test")  # define the data


def resume_changes(stored: dict[str, Any], config: LearnConfig) -> list[str]:
    """Fields in :data:`FIXED_ON_RESUME` where ``config`` differs from the ``stored`` dict, as
    ``"path: old -> new"`` (budgets, MD length and selection may change on resume)."""
    from mlip.train.config import _flat

    old, new = _flat(stored), _flat(to_dict(config))
    changed = []
    for path in sorted(set(old) | set(new)):
        fixed = any(path == name or path.startswith(f"{name}.") for name in FIXED_ON_RESUME)
        if fixed and old.get(path, "unset") != new.get(path, "unset"):
            changed.append(f"{path}: {old.get(path, 'unset')!r} -> {new.get(path, 'unset')!r}")
    return changed
