"""Build the potential for a run (statistics -> E0, scale, shift, neighbour normalisation) and restore
trained ones from model files or training checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from mlip.train.config import ModelSection


def model_field_default(name: str, field: str) -> Any:
    """Default of config field ``field`` of registered model ``name`` (e.g. its ``r_max``)."""
    from mlip.models.registry import model_class

    for f in dataclasses.fields(model_class(name).config_class):
        if f.name == field:
            return f.default if f.default is not dataclasses.MISSING else f.default_factory()
    raise KeyError(f"model {name!r} has no config field {field!r}")


def cutoff_of(cfg: ModelSection) -> float:
    """The model's cutoff (Å): ``hyperparameters["r_max"]`` or the model's default."""
    return float(cfg.hyperparameters.get("r_max", model_field_default(cfg.name, "r_max")))


def derived_hyperparameters(cfg: ModelSection, stats: Any) -> dict[str, Any]:
    """E0s, ``avg_num_neighbors`` and (with ``scale_shift``) scale/shift from training-set statistics
    (``mlip.datasets.statistics.DatasetStatistics``); explicit hyperparameters win."""
    derived: dict[str, Any] = {"e0s": [stats.e0[z] for z in stats.elements]}
    if stats.avg_num_neighbors:
        derived["avg_num_neighbors"] = stats.avg_num_neighbors
    if cfg.scale_shift:
        if stats.forces_rms:
            derived["scale"] = stats.forces_rms
        if stats.energy_per_atom_mean is not None:
            derived["shift"] = stats.energy_per_atom_mean
    return {k: v for k, v in derived.items() if k not in cfg.hyperparameters}


def e0_option(cfg: ModelSection, isolated: dict[int, float], source: str) -> str | dict[int, float]:
    """``cfg.e0s`` in the form of ``compute_statistics``: ``"least_squares"``, ``"average"`` or ``{Z: eV}``;
    ``isolated`` holds the energies of the training file's isolated-atom frames (``source`` names it)."""
    from mlip.train.typed_config import ConfigError

    if cfg.e0s == "auto":
        return isolated or "least_squares"
    if cfg.e0s == "isolated_atoms":
        if not isolated:
            raise ConfigError(
                f"model.e0s: isolated_atoms, but {source} holds no config_type=IsolatedAtom frames"
            )
        return isolated
    if isinstance(cfg.e0s, str):
        return cfg.e0s
    from ase.data import atomic_numbers

    unknown = [symbol for symbol in cfg.e0s if symbol not in atomic_numbers]
    if unknown:
        raise ConfigError(f"model.e0s.{unknown[0]}: unknown element symbol {unknown[0]!r}")
    return {atomic_numbers[symbol]: value for symbol, value in cfg.e0s.items()}


def build_model(cfg: ModelSection, stats: Any, dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
    """A fresh model for the elements of ``stats`` (or the weights of ``cfg.init``)."""
    from mlip import models

    if cfg.init:
        model = models.load(cfg.init, device=device, dtype=dtype)
        if cfg.init_e0s == "refit":
            refit_e0s(model, stats)
        return model
    hyper = {**cfg.hyperparameters, **derived_hyperparameters(cfg, stats)}
    return models.create(cfg.name, species=stats.elements, dtype=dtype, device=device, seed=cfg.seed, **hyper)


def refit_e0s(model: Any, stats: Any) -> None:
    """Set the E0s of ``model`` to those of ``stats`` (eV) for the elements of the training data; the
    model's other species keep theirs. Config and buffer are updated together (both are saved)."""
    e0 = list(model.config.e0s or [0.0] * len(model.config.species))
    for i, z in enumerate(model.config.species):
        if z in stats.e0:
            e0[i] = float(stats.e0[z])
    model.config.e0s = e0
    buffer = model.atomic_energies_e0.e0
    buffer.copy_(torch.tensor(e0, dtype=buffer.dtype, device=buffer.device))


def model_from_state(name: str, config: dict[str, Any]) -> torch.nn.Module:
    """An untrained model of registered class ``name`` with config dict ``config``."""
    from mlip.models.registry import model_class

    cls = model_class(name)
    return cls(cls.config_class.from_dict(config))


def load_trained(path: str | Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """A trained model from a model file (``model.save``) or a training checkpoint (EMA weights if any)."""
    from mlip import models
    from mlip.models.io import ModelFileError
    from mlip.train.checkpoint import load_checkpoint

    try:
        return models.load(path, device=device)
    except ModelFileError as error:
        try:
            state = load_checkpoint(path)
        except Exception:  # neither format: report the model-file error, which says what was expected
            raise error from None
        if not isinstance(state, dict) or "model_name" not in state:
            raise ModelFileError(f"{path}: neither a model file nor an mlip training checkpoint") from None
    try:
        model = model_from_state(state["model_name"], state["model_config"])
        model.to(dtype=next(v.dtype for v in state["model"].values() if v.is_floating_point()))
        model.load_state_dict(state["model"])
        if state.get("ema") is not None:
            with torch.no_grad():
                for p, s in zip(model.parameters(), state["ema"]["shadow"], strict=True):
                    p.copy_(s)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise ModelFileError(
            f"{path}: checkpoint weights do not fit its model ({type(exc).__name__}: {exc})"
        ) from exc
    return model.to(device)
