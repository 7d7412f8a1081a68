"""georax.run: run pipelines over catalogs -- in process, on a process pool, on Dask.

- :class:`CatalogPipeline` (seed case 2): ``loader -> pipeline -> writer`` for every catalog
  row, compiled once per input shape, with atomic outputs, a manifest, resume after a crash and
  a failure policy; returns a :class:`RunReport`.
- Executors: :class:`LocalExecutor`, :class:`ProcessExecutor` (spawn-only pool),
  :class:`DaskExecutor` (``distributed.Client``; a local cluster by default).
- Writers: :class:`CogWriter` (one COG per row + a GeoParquet of per-row statistics),
  :class:`StatsWriter` (the table only).
- :func:`run_task` (seed case 12): a plain pickleable function for Prefect/Airflow/Dask futures,
  idempotent by content key.
- :class:`CompiledPipeline`: the once-per-shape compiled pipeline the runners use.
"""

from georax.run.compiled import CompiledPipeline, Signature
from georax.run.errors import (
    ExecutorError,
    FailureRateExceededError,
    ManifestError,
    RowFailedError,
    RunError,
    RunLockedError,
)
from georax.run.executors import (
    DaskExecutor,
    Executor,
    LocalExecutor,
    ProcessExecutor,
    make_executor,
)
from georax.run.manifest import MANIFEST_FILE, Manifest
from georax.run.pipeline import ON_ROW_ERROR, CatalogPipeline, RunReport, output_name
from georax.run.tasks import content_key, run_task
from georax.run.writers import CogWriter, RowOutput, StatsWriter, Writer, row_stats

__all__ = [
    "MANIFEST_FILE",
    "ON_ROW_ERROR",
    "CatalogPipeline",
    "CogWriter",
    "CompiledPipeline",
    "DaskExecutor",
    "Executor",
    "ExecutorError",
    "FailureRateExceededError",
    "LocalExecutor",
    "Manifest",
    "ManifestError",
    "ProcessExecutor",
    "RowFailedError",
    "RowOutput",
    "RunError",
    "RunLockedError",
    "RunReport",
    "Signature",
    "StatsWriter",
    "Writer",
    "content_key",
    "make_executor",
    "output_name",
    "row_stats",
    "run_task",
]
