"""Typed configuration trees: nested dataclasses filled from plain dicts (YAML) with strict checking.

Every error names the dotted field path (``optim.lr: expected float, got 'fast'``); unknown keys are
errors. ``--set a.b=value`` overrides are applied to the plain dict before conversion, with values
parsed as YAML scalars.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from mlip.errors import UserInputError

T = TypeVar("T")


class ConfigError(UserInputError):
    """An invalid configuration; the message starts with the dotted path of the offending field."""


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _convert(value: Any, hint: Any, path: str) -> Any:
    """``value`` checked and converted to the type ``hint``; :class:`ConfigError` naming ``path``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, path)
            except ConfigError as error:
                errors.append(str(error))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        raise ConfigError(f"{path}: {_describe(value)} fits none of {hint}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{path}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping of {hint.__name__} fields, got {_describe(value)}")
        return from_dict(hint, value, path)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {_describe(value)}")
        return [_convert(v, args[0] if args else Any, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {_describe(value)}")
        key_type, value_type = args if args else (Any, Any)
        return {
            _convert(k, key_type, f"{path}.{k}"): _convert(v, value_type, f"{path}.{k}")
            for k, v in value.items()
        }
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected float, got {_describe(value)}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected int, got {_describe(value)}")
        return value
    if hint in (bool, str):
        if not isinstance(value, hint):
            raise ConfigError(f"{path}: expected {hint.__name__}, got {_describe(value)}")
        return value
    raise ConfigError(f"{path}: unsupported field type {hint}")


def from_dict(cls: type[T], data: dict[str, Any], path: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; missing fields take their defaults, unknown ones are errors."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    prefix = f"{path}." if path else ""
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown field (known in '{path or 'top level'}': {names})")
    values = {k: _convert(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:  # __post_init__ checks start their message with the field name
        raise ConfigError(f"{prefix}{error}") from error


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a dataclass tree (for YAML)."""
    return dataclasses.asdict(config)


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``"a.b.c=value"`` to nested ``data`` in place; ``value`` is parsed as a YAML scalar/list."""
    import yaml

    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r}: expected KEY=VALUE (e.g. optim.lr=1e-3)")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(parts[: i + 1])}: not a section, cannot set {key}")
        node = child
    node[parts[-1]] = yaml.safe_load(raw)


def read_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML config file (an empty file is ``{}``); :class:`ConfigError`
    naming the file for invalid YAML or another top-level type."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
    return data


def add_run_arguments(
    parser: argparse.ArgumentParser,
    sections: str,
    override_example: str,
    resume_help: str,
    overwrite_help: str,
) -> None:
    """The arguments of a verb that runs from a YAML config into an output folder: ``config`` (its
    ``sections`` named in the help), ``--set KEY=VALUE`` (repeatable, into ``overrides``), ``--resume``,
    ``--overwrite`` and ``--print-config``."""
    parser.add_argument("config", help=f"YAML config (sections: {sections})")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config field, e.g. --set {override_example} (repeatable)",
    )
    parser.add_argument("--resume", action="store_true", help=resume_help)
    parser.add_argument("--overwrite", action="store_true", help=overwrite_help)
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
