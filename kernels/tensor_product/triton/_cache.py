"""Kernel cache: generated sources written to files and imported once per process.

Triton compiles a ``@triton.jit`` function from its source file, so each generated kernel is written to
``$MLIP_TRITON_KERNEL_DIR/tp_{name}_{sha1[:16]}.py`` (default folder:
``{tempfile.gettempdir()}/mlip_triton_tp_{uid}``), named by the hash of its text: a file is written
once (atomically, by rename) and reused by later processes. Triton's own cache of the compiled binaries
is separate (``TRITON_CACHE_DIR``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import tempfile

from mlip.kernels.tensor_product.descriptor import TPDescriptor
from mlip.kernels.tensor_product.triton._codegen import fused_grad_source, kernel_source
from mlip.kernels.tensor_product.triton._layout import Structure
from mlip.kernels.tensor_product.triton._tuning import fused_chunks, path_chunks

KERNEL_DIR_ENV = "MLIP_TRITON_KERNEL_DIR"


@functools.cache
def compiled(desc: TPDescriptor, role: str, structure: Structure, gather: bool, tune: bool):
    """The kernel of slot ``role`` summing the forms of ``structure``. Kernels of several forms (double
    backward) are not tuned: they are the longest to compile and the first candidate spills least."""
    tune = tune and len(structure) == 1
    source = kernel_source(desc, role, structure, tuple(path_chunks(desc, role)), gather, tune)
    return _load_kernel(source, role)


@functools.cache
def compiled_fused(desc: TPDescriptor, roles: tuple[tuple[str, Structure], ...], tune: bool):
    """The fused gradient kernel; tuned only for single-form roles, as :func:`compiled`."""
    tune = tune and all(len(structure) == 1 for _, structure in roles)
    return _load_kernel(fused_grad_source(desc, dict(roles), fused_chunks(desc), tune), "xyw")


def kernel_dir() -> str:
    """Folder of the generated kernel files: ``$MLIP_TRITON_KERNEL_DIR`` or a per-user temporary one."""
    default = os.path.join(tempfile.gettempdir(), f"mlip_triton_tp_{os.getuid()}")
    return os.environ.get(KERNEL_DIR_ENV) or default


def _load_kernel(source: str, name: str):
    """Import the ``kernel`` of generated ``source`` from a file named by its hash (Triton needs a file)."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:16]
    folder = kernel_dir()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"tp_{name}_{digest}.py")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(f"mlip_tp_{name}_{digest}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.kernel
