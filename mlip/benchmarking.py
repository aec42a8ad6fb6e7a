"""Shared benchmark plumbing and the ``mlip bench`` verb.

Every script in ``benchmarks/`` times with :func:`measure` (warm-up, CUDA synchronisation, median of
repeats), prints with :func:`print_table` and writes :func:`write_json` (rows plus :func:`environment`:
device, versions, date, command), so ``benchmarks/report.py`` can regenerate ``benchmarks/RESULTS.md``.
Importing it keeps freed heap memory in the process (:func:`mlip.allocator.keep_freed_memory`, as the
``mlip`` command does), so every benchmark, and every peer timed in it, runs with that allocator; the
record names it (``malloc``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mlip import allocator

allocator.keep_freed_memory()

SUITES = {
    "tp": "tp.py",
    "kernel_resources": "kernel_resources.py",
    "gaunt": "gaunt.py",
    "model": "model.py",
    "md": "md.py",
    "data": "data.py",
    "train": "train_rmd17.py",
    "neighbors": "neighbors.py",
    "custom_op_cpu": "custom_op_cpu.py",
    "active_learning": "active_learning.py",
}


def measure(
    fn: Callable[[], Any],
    repeats: int = 10,
    warmup: int = 3,
    min_time: float = 0.0,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Median time of ``fn()`` in seconds, after ``warmup`` calls, synchronising CUDA around each.

    Runs at least ``repeats`` timed calls, and more until ``min_time`` seconds (wall) have passed in total.
    ``clock`` is wall time by default; ``time.process_time`` gives CPU seconds of the process (on a
    machine shared with other jobs, the time spent waiting for a core is left out; with several threads
    it is their sum, the work, not the latency).
    """
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times: list[float] = []
    start_all = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start_all < min_time:
        start = clock()
        fn()
        sync()
        times.append(clock() - start)
    return statistics.median(times)


def peak_memory(fn: Callable[[], Any], device: str) -> int | None:
    """Peak bytes allocated while running ``fn()`` on a CUDA device (``None`` on CPU: use RSS tools)."""
    import torch

    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return int(torch.cuda.max_memory_allocated())


# ATen ops that neither compute nor launch a kernel: views and allocations
_NON_KERNEL_OPS = frozenset(
    "view _unsafe_view _reshape_alias alias as_strided permute transpose t expand squeeze unsqueeze select "
    "slice split split_with_sizes unbind detach lift_fresh empty empty_strided new_empty set_".split()
)


def count_aten_ops(fn: Callable[[], Any]) -> int:
    """Number of computing ATen ops ``fn()`` dispatches (views and allocations excluded), backward passes
    included: on a GPU each is about one kernel launch, so this measures host overhead on any machine.
    Kernels launched outside ATen (our Triton kernels) are not counted."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            self.count += func.overloadpacket.__name__ not in _NON_KERNEL_OPS
            return func(*args, **(kwargs or {}))

    with Counter() as counter:
        fn()
    return counter.count


def environment(device: str = "cpu") -> dict[str, Any]:
    """Device, thread count, library versions, date and command line, for the JSON record."""
    import torch

    from mlip.kernels.tensor_product.formulation import cpu_model

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("triton", "e3nn", "mace", "cuequivariance_torch", "ase", "numpy"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "unknown")
        except Exception:  # a peer that fails to import is simply absent
            continue
    if device.startswith("cuda") and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name()
    else:
        device_name = f"{cpu_model()} ({os.cpu_count()} cores)"
    return {
        "device": device,
        "device_name": device_name,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cpu_isa": cpu_isa(),
        "malloc": allocator.mode(),
        "versions": versions,
        "date": datetime.date.today().isoformat(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


# vector-ISA flags worth naming in a record (x86 /proc/cpuinfo "flags", Arm "Features")
_ISA_PREFIXES = ("sse4", "avx", "fma", "amx", "f16c", "asimd", "sve", "sme2", "neon", "bf16", "i8mm")


def cpu_isa(cpuinfo: str | None = None) -> str:
    """The CPU's vector-ISA flags (AVX2, AVX-512 subsets, AMX, FMA; Arm SVE/NEON), space-separated and
    sorted, from ``/proc/cpuinfo`` (or the given text); ``"unknown"`` where it cannot be read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return "unknown"
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return " ".join(sorted(f for f in value.split() if f.startswith(_ISA_PREFIXES) or f == "sme"))
    return "unknown"


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Print rows (dicts) as an aligned text table and return it; floats get 4 significant digits."""
    if not rows:
        print("(no rows)")
        return "(no rows)"
    columns = list(columns or rows[0].keys())

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "-" if value is None else str(value)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def write_json(
    path: str | Path, suite: str, rows: Sequence[dict[str, Any]], device: str = "cpu", **extra
) -> Path:
    """Write ``{"suite", "environment", "rows", **extra}`` to ``path`` (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"suite": suite, "environment": environment(device), "rows": list(rows), **extra}
    path.write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote {path}")
    return path


def _benchmarks_dir() -> Path:
    folder = Path(__file__).resolve().parent.parent / "benchmarks"
    if not folder.is_dir():
        raise FileNotFoundError(
            "mlip bench runs the scripts in the repository's benchmarks/ folder, which an installed wheel "
            "does not ship: run it from a source checkout (pip install -e .)"
        )
    return folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", choices=sorted(SUITES), help="which benchmark to run")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="passed to the script (e.g. --quick)")


def main(args: argparse.Namespace) -> int:
    script = _benchmarks_dir() / SUITES[args.suite]
    if not script.exists():
        print(f"mlip bench: {script} is not there yet", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, str(script), *args.options])
