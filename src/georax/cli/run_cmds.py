"""``georax run``: a pipeline over a catalog, resumable, on one machine or a Dask cluster.

::

    georax run pipelines/ndvi.yaml --catalog s2.parquet --out out/ndvi
    georax run pipelines/ndvi.yaml --catalog scenes/ --out out/ndvi --executor process --workers 4
    georax run pipelines/ndvi.yaml --catalog s2.parquet --out out/ndvi --executor dask \\
        --scheduler tcp://10.0.0.5:8786 --resume

Writes one COG per row, ``stats.parquet`` and ``manifest.jsonl`` into ``--out``. Exit status: 0
when every row is done, 3 when some rows failed (they are listed and in the manifest), 1 on an
error that stopped the run (including ``--max-failure-rate`` being exceeded).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
from pathlib import Path

import georax  # noqa: F401  (registers every built-in operator for the loaders below)
from georax.catalog import open_catalog
from georax.core.operator import Operator
from georax.core.params import PIPELINE_FILE
from georax.core.params import load as load_saved
from georax.core.registry import public_operators
from georax.core.sandbox import DEFAULT_LIMITS, SANDBOX_LIMITS
from georax.core.yaml_io import loads_yaml
from georax.run import (
    CatalogPipeline,
    CogWriter,
    DaskExecutor,
    LocalExecutor,
    ProcessExecutor,
    RunError,
    StatsWriter,
)

__all__ = ["ROWS_FAILED", "register", "run_run"]

#: Exit status when the run finished but some rows failed.
ROWS_FAILED = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` subcommand."""
    p = subparsers.add_parser(
        "run", help="run a pipeline over every row of a catalog (resumable; local, pool or Dask)"
    )
    p.add_argument("pipeline", type=Path, help="pipeline YAML, or a directory from georax.save")
    p.add_argument(
        "--catalog", required=True, help="GeoParquet, CSV, STAC JSON or a folder of GeoTIFFs"
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (COGs + manifest)")
    p.add_argument(
        "--executor", choices=("local", "process", "dask"), default="local", help="where rows run"
    )
    p.add_argument("--workers", type=_positive, default=2, help="process/Dask workers (2)")
    p.add_argument(
        "--scheduler", metavar="ADDRESS", help="Dask scheduler address (default: a local cluster)"
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--on-row-error",
        choices=("raise", "log_and_continue"),
        default="log_and_continue",
        help="stop at the first failed row, or record it and go on (default)",
    )
    p.add_argument(
        "--max-failure-rate",
        type=_rate,
        metavar="F",
        help="stop once more than this fraction of the rows is certain to fail (0..1)",
    )
    p.add_argument("--batch-size", type=_positive, default=1, help="rows per vmap batch (1)")
    p.add_argument("--stats-only", action="store_true", help="write no COGs, only stats.parquet")
    p.add_argument("--bbox", type=_bbox, metavar="W,S,E,N", help="only rows intersecting this box")
    p.add_argument("--bbox-crs", default="EPSG:4326", help="CRS of --bbox (default EPSG:4326)")
    p.add_argument("--start", help="only rows at or after this ISO date/time")
    p.add_argument("--end", help="only rows at or before this ISO date/time")
    p.add_argument(
        "--sandbox",
        action="store_true",
        help="load the pipeline as an untrusted document (public operators, sandbox limits)",
    )
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this module first so its operators are registered (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_run)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction in [0, 1]")
    return value


def _bbox(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not W,S,E,N numbers") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"{text!r} is not four finite numbers W,S,E,N")
    return values  # type: ignore[return-value]


def _load_pipeline(path: Path, sandbox: bool) -> Operator:
    """A pipeline from YAML or a georax.save directory; regular files only, read with a cap
    (the loader's own document limit then refuses anything larger)."""
    allowed = public_operators() if sandbox else None
    if path.is_dir():
        return load_saved(path, allowed=allowed)
    if not path.is_file():
        raise RunError(
            f"{path}: no such pipeline file (expected a YAML file or a directory with "
            f"{PIPELINE_FILE})"
        )
    limit = (SANDBOX_LIMITS if sandbox else DEFAULT_LIMITS).max_bytes
    try:
        with path.open("rb") as f:
            text = f.read(limit + 1)
    except OSError as e:
        raise RunError(f"cannot read {path}: {e.strerror or e}") from None
    return loads_yaml(text, allowed=allowed)


def run_run(args: argparse.Namespace) -> int:
    """Run the pipeline over the (filtered) catalog and print the report."""
    for module in args.imports:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise RunError(f"--import {module}: {e}") from None
    pipeline = _load_pipeline(args.pipeline, args.sandbox)
    catalog = open_catalog(args.catalog)
    time = None
    if args.start or args.end:
        time = (args.start or "0001-01-01", args.end or "9999-12-31")
    if args.bbox is not None or time is not None:
        catalog = catalog.query(args.bbox, bbox_crs=args.bbox_crs, time=time)
    if args.executor == "dask":
        executor = DaskExecutor(args.scheduler, workers=args.workers)
    elif args.scheduler:
        raise RunError("--scheduler needs --executor dask")
    elif args.executor == "process":
        executor = ProcessExecutor(args.workers)
    else:
        executor = LocalExecutor()
    writer = StatsWriter(args.out) if args.stats_only else CogWriter(args.out)
    report = CatalogPipeline(
        catalog,
        pipeline,
        writer=writer,
        executor=executor,
        on_row_error=args.on_row_error,
        max_failure_rate=args.max_failure_rate,
        batch_size=args.batch_size,
    ).run(resume=args.resume, progress=not args.no_progress)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return ROWS_FAILED if report.failed else 0
