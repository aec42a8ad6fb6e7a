"""Writing and checking ``.pt2`` packages: one AOTInductor package of :class:`~mlip.compile.step.ForceStep`
with the metadata of the contract (v1).

Metadata (string -> string, stored in the package, readable from Python and C++): ``mlip_format`` "1",
``species`` (atomic numbers in species-index order, comma-separated), ``r_max`` (Å), ``num_layers``
(message-passing layers: a domain-decomposed caller needs ghost atoms up to ``num_layers · r_max``),
``dtype``, ``device``, ``torch_version``, ``mlip_version``, ``model_sha256`` (of the source model file),
``model`` (architecture name).
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from mlip.compile.step import export_step
from mlip.errors import UserInputError
from mlip.kernels.blocks import inplace_loop_carries
from mlip.kernels.inductor import inductor_options

if TYPE_CHECKING:
    from mlip.models.model import EquivariantModel

FORMAT = "1"
REQUIRED = (
    "mlip_format",
    "species",
    "r_max",
    "num_layers",
    "dtype",
    "device",
    "torch_version",
    "mlip_version",
    "model_sha256",
    "model",
)


class PackageError(UserInputError):
    """A ``.pt2`` file that is missing, not an mlip package, or built for another device, dtype or torch."""


def num_layers(model: EquivariantModel) -> int:
    """Message-passing layers of ``model`` (the receptive field is ``num_layers · r_max``)."""
    config = model.config
    for field in ("num_interactions", "num_layers"):
        if hasattr(config, field):
            return int(getattr(config, field))
    raise ValueError(f"model {model.name!r}: no num_interactions / num_layers in its config")


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_metadata(model: EquivariantModel, device: torch.device, model_sha256: str) -> dict[str, str]:
    import mlip

    return {
        "mlip_format": FORMAT,
        "species": ",".join(str(z) for z in model.species),
        "r_max": repr(float(model.cutoff)),
        "num_layers": str(num_layers(model)),
        "dtype": str(model.dtype).removeprefix("torch."),
        "device": device.type,
        "torch_version": torch.__version__,
        "mlip_version": getattr(mlip, "__version__", "unknown"),
        "model_sha256": model_sha256,
        "model": model.name,
    }


def compile_package(
    model: EquivariantModel,
    path: str | Path,
    device: torch.device | str = "cpu",
    model_sha256: str = "",
) -> float:
    """Export ``model`` (in its dtype) for ``device`` and write the AOTInductor package ``path``
    (overwritten if present: callers check). Returns the wall time in seconds (export + compile). The
    chunk loops update their sums and outputs in place (:func:`mlip.kernels.blocks.inplace_loop_carries`)."""
    device = torch.device(device)
    start = time.perf_counter()
    program = export_step(model, device)
    metadata = build_metadata(model, device, model_sha256)
    # Settings that work around AOTInductor bugs of torch 2.13 (benchmarks/notes/compile.md): Inductor's
    # C++ kernels on one thread (mlip.kernels.inductor), and no buffer reuse nor in-place buffers: with
    # them, the C++ wrapper declares a loop sum updated in place twice.
    configs = inductor_options(
        options={
            "aot_inductor.metadata": metadata,
            "post_grad_custom_pre_pass": inplace_loop_carries,
            "allow_buffer_reuse": False,
            "inplace_buffers": False,
        }
    )
    torch._inductor.aoti_compile_and_package(program, package_path=str(path), inductor_configs=configs)
    return time.perf_counter() - start


def read_metadata(path: str | Path) -> dict[str, str]:
    """The contract metadata of package ``path``, read from the archive without loading its code;
    :class:`PackageError` when the file is not an mlip ``.pt2`` package."""
    path = Path(path)
    if not path.is_file():
        raise PackageError(f"{path}: no such package file")
    try:
        with zipfile.ZipFile(path) as archive:
            metadata: dict[str, str] = {}
            for name in archive.namelist():
                if name.endswith("_metadata.json"):
                    metadata.update(json.loads(archive.read(name)))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise PackageError(f"{path}: not a readable .pt2 package ({exc})") from exc
    missing = [k for k in REQUIRED if k not in metadata]
    if missing:
        raise PackageError(f"{path}: not an mlip .pt2 package (metadata lacks {', '.join(missing)})")
    return {k: str(v) for k, v in metadata.items()}


def check_metadata(
    path: str | Path, metadata: dict[str, str], device: torch.device, dtype: torch.dtype | None
) -> None:
    """Raise :class:`PackageError` naming the field when package ``path`` cannot run here: another
    format version, torch version, device type (or a CUDA package without CUDA), or (when ``dtype`` is
    given) dtype."""
    wanted = {
        "mlip_format": FORMAT,
        "torch_version": torch.__version__,
        "device": device.type,
    }
    if dtype is not None:
        wanted["dtype"] = str(dtype).removeprefix("torch.")
    if metadata["device"] == "cuda" and not torch.cuda.is_available():
        raise PackageError(f"{path}: package field device='cuda', but this machine has no CUDA device")
    for field, value in wanted.items():
        if metadata[field] != value:
            raise PackageError(
                f"{path}: package field {field}={metadata[field]!r}, but {value!r} is needed here "
                f"(recompile with mlip compile)"
            )
