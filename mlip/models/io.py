"""One-file checkpoints: a safetensors file whose tensors are the state dict and whose metadata holds
the format tag, package version, model name and config (JSON, with species and E0s).

Loading never unpickles: safetensors holds raw tensors only. Every failure raises
:class:`ModelFileError` saying what is wrong with which file. Files of older versions load: config fields
that left the config are ignored (:data:`~mlip.models.model.RETIRED_FIELDS`) and state-dict keys of moved
submodules are renamed (``legacy_keys`` of the model class).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from mlip.errors import UserInputError
from mlip.models.registry import model_class

if TYPE_CHECKING:
    from mlip.models.model import EquivariantModel

FORMAT = "mlip-torch-model"
FORMAT_VERSION = "1"


class ModelFileError(UserInputError):
    """The file is missing, not a model checkpoint, corrupt, or holds a different model."""


def save(model: EquivariantModel, path: str | Path) -> None:
    """Write ``model`` to ``path`` (safetensors; tensors in the model's dtype, moved to the CPU)."""
    from safetensors.torch import save_file

    import mlip

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mlip_version": getattr(mlip, "__version__", "unknown"),
        "model": model.name,
        "config": json.dumps(model.config.to_dict()),
        "dtype": str(next(iter(state.values())).dtype).removeprefix("torch."),
    }
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
    return metadata, tensors


def load(
    path: str | Path,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    expected: str | None = None,
) -> EquivariantModel:
    """Rebuild the model stored at ``path`` (any registered model; the kernel backend is ``"auto"``, see
    :func:`mlip.kernels.set_backend`); ``expected`` names the model class the caller wants."""
    metadata, tensors = read(path)
    name = metadata.get("model", "")
    if expected is not None and name != expected:
        raise ModelFileError(f"{path}: holds a {name!r} model, not {expected!r}")
    try:
        cls = model_class(name)
    except KeyError as exc:
        raise ModelFileError(f"{path}: {exc.args[0]}") from exc
    try:
        config = cls.config_class.from_dict(json.loads(metadata["config"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: invalid {name!r} config in metadata: {exc}") from exc
    model = cls(config)
    file_dtype = next((t.dtype for t in tensors.values() if t.is_floating_point()), torch.float32)
    model.to(dtype=file_dtype)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: weights do not match the {name!r} config: {exc}") from exc
    return model.to(device=device, dtype=dtype or file_dtype)
