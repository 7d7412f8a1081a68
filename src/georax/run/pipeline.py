"""``CatalogPipeline``: run one pipeline over every row of a catalog, resumably (seed case 2).

::

    cat = gx.catalog.open_catalog("s2_eu.parquet").query(time=("2024-06-01", "2024-06-30"))
    etl = gx.loads_yaml(open("pipelines/ndvi_etl.yaml").read())
    report = CatalogPipeline(
        cat, etl,
        writer=CogWriter("out/ndvi"),
        executor=DaskExecutor(workers=8),        # or "local", ProcessExecutor(4), an address
        on_row_error="log_and_continue",
        max_failure_rate=0.05,
    ).run(resume=True)

What a run guarantees:

- **Compiled once per input shape.** Rows are grouped by their slice's shape; each worker
  compiles each shape once (:class:`~georax.run.compiled.CompiledPipeline`), optionally running
  ``batch_size`` rows of one shape as one vmap-batched program. ``RunReport.compilations``
  counts the compilations.
- **Atomic outputs, a manifest that matches them.** Writers write to temporary files renamed
  into place; the manifest (:mod:`georax.run.manifest`) records every row's status, the
  pipeline digest, the input digest (the slice's hash), the output's name and SHA-256, and the
  error type and message of a failure. A failed row has no output file.
- **Resume.** ``run(resume=True)`` skips rows whose latest record is ``done`` with the same
  pipeline digest, the same input digest and an output still on disk with its recorded digest;
  everything else (failed, missing, modified, other pipeline) is redone. After a ``kill -9``,
  rerunning with ``resume=True`` completes the run: each row done once, no temporary file left.
- **Failure policy.** ``on_row_error="raise"`` stops at the first failed row
  (:class:`~georax.run.errors.RowFailedError`); ``"log_and_continue"`` records it and goes on,
  and ``max_failure_rate`` stops the run (:class:`~georax.run.errors.FailureRateExceededError`)
  as soon as the failures make that rate (over the catalog's rows) certain to be exceeded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from tqdm.auto import tqdm

from georax.catalog import Catalog, GeoSlice, load_raster
from georax.core.errors import SerializationError
from georax.core.hashing import config_hash, pipeline_digest
from georax.core.operator import Operator
from georax.run.errors import FailureRateExceededError, RowFailedError, RunError
from georax.run.executors import Executor, make_executor
from georax.run.files import locked_folder
from georax.run.manifest import MANIFEST_FILE, Manifest
from georax.run.rows import RowResult, RowRunner, RowTask
from georax.run.writers import Writer

__all__ = ["ON_ROW_ERROR", "CatalogPipeline", "RunReport", "output_name"]

#: The accepted values of ``on_row_error``.
ON_ROW_ERROR = ("raise", "log_and_continue")

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")


def output_name(row: str) -> str:
    """The file stem of a row's output: its id when that is a safe file name, else a
    sanitised id with a hash suffix (ids with ``/``, spaces, a leading dot...)."""
    if _SAFE.fullmatch(row) and not row.endswith(".tmp"):
        return row
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", row).strip("._-")[:100] or "row"
    return f"{clean}-{hashlib.sha256(row.encode('utf-8')).hexdigest()[:12]}"


@dataclasses.dataclass(frozen=True)
class RunReport:
    """The outcome of :meth:`CatalogPipeline.run`.

    Attributes:

    - ``done``: rows completed in this run; ``skipped``: rows already done (resume);
      ``failed``: rows that failed in this run; ``attempted``: rows this run set out to do
      (``total - skipped``); ``total``: rows in the catalog.
    - ``failure_rate``: ``failed / (done + skipped + failed)``: the fraction of the catalog's
      rows finished so far that are failed (rows skipped because they were already done count as
      successes, so a resumed run is judged on the catalog, not on its leftovers; 0 when nothing
      ran).
    - ``compilations``: programs compiled, summed over worker processes.
    - ``errors``: ``(row, error type, message)`` of each failure.
    - ``out_dir``, ``manifest``: where the outputs and the manifest are.
    - ``pipeline_digest``, ``executor``, ``seconds``.
    """

    done: int
    skipped: int
    failed: int
    attempted: int
    total: int
    failure_rate: float
    compilations: int
    errors: tuple[tuple[str, str, str], ...]
    out_dir: str
    manifest: str
    pipeline_digest: str
    executor: str
    seconds: float

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [
            f"{self.done} done, {self.skipped} skipped, {self.failed} failed of {self.total} "
            f"row(s) (failure rate {self.failure_rate:.1%}) on the {self.executor} executor "
            f"in {self.seconds:.1f} s; {self.compilations} compilation(s)",
            f"outputs and manifest in {self.out_dir}",
        ]
        lines += [f"  failed {row}: {kind}: {msg}" for row, kind, msg in self.errors[:20]]
        if len(self.errors) > 20:
            lines.append(f"  ... and {len(self.errors) - 20} more (see the manifest)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        d = dataclasses.asdict(self)
        d["errors"] = [list(e) for e in self.errors]
        return d


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


class CatalogPipeline:
    """Run `op` on every row of `catalog` and write the results (see the module docstring).

    **Arguments:**

    - `catalog`: a :class:`~georax.catalog.Catalog` (query it first to select rows).
    - `op`: the pipeline; it must have a config (YAML-writable, so it has a digest) and be
      pickleable for the process and Dask executors.
    - `loader`: ``GeoSlice -> input``; default :func:`~georax.catalog.load_raster`. Must be
      pickleable (a module-level function or :class:`~georax.catalog.RasterLoader`).
    - `writer`: a :class:`~georax.run.writers.Writer`; its ``out_dir`` is the run folder.
    - `executor`: an :class:`~georax.run.executors.Executor` or ``"local"``, ``"process"``,
      ``"dask"`` (default local).
    - `on_row_error`: ``"raise"`` (default) or ``"log_and_continue"``.
    - `max_failure_rate`: with ``"log_and_continue"``, stop as soon as more than this fraction
      of the catalog's rows is certain to end failed, whatever the remaining rows do (rows
      already done count as successes; None: never stop).
    - `batch_size`: run up to this many rows of one shape as one vmap-batched call.

    **Raises:** :class:`~georax.run.errors.RunError` for bad arguments,
    :class:`~georax.core.errors.SerializationError` for a pipeline without a config.
    """

    def __init__(
        self,
        catalog: Catalog,
        op: Operator,
        *,
        writer: Writer,
        loader: Callable[[GeoSlice], Any] = load_raster,
        executor: Executor | str = "local",
        on_row_error: str = "raise",
        max_failure_rate: float | None = None,
        batch_size: int = 1,
    ) -> None:
        if not isinstance(catalog, Catalog):
            raise RunError(
                f"catalog must be a georax.catalog.Catalog, got {type(catalog).__name__}"
            )
        if not isinstance(op, Operator):
            raise RunError(f"op must be a georax Operator, got {type(op).__name__}")
        if not isinstance(writer, Writer):
            raise RunError(f"writer must be a georax.run Writer, got {type(writer).__name__}")
        if not callable(loader):
            raise RunError(f"loader must be callable (slice -> input), got {loader!r}")
        if on_row_error not in ON_ROW_ERROR:
            raise RunError(f"on_row_error={on_row_error!r} must be one of {ON_ROW_ERROR}")
        if max_failure_rate is not None:
            if isinstance(max_failure_rate, bool) or not isinstance(max_failure_rate, int | float):
                raise RunError(f"max_failure_rate={max_failure_rate!r} must be a number in [0, 1]")
            if not 0.0 <= float(max_failure_rate) <= 1.0:
                raise RunError(f"max_failure_rate={max_failure_rate!r} must be in [0, 1]")
            if on_row_error == "raise":
                raise RunError("max_failure_rate needs on_row_error='log_and_continue'")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise RunError(f"batch_size={batch_size!r} must be an int >= 1")
        try:
            self.pipeline_digest = pipeline_digest(op)
            self.config_hash = config_hash(op)
        except SerializationError as e:
            raise SerializationError(
                f"CatalogPipeline needs a pipeline with a config (its digest names the outputs "
                f"and drives resume): {e}"
            ) from None
        self.catalog = catalog
        self.op = op
        self.writer = writer
        self.loader = loader
        self.executor = make_executor(executor)
        self.on_row_error = on_row_error
        self.max_failure_rate = None if max_failure_rate is None else float(max_failure_rate)
        self.batch_size = batch_size

    @property
    def out_dir(self) -> str:
        """The run folder (the writer's)."""
        return self.writer.out_dir

    # ------------------------------------------------------------------ planning
    def _plan(self) -> tuple[list[RowTask], list[RowResult]]:
        """Every row's task, and the failures found while building the slices."""
        tasks, broken = [], []
        names: dict[str, str] = {}
        for row in self.catalog.iter_rows():
            name = output_name(row.id)
            if name in names:
                raise RunError(f"rows {names[name]!r} and {row.id!r} map to one output {name!r}")
            names[name] = row.id
            try:
                slice_ = self.catalog.slice_of(row)
            except Exception as e:  # an unreadable scene in a scanned folder, a bad grid...
                broken.append(
                    RowResult(
                        row=row.id,
                        status="failed",
                        input_digest="",
                        error_type=type(e).__name__,
                        error=str(e),
                        exception=e,
                    )
                )
                continue
            tasks.append(RowTask(row.id, slice_, name))
        return tasks, broken

    def _is_done(self, manifest: Manifest, task: RowTask) -> bool:
        rec = manifest.get(task.row)
        return bool(
            rec is not None
            and rec.get("status") == "done"
            and rec.get("pipeline_digest") == self.pipeline_digest
            and rec.get("input_digest") == task.slice.hash
            and rec.get("writer") == self.writer.kind
            and self.writer.verify(rec)
        )

    def _batches(self, tasks: list[RowTask]) -> list[list[RowTask]]:
        """Tasks grouped by slice shape and bands, in catalog order, ``batch_size`` at a time."""
        if self.batch_size == 1:
            return [[t] for t in tasks]
        groups: dict[tuple[Any, ...], list[RowTask]] = {}
        for t in tasks:
            groups.setdefault((t.slice.shape, t.slice.bands), []).append(t)
        return [
            g[i : i + self.batch_size]
            for g in groups.values()
            for i in range(0, len(g), self.batch_size)
        ]

    def _record(self, r: RowResult) -> dict[str, Any]:
        return {
            "row": r.row,
            "status": r.status,
            "pipeline_digest": self.pipeline_digest,
            "config_hash": self.config_hash,
            "input_digest": r.input_digest,
            "writer": self.writer.kind,
            "output": r.output,
            "output_digest": r.output_digest,
            "output_bytes": r.output_bytes,
            "stats": r.stats,
            "error_type": r.error_type,
            "error": r.error,
            "seconds": round(r.seconds, 6),
            "worker": r.worker,
            "finished": _now(),
        }

    # ------------------------------------------------------------------ running
    def run(self, *, resume: bool = False, progress: bool = True) -> RunReport:
        """Run every row not already done; write the manifest and the outputs.

        **Arguments:**

        - `resume`: continue the run recorded in the output folder's manifest (skip rows done
          with this pipeline whose outputs are intact). Without it, a folder that already
          holds a manifest is refused.
        - `progress`: show a progress bar (tqdm, on stderr).

        **Returns:** a :class:`RunReport`.

        **Raises:** :class:`~georax.run.errors.RowFailedError`,
        :class:`~georax.run.errors.FailureRateExceededError`,
        :class:`~georax.run.errors.RunLockedError`, :class:`~georax.run.errors.ExecutorError`,
        :class:`~georax.run.errors.ManifestError`.
        """
        t_start = time.perf_counter()
        with locked_folder(self.out_dir):
            manifest = Manifest(f"{self.out_dir}/{MANIFEST_FILE}")
            if len(manifest) and not resume:
                raise RunError(
                    f"{self.out_dir} already holds the manifest of a run ({len(manifest)} rows); "
                    "pass resume=True (georax run --resume) to continue it, or use another "
                    "output folder"
                )
            manifest.compact()  # drop a line truncated by a crash before appending to it
            tasks, broken = self._plan()
            todo = [t for t in tasks if not self._is_done(manifest, t)]
            state = _RunState(total=len(tasks) + len(broken), attempted=len(todo) + len(broken))
            state.skipped = len(tasks) - len(todo)
            order = [t.row for t in tasks]
            try:
                with tqdm(
                    total=state.attempted,
                    disable=not progress,
                    unit="row",
                    desc=f"georax run ({self.executor.name})",
                ) as bar:
                    for r in broken:
                        self._settle(r, manifest, state, t_start, bar)
                    if todo:
                        self._execute(todo, manifest, state, t_start, bar)
            finally:
                manifest.compact(order)
            by_row = {t.row: t.slice for t in tasks}
            done = [
                (by_row[row], rec)
                for row, rec in manifest.records.items()
                if row in by_row and rec.get("status") == "done"
            ]
            self.writer.finalize(done)
        return self._report(state, t_start)

    def _execute(
        self,
        todo: list[RowTask],
        manifest: Manifest,
        state: _RunState,
        t_start: float,
        bar: Any,
    ) -> None:
        runner = RowRunner(self.op, self.loader, self.writer, batch_size=self.batch_size)
        self.executor.check_picklable(runner)
        results: Iterator[Any] = self.executor.map(runner, self._batches(todo))
        with contextlib.closing(results):  # type: ignore[type-var]
            for batch in results:
                state.compilations += batch.traces
                for r in batch.results:
                    self._settle(r, manifest, state, t_start, bar)

    def _settle(
        self, r: RowResult, manifest: Manifest, state: _RunState, t_start: float, bar: Any
    ) -> None:
        """Record one row's outcome, then apply the failure policy."""
        if r.failed:
            self.writer.discard(output_name(r.row))
        manifest.append(self._record(r))
        bar.update(1)
        if not r.failed:
            state.done += 1
            return
        state.failed += 1
        state.errors.append((r.row, r.error_type or "Error", r.error or ""))
        if self.on_row_error == "raise":
            raise RowFailedError(r.row, r.error_type or "Error", r.error or "") from r.exception
        rate = self.max_failure_rate
        if rate is not None and state.failed > rate * state.total:
            raise FailureRateExceededError(self._report(state, t_start), rate)

    def _report(self, state: _RunState, t_start: float) -> RunReport:
        finished = state.done + state.skipped + state.failed
        return RunReport(
            done=state.done,
            skipped=state.skipped,
            failed=state.failed,
            attempted=state.attempted,
            total=state.total,
            failure_rate=state.failed / finished if finished else 0.0,
            compilations=state.compilations,
            errors=tuple(state.errors),
            out_dir=self.out_dir,
            manifest=f"{self.out_dir}/{MANIFEST_FILE}",
            pipeline_digest=self.pipeline_digest,
            executor=self.executor.name,
            seconds=time.perf_counter() - t_start,
        )


@dataclasses.dataclass
class _RunState:
    total: int
    attempted: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    compilations: int = 0
    errors: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
