"""The ``mlip train`` configuration: a typed dataclass tree loaded from YAML.

Every field has a default and a comment (units in brackets). Load with :func:`load_config`, which applies
``--set section.field=value`` overrides and reports any unknown or mistyped field by its dotted path.
:func:`dump_config` writes the resolved tree (saved beside every checkpoint). A minimal config::

    data:
      train: ethanol.extxyz   # or rMD17 with options: {molecule: ethanol, split: 1, part: train}
      valid_fraction: 0.05
    model:
      name: mace
      hyperparameters: {hidden_irreps: "64x0e+64x1o", max_ell: 3, correlation: 3, r_max: 5.0}
    loss: {energy_weight: 10, forces_weight: 1000, kind: mse}
    train: {max_steps: 20000, batch_size: 5, valid_every: 500}
    output: {dir: runs/ethanol}

Run it with ``mlip train config.yaml --set optim.lr=5e-3`` or, on several processes,
``torchrun --nproc_per_node=4 --no-python mlip train config.yaml``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mlip.train.typed_config import ConfigError, apply_override, from_dict, read_mapping, to_dict


def _check(obj: object, names: tuple[str, ...], test, expected: str) -> None:
    """``ValueError`` naming the first field of ``names`` whose value (not ``None``) fails ``test``."""
    for name in names:
        value = getattr(obj, name)
        if value is not None and not (math.isfinite(value) and test(value)):
            raise ValueError(f"{name}: must be {expected}, got {value}")


def _check_weights(obj: object) -> None:
    _check(obj, ("energy_weight", "forces_weight", "stress_weight"), lambda w: w >= 0, "finite and >= 0")


@dataclass
class DataConfig:
    """Where the structures come from and how they are split."""

    train: str = ""  # training data: any path mlip.datasets.load reads (extxyz, rMD17 npz, HDF5 cache, ...)
    format: str | None = None  # loader name (None: detected from the path)
    options: dict[str, Any] = field(default_factory=dict)  # loader options for `train` (e.g. rMD17 split)
    valid: str | None = None  # validation data; None: `valid_fraction` of `train`
    valid_options: dict[str, Any] = field(default_factory=dict)  # loader options for `valid`
    test: str | None = None  # test data (evaluated at the end); None: `test_fraction` of `train`
    test_options: dict[str, Any] = field(default_factory=dict)  # loader options for `test`
    valid_fraction: float = 0.1  # share of `train` held out for validation when `valid` is None
    test_fraction: float = 0.0  # share of `train` held out for testing when `test` is None
    max_train: int | None = None  # keep at most this many training structures (seeded subset)
    split_seed: int = 0  # seed of the train/valid/test split and of the `max_train` subset

    def __post_init__(self) -> None:
        if not self.train:
            raise ValueError("train: a training data path is required")
        for name in ("valid_fraction", "test_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}: must be in [0, 1), got {getattr(self, name)}")


E0_CHOICES = ("auto", "isolated_atoms", "least_squares", "average")


@dataclass
class ModelSection:
    """Which potential to train (see mlip.models.create)."""

    name: str = "mace"  # registered model name (mlip.models.available())
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # model config, e.g. r_max
    # E0 per element [eV]: {symbol: eV}, "isolated_atoms" (the training file's config_type=IsolatedAtom
    # frames, left out of training), "least_squares" fit (the average when compositions cannot determine
    # it), "average" energy per atom, or "auto" (isolated atoms when the file has them, else least squares)
    e0s: str | dict[str, float] = "auto"
    scale_shift: bool = True  # scale = force RMS [eV/Å], shift = mean per-atom energy after E0 [eV]
    init: str | None = None  # start from the weights of this model file (fine-tuning)
    init_e0s: Literal["keep", "refit"] = "keep"  # with init: keep its E0s or refit them as `e0s` says
    seed: int = 0  # weight initialisation seed

    def __post_init__(self) -> None:
        if isinstance(self.e0s, str) and self.e0s not in E0_CHOICES:
            raise ValueError(
                f"e0s: expected one of {list(E0_CHOICES)} or a mapping symbol -> eV, got {self.e0s!r}"
            )


@dataclass
class LossStage:
    """Loss weights from `start_step` on (e.g. raise the energy weight late in training)."""

    start_step: int = 0  # first optimizer step of this stage
    energy_weight: float = 1.0  # weight of the per-atom energy term [1/(eV/atom)^2 for MSE]
    forces_weight: float = 100.0  # weight of the force term [1/(eV/Å)^2 for MSE]
    stress_weight: float = 0.0  # weight of the stress term [1/(eV/Å^3)^2 for MSE]

    def __post_init__(self) -> None:
        if self.start_step < 0:
            raise ValueError(f"start_step: must be >= 0, got {self.start_step}")
        _check_weights(self)


@dataclass
class LossConfig:
    """Loss = w_E·L(E/N) + w_F·L(F) + w_S·L(σ), with L the mean Huber or squared error."""

    kind: Literal["huber", "mse"] = "huber"  # per-component error function
    huber_delta: float = 0.01  # Huber transition point [eV/atom, eV/Å, eV/Å^3]
    energy_weight: float = 1.0  # weight of the per-atom energy term
    forces_weight: float = 100.0  # weight of the force term
    stress_weight: float = 0.0  # weight of the stress term (needs stress labels and periodic cells)
    stages: list[LossStage] = field(default_factory=list)  # later weight stages, ordered by start_step

    def __post_init__(self) -> None:
        _check_weights(self)
        _check(self, ("huber_delta",), lambda d: d > 0, "> 0")
        starts = [s.start_step for s in self.stages]
        if starts != sorted(starts):
            raise ValueError(f"stages: start_step values must increase, got {starts}")


@dataclass
class OptimConfig:
    """AdamW with gradient clipping and an exponential moving average (EMA) of the weights."""

    lr: float = 0.01  # peak learning rate
    weight_decay: float = 5e-7  # AdamW decoupled weight decay
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # Adam moment decay rates
    eps: float = 1e-8  # Adam epsilon
    amsgrad: bool = True  # use the AMSGrad variant
    clip_grad_norm: float | None = 10.0  # clip the global gradient norm (None: no clipping)
    ema_decay: float | None = 0.99  # EMA decay per step (None: no EMA); validation uses the EMA weights

    def __post_init__(self) -> None:
        _check(self, ("lr", "eps", "clip_grad_norm"), lambda v: v > 0, "> 0")
        _check(self, ("weight_decay",), lambda v: v >= 0, ">= 0")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas: expected two values in [0, 1), got {self.betas}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay: must be in (0, 1), got {self.ema_decay}")


@dataclass
class ScheduleConfig:
    """Learning-rate schedule: linear warm-up, then constant, cosine decay, or reduce-on-plateau."""

    kind: Literal["constant", "cosine", "plateau"] = "plateau"  # schedule after warm-up
    warmup_steps: int = 0  # linear warm-up from lr/warmup_steps to lr
    min_lr: float = 1e-6  # floor of the cosine and plateau schedules
    plateau_factor: float = 0.8  # multiply the lr by this when validation stalls
    plateau_patience: int = 5  # validations without improvement before reducing the lr

    def __post_init__(self) -> None:
        _check(self, ("warmup_steps", "min_lr"), lambda v: v >= 0, ">= 0")
        _check(self, ("plateau_factor",), lambda v: 0 < v < 1, "in (0, 1)")
        _check(self, ("plateau_patience",), lambda v: v >= 1, ">= 1")


@dataclass
class RunConfig:
    """Length, batching, precision, validation and stopping."""

    max_steps: int = 1000  # optimizer steps in total (the cosine schedule spans them or time_limit)
    batch_size: int = 8  # global batch (structures per step, summed over processes)
    valid_batch_size: int = 32  # structures per evaluation batch
    valid_every: int = 100  # validate (and checkpoint) every this many steps
    checkpoint_every: int | None = None  # also checkpoint every this many steps (None: at validations)
    early_stopping_patience: int | None = None  # stop after this many validations without improvement
    best_metric: Literal["loss", "energy_mae", "forces_mae"] = "loss"  # picks the best checkpoint
    time_limit: float | None = None  # stop (validate, checkpoint) after this many seconds of training [s]
    dtype: Literal["float32", "float64"] = "float32"  # model precision
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    backend: Literal["auto", "torch", "triton"] = "auto"  # kernels (mlip.kernels.set_backend)
    seed: int = 0  # seed of the data order and of torch's global RNG
    # train this many models, member i with model.seed + i and train.seed + i in output.dir/member<i>,
    # saved together as output.dir/committee.model (mlip.models.Committee: mean and std of the members)
    committee: int = 1
    bootstrap: bool = False  # train on a resample (with replacement, seeded by train.seed) of the train set

    def __post_init__(self) -> None:
        names = (
            "max_steps",
            "batch_size",
            "valid_batch_size",
            "valid_every",
            "checkpoint_every",
            "committee",
        )
        _check(self, (*names, "early_stopping_patience"), lambda v: v >= 1, ">= 1")
        _check(self, ("time_limit",), lambda v: v > 0, "> 0")


@dataclass
class OutputConfig:
    """Where and what to write."""

    dir: str = "runs/train"  # run folder: checkpoints, config.yaml, log.csv, plots, models
    progress: bool = True  # tqdm progress bar with live energy/force MAE
    tensorboard: bool = True  # TensorBoard event files (when torch.utils.tensorboard imports)
    plots: bool = True  # learning-curve and parity PNGs at the end


@dataclass
class TrainConfig:
    """Everything `mlip train` needs."""

    data: DataConfig  # structures and split (data.train is required)
    model: ModelSection = field(default_factory=ModelSection)  # the potential
    loss: LossConfig = field(default_factory=LossConfig)  # loss terms and weights
    optim: OptimConfig = field(default_factory=OptimConfig)  # optimizer, clipping, EMA
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)  # learning-rate schedule
    train: RunConfig = field(default_factory=RunConfig)  # run length, batches, precision
    output: OutputConfig = field(default_factory=OutputConfig)  # outputs


def config_from_dict(data: dict[str, Any], overrides: list[str] = ()) -> TrainConfig:
    """A :class:`TrainConfig` from a plain dict and ``key=value`` overrides (:class:`ConfigError`)."""
    import copy

    data = copy.deepcopy(data)
    for assignment in overrides:
        apply_override(data, assignment)
    if "data" not in data or not isinstance(data["data"], dict) or "train" not in data["data"]:
        raise ConfigError("data.train: a training data path is required")
    return from_dict(TrainConfig, data)


def load_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML config file and apply overrides (``["optim.lr=1e-3", ...]``)."""
    return config_from_dict(read_mapping(path), overrides)


FIXED_ON_RESUME = ("data", "model", "train.dtype")  # sections/fields that define the model or the data
NOT_COMPARED = ("output",)  # where and what to write: free to change on resume, without a warning


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists and other values are leaves)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resume_changes(stored: dict[str, Any], config: TrainConfig) -> tuple[list[str], list[str]]:
    """Fields where ``config`` differs from the ``stored`` config dict of a checkpoint, as
    ``"path: old -> new"``: ``(those that must match (FIXED_ON_RESUME), those that may change)``."""

    def within(path: str, names: tuple[str, ...]) -> bool:
        return any(path == name or path.startswith(f"{name}.") for name in names)

    old, new = _flat(stored), _flat(to_dict(config))
    fixed, free = [], []
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path, "unset"), new.get(path, "unset")
        if before == after or within(path, NOT_COMPARED):
            continue
        (fixed if within(path, FIXED_ON_RESUME) else free).append(f"{path}: {before!r} -> {after!r}")
    return fixed, free


def dump_config(config: TrainConfig) -> str:
    """The resolved config as YAML text (loads back to an equal config)."""
    import yaml

    return yaml.safe_dump(to_dict(config), sort_keys=False)
