"""The unit of work of a run: load a slice, run the compiled pipeline, write the result.

:class:`RowRunner` is what travels to a worker (once per worker process: the pipeline, loader and
writer), and lists of :class:`RowTask` are what is sent per task. A runner never raises for a
bad row: every failure (an unreadable scene, a pipeline error, a full disk) comes back as a
:class:`RowResult` with the error's type and message, and the driver decides -- raise, log and
continue, or abort on the failure rate.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from georax.catalog import GeoSlice
from georax.core.operator import Operator
from georax.run.compiled import CompiledPipeline, Signature
from georax.run.writers import Writer

__all__ = ["BatchResult", "RowResult", "RowRunner", "RowTask"]


@dataclasses.dataclass(frozen=True)
class RowTask:
    """One row to run: its id, its slice and the file stem of its output."""

    row: str
    slice: GeoSlice
    name: str


@dataclasses.dataclass
class RowResult:
    """What happened to one row (see :mod:`georax.run.manifest` for the recorded fields).

    ``exception`` is the original exception, kept only when the row ran in the driver process
    (it is dropped before results cross a process boundary).
    """

    row: str
    status: str
    input_digest: str
    output: str | None = None
    output_digest: str | None = None
    output_bytes: int | None = None
    stats: dict[str, Any] | None = None
    error_type: str | None = None
    error: str | None = None
    seconds: float = 0.0
    worker: str = ""
    exception: BaseException | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def failed(self) -> bool:
        return self.status == "failed"


@dataclasses.dataclass
class BatchResult:
    """The results of one task (a list of rows) and the compilations it caused."""

    results: list[RowResult]
    traces: int


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _failure(task: RowTask, error: BaseException, t0: float) -> RowResult:
    return RowResult(
        row=task.row,
        status="failed",
        input_digest=task.slice.hash,
        error_type=type(error).__name__,
        error=str(error) or repr(error),
        seconds=time.perf_counter() - t0,
        worker=_worker_name(),
        exception=error,
    )


class RowRunner:
    """Runs rows: ``loader(slice) -> pipeline -> writer``, compiled once per input shape.

    **Arguments:**

    - `pipeline`: the operator.
    - `loader`: ``GeoSlice -> input`` (e.g. :func:`georax.catalog.load_raster`).
    - `writer`: a :class:`~georax.run.writers.Writer`.
    - `batch_size`: rows of one signature run as one vmap-batched call, up to this many.
    - `rebase`: see :class:`~georax.run.compiled.CompiledPipeline`.

    Pickles without its compiled programs; each process compiles its own, once per shape.
    """

    def __init__(
        self,
        pipeline: Operator,
        loader: Callable[[GeoSlice], Any],
        writer: Writer,
        *,
        batch_size: int = 1,
        rebase: bool = True,
    ) -> None:
        self.pipeline = pipeline
        self.loader = loader
        self.writer = writer
        self.batch_size = batch_size
        self.rebase = rebase
        self._compiled: CompiledPipeline | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_compiled"] = None
        return state

    @property
    def compiled(self) -> CompiledPipeline:
        """The process-local compiled pipeline (built on first use)."""
        if self._compiled is None:
            self._compiled = CompiledPipeline(self.pipeline, rebase=self.rebase)
        return self._compiled

    def _finish(self, task: RowTask, out: Any, t0: float) -> RowResult:
        try:
            written = self.writer.write(out, task.name)
        except Exception as e:  # a row's failure is data for the driver, never a crash
            return _failure(task, e, t0)
        return RowResult(
            row=task.row,
            status="done",
            input_digest=task.slice.hash,
            output=written.output,
            output_digest=written.digest,
            output_bytes=written.size,
            stats=written.stats,
            seconds=time.perf_counter() - t0,
            worker=_worker_name(),
        )

    def run(self, tasks: Sequence[RowTask], *, keep_exceptions: bool = False) -> BatchResult:
        """Run a list of rows; never raises for a row's failure.

        **Arguments:**

        - `tasks`: the rows.
        - `keep_exceptions`: keep each failure's exception object (in-process runs only).
        """
        compiled = self.compiled
        before = compiled.traces
        results: list[RowResult] = []
        groups: dict[Signature, list[tuple[RowTask, Any, float]]] = {}
        for task in tasks:
            t0 = time.perf_counter()
            try:
                x = self.loader(task.slice)
                groups.setdefault(Signature.of(x), []).append((task, x, t0))
            except Exception as e:
                results.append(_failure(task, e, t0))
        for items in groups.values():
            for i in range(0, len(items), max(1, self.batch_size)):
                results.extend(self._run_group(compiled, items[i : i + self.batch_size]))
        if not keep_exceptions:
            for r in results:
                r.exception = None
        return BatchResult(results, compiled.traces - before)

    def _run_group(
        self, compiled: CompiledPipeline, items: list[tuple[RowTask, Any, float]]
    ) -> list[RowResult]:
        if len(items) > 1:
            try:
                outs = compiled.batch([x for _, x, _ in items])
            except Exception:  # isolate the failing row: run them one by one below
                outs = None
            if outs is not None:
                return [self._finish(t, o, t0) for (t, _, t0), o in zip(items, outs, strict=True)]
        results = []
        for task, x, t0 in items:
            try:
                out = compiled(x)
            except Exception as e:
                results.append(_failure(task, e, t0))
                continue
            results.append(self._finish(task, out, t0))
        return results
