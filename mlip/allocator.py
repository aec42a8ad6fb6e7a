"""Keep the heap memory a CPU process frees for its next step (issue 23).

glibc's ``malloc`` maps blocks above ``M_MMAP_THRESHOLD`` afresh and unmaps them when freed, and hands the
free top of its heap back to the OS once it exceeds ``M_TRIM_THRESHOLD``; both thresholds adapt to the
sizes freed so far. A step whose temporaries outgrow what the heap kept (a training step's double
backward, a large batch) then faults the same pages back in on every call, a cost proportional to the
memory touched (``benchmarks/notes/tp_cpu_profile.md``). :func:`keep_freed_memory` fixes the mmap
threshold high and turns trimming off, as jemalloc and tcmalloc behave by default: the process's resident
memory stays near its peak between steps instead of being returned and faulted in again.

The ``mlip`` command calls it for every verb, and every benchmark process (:mod:`mlip.benchmarking`) does,
so the peers timed in the same process run with the same allocator. A program using the Python API
calls it itself. ``MLIP_MALLOC=default`` leaves glibc's own behaviour; other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

ENV = "MLIP_MALLOC"  # "keep" (the default) or "default"
# bytes: blocks above are still mapped and unmapped per allocation; glibc builds that refuse thresholds
# above 32 MiB (HEAP_MAX_SIZE / 2 on 64-bit) get the second value
MMAP_THRESHOLDS = (1 << 30, 32 << 20)
TRIM_THRESHOLD = -1  # the free heap top is never handed back (glibc: -1 disables trimming)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


@functools.cache
def keep_freed_memory() -> bool:
    """Set glibc's ``M_MMAP_THRESHOLD`` to the first of :data:`MMAP_THRESHOLDS` it accepts and
    ``M_TRIM_THRESHOLD`` to :data:`TRIM_THRESHOLD` (no trimming) for this process (once; later calls
    return the first answer). Returns whether both were set: ``False`` with ``MLIP_MALLOC=default``, on
    another C library or platform."""
    if os.environ.get(ENV, "keep") == "default" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mapped = any(mallopt(_M_MMAP_THRESHOLD, threshold) for threshold in MMAP_THRESHOLDS)
    return mapped and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def mode() -> str:
    """``"kept"`` when :func:`keep_freed_memory` has set the thresholds in this process, else
    ``"default"`` (what a benchmark record names)."""
    return "kept" if keep_freed_memory.cache_info().currsize and keep_freed_memory() else "default"
