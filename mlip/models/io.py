"""One-file checkpoints: a safetensors file whose tensors are the state dict and whose metadata holds
the format tag, package version, model name and config (JSON, with species and E0s), and ``sha256``, a
digest of the tensor data (:func:`tensor_digest`) verified on load, so a flipped byte is an error, not a
different energy. Files written before the digest existed still load; every file's weights must be finite.

Loading never unpickles: safetensors holds raw tensors only. Every failure raises
:class:`ModelFileError` saying what is wrong with which file. Files of older versions load: config fields
that left the config are ignored (:data:`~mlip.models.model.RETIRED_FIELDS`) and state-dict keys of moved
submodules are renamed (``legacy_keys`` of the model class).

A committee file (:func:`save_committee`) is the same format with model name ``committee``: the tensors of
member ``i`` under ``member{i}.``, a ``members`` metadata field listing each member's model name and
config, and one digest over all tensors; :func:`load` returns a :class:`~mlip.models.committee.Committee`.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from mlip.errors import UserInputError
from mlip.models.committee import Committee
from mlip.models.registry import model_class

if TYPE_CHECKING:
    from mlip.compile.model import CompiledModel
    from mlip.models.model import EquivariantModel

FORMAT = "mlip-torch-model"
FORMAT_VERSION = "1"


class ModelFileError(UserInputError):
    """The file is missing, not a model checkpoint, corrupt, or holds a different model."""


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 hex digest of name, dtype, shape and raw bytes of every tensor, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _verify(path: Path, metadata: dict[str, str], tensors: dict[str, torch.Tensor]) -> None:
    """:class:`ModelFileError` when the stored digest (if any) differs or a weight is NaN/inf."""
    stored = metadata.get("sha256")
    if stored is not None and stored != tensor_digest(tensors):
        raise ModelFileError(f"{path}: corrupt model file, the tensor data does not match its sha256 digest")
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ModelFileError(f"{path}: weight '{name}' holds NaN or inf values")


def _metadata(name: str, state: dict[str, torch.Tensor]) -> dict[str, str]:
    import mlip

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mlip_version": getattr(mlip, "__version__", "unknown"),
        "model": name,
        "dtype": str(next(iter(state.values())).dtype).removeprefix("torch."),
        "sha256": tensor_digest(state),
    }


def save(model: EquivariantModel | Committee, path: str | Path) -> None:
    """Write ``model`` to ``path`` (safetensors; tensors in the model's dtype, moved to the CPU); a
    :class:`~mlip.models.committee.Committee` as :func:`save_committee` says."""
    from safetensors.torch import save_file

    if isinstance(model, Committee):
        save_committee(model, path)
        return

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {**_metadata(model.name, state), "config": json.dumps(model.config.to_dict())}
    save_file(state, str(path), metadata=metadata)


def save_committee(committee: Committee, path: str | Path) -> None:
    """Write a committee to one file: member ``i``'s tensors under ``member{i}.``, the members' model names
    and configs as a JSON list in the ``members`` metadata field; one digest over all tensors."""
    from safetensors.torch import save_file

    state: dict[str, torch.Tensor] = {}
    members = []
    for i, member in enumerate(committee.members):
        members.append({"model": member.name, "config": member.config.to_dict()})
        for k, v in member.state_dict().items():
            state[f"member{i}.{k}"] = v.detach().to("cpu").contiguous()
    metadata = {**_metadata(committee.name, state), "members": json.dumps(members)}
    save_file(state, str(path), metadata=metadata)


def read(path: str | Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Metadata and tensors of a checkpoint, validated; :class:`ModelFileError` otherwise."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: not a readable mlip model file (safetensors: {exc})") from exc
    if metadata.get("format") != FORMAT:
        raise ModelFileError(
            f"{path}: safetensors file without mlip model metadata (format={metadata.get('format')!r})"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format {metadata.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    _verify(path, metadata, tensors)
    return metadata, tensors


def load(
    path: str | Path,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    expected: str | None = None,
) -> EquivariantModel | CompiledModel | Committee:
    """Rebuild the model stored at ``path`` (any registered model, or a committee of them; the kernel
    backend is ``"auto"``, see :func:`mlip.kernels.set_backend`); ``expected`` names the model class the
    caller wants. A ``.pt2`` package written by ``mlip compile`` loads as a
    :class:`~mlip.compile.CompiledModel` (``dtype``, when given, must be the package's)."""
    if zipfile.is_zipfile(path):
        from mlip.compile.model import CompiledModel

        package = CompiledModel(path, device=device, dtype=dtype)
        if expected is not None and package.name != expected:
            raise ModelFileError(f"{path}: holds a compiled {package.name!r} model, not {expected!r}")
        return package
    metadata, tensors = read(path)
    name = metadata.get("model", "")
    if expected is not None and name != expected:
        raise ModelFileError(f"{path}: holds a {name!r} model, not {expected!r}")
    file_dtype = next((t.dtype for t in tensors.values() if t.is_floating_point()), torch.float32)
    if name == "committee":
        model = _committee(path, metadata, tensors, file_dtype)
    else:
        model = _build(path, name, metadata.get("config"), tensors, file_dtype)
    return model.to(device=device, dtype=dtype or file_dtype)


def _build(
    path: Path, name: str, config: str | dict | None, tensors: dict[str, torch.Tensor], dtype: torch.dtype
) -> EquivariantModel:
    """Model ``name`` with ``config`` (JSON text or dict) and weights ``tensors``; ModelFileError."""
    try:
        cls = model_class(name)
    except KeyError as exc:
        raise ModelFileError(f"{path}: {exc.args[0]}") from exc
    try:
        fields = json.loads(config) if isinstance(config, str) else config
        config = cls.config_class.from_dict(fields)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: invalid {name!r} config in metadata: {exc}") from exc
    model = cls(config)
    model.to(dtype=dtype)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: weights do not match the {name!r} config: {exc}") from exc
    return model


def _committee(
    path: Path, metadata: dict[str, str], tensors: dict[str, torch.Tensor], dtype: torch.dtype
) -> Committee:
    """The :class:`~mlip.models.committee.Committee` of a file written by :func:`save_committee`."""
    try:
        members = json.loads(metadata["members"])
        specs = [(str(m["model"]), m["config"]) for m in members]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: invalid committee member list in metadata: {exc}") from exc
    prefixes = [f"member{i}." for i in range(len(specs))]
    stray = [k for k in tensors if not k.startswith(tuple(prefixes))]
    if stray:
        raise ModelFileError(f"{path}: tensor {stray[0]!r} belongs to no committee member")
    built = []
    for prefix, (name, config) in zip(prefixes, specs, strict=True):
        own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        built.append(_build(path, name, config, own, dtype))
    try:
        return Committee(built)
    except ValueError as exc:
        raise ModelFileError(f"{path}: {exc}") from exc
