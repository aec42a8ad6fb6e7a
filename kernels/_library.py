"""Registration of the Triton kernels as ``torch.library`` custom ops (namespace ``mlip``).

Each kernel-backed op is one function of tensors and plain values whose body launches its Triton
kernels through :func:`launch`. On a compiled Triton build it is a :func:`torch.library.triton_op`:
``torch.compile`` and ``torch.export``/AOTInductor see the op (and Inductor the kernels inside it), and
the body itself, traced on fake tensors, is its fake (meta) kernel. Under ``TRITON_INTERPRET=1`` (the
CPU tests) the interpreter cannot be traced, so the op is an opaque :func:`torch.library.custom_op`
with the same body as its fake kernel, the launches skipped on fake tensors (only the output shapes
matter there). Autograd is registered by each op's module.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch._subclasses.fake_tensor import is_fake


def interpreting() -> bool:
    """Triton kernels run in the interpreter (``TRITON_INTERPRET=1``, read when the op is defined)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def kernel_op(name: str) -> Callable[[Callable], torch.library.CustomOpDef]:
    """Decorator: the custom op ``name`` (``"mlip::..."``, no mutated arguments) running the function."""

    def register(fn: Callable) -> torch.library.CustomOpDef:
        if not interpreting():
            return torch.library.triton_op(name, fn, mutates_args=())
        op = torch.library.custom_op(name, fn, mutates_args=())
        op.register_fake(fn)
        return op

    return register


def launch(kernel, grid, *args, **kwargs) -> None:  # noqa: ANN001
    """``kernel[grid](*args, **kwargs)`` inside a :func:`kernel_op` body, visible to tracing."""
    if interpreting():
        if any(is_fake(a) for a in args if isinstance(a, torch.Tensor)):
            return
        kernel[grid](*args, **kwargs)
        return
    torch.library.wrap_triton(kernel)[grid](*args, **kwargs)
