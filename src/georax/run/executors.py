"""Where rows run: in this process, in a spawn-only process pool, or on Dask distributed.

An executor takes a :class:`~georax.run.rows.RowRunner` (shipped once per worker) and a list of
tasks (lists of :class:`~georax.run.rows.RowTask`) and yields each task's
:class:`~georax.run.rows.BatchResult` as it finishes, in any order. Closing the iterator early
(the driver raising, or aborting on the failure rate) cancels the work still queued.

- :class:`LocalExecutor`: the driver runs every row itself (no pickling; failures keep their
  original exception).
- :class:`ProcessExecutor`: :class:`concurrent.futures.ProcessPoolExecutor` with the ``spawn``
  start method only (JAX's thread pools do not survive ``fork``). When a worker dies (killed,
  out of memory) the pool breaks; the executor starts a new pool and re-runs the rows that had
  not finished, up to ``max_restarts`` times.
- :class:`DaskExecutor`: ``distributed.Client`` on any scheduler address, or a
  ``LocalCluster`` of ``workers`` processes on 127.0.0.1 that it starts and stops itself. Dask
  reschedules the task of a worker that died (up to ``distributed.scheduler.allowed-failures``)
  and retries tasks that raised ``retries`` times. Moving from a laptop to a cluster is a
  change of ``address=``, not of code.
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
import logging
import multiprocessing
import pickle
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from georax.run.errors import ExecutorError
from georax.run.rows import BatchResult, RowRunner, RowTask

__all__ = ["DaskExecutor", "Executor", "LocalExecutor", "ProcessExecutor", "make_executor"]

Batches = Sequence[list[RowTask]]


class Executor(abc.ABC):
    """Base class of the executors (see the module docstring)."""

    #: Short name shown in progress bars and reports.
    name: str = "abstract"

    @abc.abstractmethod
    def map(self, runner: RowRunner, batches: Batches) -> Iterator[BatchResult]:
        """Run every batch; yield each batch's result as it finishes."""

    def check_picklable(self, runner: RowRunner) -> None:
        """Refuse, with a message naming the part, a runner that cannot reach workers."""
        for part, value in (
            ("pipeline", runner.pipeline),
            ("loader", runner.loader),
            ("writer", runner.writer),
        ):
            try:
                pickle.dumps(value)
            except Exception as e:
                raise ExecutorError(
                    f"the {part} ({type(value).__name__}) cannot be pickled, so it cannot run on "
                    f"the {self.name} executor: {type(e).__name__}: {e}. Define loaders and "
                    "writers at module level and keep closures (Lambda, Tap) out of pipelines."
                ) from None


class LocalExecutor(Executor):
    """Run every row in this process, one task after another."""

    name = "local"

    def check_picklable(self, runner: RowRunner) -> None:
        return None

    def map(self, runner: RowRunner, batches: Batches) -> Iterator[BatchResult]:
        for batch in batches:
            yield runner.run(batch, keep_exceptions=True)


# ----------------------------------------------------------------------------- process pool
_WORKER_RUNNER: RowRunner | None = None


def _init_worker(runner: RowRunner) -> None:
    global _WORKER_RUNNER
    _WORKER_RUNNER = runner


def _run_in_worker(batch: list[RowTask]) -> BatchResult:
    if _WORKER_RUNNER is None:  # pragma: no cover - the initializer always ran
        raise ExecutorError("process worker started without its runner")
    return _WORKER_RUNNER.run(batch)


def _positive(value: Any, name: str, who: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ExecutorError(f"{who}: {name} must be an int >= 1, got {value!r}")
    return value


class ProcessExecutor(Executor):
    """A spawn-only process pool of `workers` processes on this machine.

    **Arguments:**

    - `workers`: number of worker processes.
    - `max_restarts`: how many times a broken pool (a worker died) is replaced before the run
      fails with :class:`~georax.run.errors.ExecutorError`.
    """

    name = "process"

    def __init__(self, workers: int = 2, *, max_restarts: int = 3) -> None:
        self.workers = _positive(workers, "workers", "ProcessExecutor")
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ExecutorError(
                f"ProcessExecutor: max_restarts must be an int >= 0, got {max_restarts!r}"
            )
        self.max_restarts = max_restarts
        #: how many times the pool was replaced during the last run
        self.restarts = 0

    def map(self, runner: RowRunner, batches: Batches) -> Iterator[BatchResult]:
        pending = dict(enumerate(batches))
        context = multiprocessing.get_context("spawn")
        self.restarts = 0
        while pending:
            pool = cf.ProcessPoolExecutor(
                max_workers=min(self.workers, len(pending)),
                mp_context=context,
                initializer=_init_worker,
                initargs=(runner,),
            )
            broken = False
            try:
                futures = {pool.submit(_run_in_worker, b): i for i, b in pending.items()}
                for future in cf.as_completed(futures):
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        broken = True
                        break
                    del pending[futures[future]]
                    yield result
                if broken:  # keep what finished before the pool broke; re-run the rest
                    for future, i in futures.items():
                        if i in pending and future.done() and future.exception() is None:
                            del pending[i]
                            yield future.result()
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
            if broken and pending:
                self.restarts += 1
                if self.restarts > self.max_restarts:
                    rows = sorted(t.row for b in pending.values() for t in b)
                    raise ExecutorError(
                        f"process pool workers died {self.restarts} times; giving up on rows "
                        f"{rows[:10]}{'...' if len(rows) > 10 else ''}"
                    )


# ----------------------------------------------------------------------------- Dask
def _run_in_dask(runner: RowRunner, batch: list[RowTask]) -> BatchResult:
    return runner.run(batch)


class DaskExecutor(Executor):
    """Run rows on Dask distributed: an existing scheduler, or a local cluster it manages.

    **Arguments:**

    - `address`: a scheduler address (``"tcp://10.0.0.5:8786"``); None starts a
      ``LocalCluster`` on 127.0.0.1 (no dashboard) and stops it when the run ends.
    - `client`: an existing ``distributed.Client`` to use instead (never closed here).
    - `workers`: worker processes of the local cluster.
    - `threads_per_worker`: threads per local worker (1: JAX already uses the cores).
    - `retries`: Dask retries of a task that raised (rows never raise; this covers
      infrastructure failures such as a lost connection).
    - `memory_limit`: per local worker (Dask's ``"auto"`` by default).
    """

    name = "dask"

    def __init__(
        self,
        address: str | None = None,
        *,
        client: Any = None,
        workers: int = 2,
        threads_per_worker: int = 1,
        retries: int = 2,
        memory_limit: str | int = "auto",
    ) -> None:
        if address is not None and client is not None:
            raise ExecutorError("DaskExecutor: pass address= or client=, not both")
        self.address = address
        self.client = client
        self.workers = _positive(workers, "workers", "DaskExecutor")
        self.threads_per_worker = _positive(
            threads_per_worker, "threads_per_worker", "DaskExecutor"
        )
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ExecutorError(f"DaskExecutor: retries must be an int >= 0, got {retries!r}")
        self.retries = retries
        self.memory_limit = memory_limit

    def _connect(self) -> tuple[Any, Any, bool]:
        """``(client, cluster, owned)``: owned clients/clusters are closed after the run."""
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ExecutorError(
                "the dask executor needs dask distributed: pip install 'georax[cluster]'"
            ) from None
        if self.client is not None:
            return self.client, None, False
        try:
            if self.address is not None:
                return Client(self.address, timeout=30), None, True
            cluster = LocalCluster(
                n_workers=self.workers,
                threads_per_worker=self.threads_per_worker,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                worker_dashboard_address=None,
                silence_logs=logging.ERROR,
                memory_limit=self.memory_limit,
            )
        except (OSError, TimeoutError) as e:
            where = self.address or "a local cluster"
            raise ExecutorError(f"cannot connect to Dask ({where}): {e}") from None
        return Client(cluster), cluster, True

    def map(self, runner: RowRunner, batches: Batches) -> Iterator[BatchResult]:
        from distributed import as_completed

        client, cluster, owned = self._connect()
        futures: list[Any] = []
        try:
            shared = client.scatter(runner, broadcast=True, hash=False)
            futures = [
                client.submit(_run_in_dask, shared, b, retries=self.retries, pure=False)
                for b in batches
            ]
            for future in as_completed(futures):
                try:
                    result = future.result()
                except Exception as e:  # KilledWorker, lost scheduler...: the run cannot go on
                    raise ExecutorError(f"Dask task failed: {type(e).__name__}: {e}") from e
                yield result
        finally:
            if futures:
                client.cancel(futures)
            if owned:
                client.close()
                if cluster is not None:
                    cluster.close()


def make_executor(
    kind: str | Executor = "local", *, workers: int = 2, address: str | None = None
) -> Executor:
    """An executor from its name: ``"local"``, ``"process"`` or ``"dask"`` (or pass one)."""
    if isinstance(kind, Executor):
        return kind
    if kind == "local":
        return LocalExecutor()
    if kind == "process":
        return ProcessExecutor(workers)
    if kind == "dask":
        return DaskExecutor(address, workers=workers)
    raise ExecutorError(f"unknown executor {kind!r}; one of 'local', 'process', 'dask'")
