"""Where the labelling calculations run: one small protocol, local processes by default, Dask on request.

An :class:`Executor` maps a picklable function over tasks and yields the results as they finish (in
any order), so the caller appends each labelled frame the moment it exists. :class:`LocalExecutor` runs
the tasks inline (one worker) or in a spawn pool of single-purpose processes; :class:`DaskExecutor`
submits them to an existing Dask distributed cluster (``tcp://host:8786``; the ``cluster`` extra), so
labelling scales past one machine on the cluster's own scheduler. The workers' thread counts are then
the cluster's (``dask worker --nthreads``), not ours.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from mlip.errors import UserInputError

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class Executor(Protocol):
    """Runs ``function`` on every task; yields each result once, as soon as it is ready."""

    def map_unordered(self, function: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]: ...

    def close(self) -> None: ...


def _limit_threads(threads: int) -> None:
    """Pool initialiser (and the inline path): at most ``threads`` OpenMP/BLAS threads in PySCF."""
    from mlip.dft.pyscf_labeler import set_worker_threads

    set_worker_threads(threads)


class LocalExecutor:
    """``workers`` processes on this machine (spawned, each limited to ``threads`` OpenMP/BLAS threads);
    ``workers <= 1`` runs the tasks inline, in order."""

    def __init__(self, workers: int = 1, threads: int | None = None) -> None:
        if workers < 1:
            raise UserInputError(f"workers = {workers}: must be >= 1")
        self.workers = workers
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)

    def map_unordered(self, function: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        if self.workers == 1:
            _limit_threads(self.threads)
            yield from map(function, tasks)
            return
        import multiprocessing

        for variable in _THREAD_VARIABLES:
            os.environ[variable] = str(self.threads)  # inherited by the workers before numpy loads
        context = multiprocessing.get_context("spawn")
        with context.Pool(self.workers, _limit_threads, (self.threads,)) as pool:
            yield from pool.imap_unordered(function, tasks)

    def close(self) -> None:
        """Nothing held between calls (each :meth:`map_unordered` owns its pool)."""


class DaskExecutor:
    """Tasks submitted to the Dask distributed scheduler at ``address`` (``tcp://host:port``), or to a
    ``distributed.Client`` given as ``client`` (tests: a ``LocalCluster``'s); ``timeout`` (s) to connect.
    Needs the ``cluster`` extra."""

    def __init__(self, address: str | None = None, client: Any = None, timeout: float = 20.0) -> None:
        if client is None:
            try:
                from distributed import Client
            except ImportError as error:
                raise UserInputError(
                    "--scheduler needs Dask distributed: pip install 'mlip-torch[cluster]'"
                ) from error
            try:
                client = Client(address, timeout=f"{timeout}s")
            except OSError as error:
                raise UserInputError(f"scheduler {address}: cannot connect ({error})") from error
            self._owned = True
        else:
            self._owned = False
        self.client = client

    def map_unordered(self, function: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        from distributed import as_completed

        futures = self.client.map(function, list(tasks), pure=False)
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            self.client.cancel(futures)  # a caller that stops early (time limit) leaves nothing running

    def close(self) -> None:
        if self._owned:
            self.client.close()


def make_executor(workers: int = 1, threads: int | None = None, scheduler: str | None = None) -> Executor:
    """:class:`DaskExecutor` at ``scheduler`` when given, else :class:`LocalExecutor`."""
    if scheduler:
        return DaskExecutor(scheduler)
    return LocalExecutor(workers, threads)
