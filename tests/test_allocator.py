"""``mlip.allocator``: a freed block is reused without faulting its pages again once the thresholds are
kept, and faulted in afresh under glibc's own thresholds (so the check can fail); ``MLIP_MALLOC=default``
leaves them."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from mlip import allocator

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")

# in a fresh interpreter: malloc, touch and free a 24 MiB block twice; print the second cycle's page faults
CHILD = """
import ctypes, resource, sys
from mlip import allocator
if sys.argv[1] == "keep":
    assert allocator.keep_freed_memory() and allocator.mode() == "kept"
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 24 << 20
def cycle():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
cycle()
print(cycle())
"""


def _second_cycle_faults(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != allocator.ENV}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], env=env, capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1])


@glibc
def test_kept_memory_is_reused_without_faults() -> None:
    pages = (24 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert _second_cycle_faults("keep") < pages // 10
    assert _second_cycle_faults("default") > pages // 2  # glibc's adaptive thresholds: faulted in again


def test_default_leaves_the_allocator(monkeypatch) -> None:
    monkeypatch.setenv(allocator.ENV, "default")
    assert allocator.keep_freed_memory.__wrapped__() is False
