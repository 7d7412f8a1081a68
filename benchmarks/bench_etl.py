"""Benchmark: CatalogPipeline's per-row overhead and its scaling on a process pool and on Dask.

The seeds' ETL chain (QA cloud mask -> DN scale -> dark-object subtraction -> NDVI) over a demo
catalog of 64 Sentinel-2-like scenes of 6 x 1024 x 1024 uint16 (B02, B03, B04, B08, B11, QA60),
each row read from its COG, run, and written as a float32 COG:

- **hand-written loop** (the reference): ``for slice: load_raster -> compiled(gt) ->
  write_cog`` over the same :class:`~georax.run.CompiledPipeline` -- what a careful user would
  write without georax.run;
- **CatalogPipeline, in process**: the same rows plus everything a production run adds (the
  manifest appended per row, SHA-256 of every output, per-row statistics and the GeoParquet
  table, the run lock, temp-file cleanup); target <= 10 % over the loop;
- **CatalogPipeline on a spawn process pool / on Dask** (``--workers``, default 2), against the
  in-process run: the scaling, including starting the workers (spawn + JAX import) or the local
  cluster.

Both in-process variants compile once per repeat (the compile count is reported; every scene has
one shape, so it is 1 per process). Reported: median of ``--repeats`` runs (variants interleaved,
so load changes hit them alike), seconds per row, the ratio to the reference, and the machine.

Run:  python benchmarks/bench_etl.py [--scenes 64] [--size 1024] [--repeats 3] [--workers 2]
      [--data DIR]   (the catalog is written once into DIR and reused when it matches)
Quick look: python benchmarks/bench_etl.py --scenes 16 --size 256 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jax

import georax.data as gd
from georax.catalog import load_raster, open_catalog
from georax.geo.cloud import MaskClouds
from georax.geo.indices import NDVI
from georax.geo.radiometry import DarkObjectSubtraction, DNToReflectance
from georax.io import write_cog
from georax.run import (
    CatalogPipeline,
    CogWriter,
    CompiledPipeline,
    DaskExecutor,
    LocalExecutor,
    ProcessExecutor,
    RunReport,
)

try:
    from _util import machine
except ImportError:  # pragma: no cover - run from elsewhere
    from benchmarks._util import machine

import georax as gx

BANDS = ("B02", "B03", "B04", "B08", "B11", "QA60")


def seed_chain() -> gx.Sequential:
    return gx.Sequential(
        [MaskClouds(), DNToReflectance(), DarkObjectSubtraction(percentile=1.0), NDVI()]
    )


def demo_catalog(folder: Path, scenes: int, size: int) -> str:
    """Write the catalog once; reuse it when a previous run wrote the same one."""
    stamp = folder / "bench_etl.json"
    wanted = {"scenes": scenes, "size": size, "bands": list(BANDS), "format": "parquet"}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return str(folder / "catalog.parquet")
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    demo = gd.write_demo_catalog(folder, scenes, size=size, bands=BANDS)
    print(
        f"wrote the demo catalog ({scenes} x 6x{size}x{size}) in {time.perf_counter() - t0:.0f} s"
    )
    stamp.write_text(json.dumps(wanted))
    return demo.catalog


def hand_loop(catalog: str, out: Path) -> tuple[float, int]:
    """The reference: load -> compiled pipeline -> write_cog, nothing else."""
    t0 = time.perf_counter()
    compiled = CompiledPipeline(seed_chain())
    out.mkdir()
    for s in open_catalog(catalog).iter_slices():
        write_cog(compiled(load_raster(s)), out / f"{s.id}.tif")
    return time.perf_counter() - t0, compiled.traces


def catalog_pipeline(
    catalog: str, out: Path, executor: object, *, rows: int | None = None
) -> tuple[float, int]:
    t0 = time.perf_counter()
    cat = open_catalog(catalog)
    if rows is not None:  # what starting the workers costs (plus one row each)
        cat = cat.query(properties={"id": list(cat.ids[:rows])})
    report: RunReport = CatalogPipeline(
        cat,
        seed_chain(),
        writer=CogWriter(out),
        executor=executor,  # type: ignore[arg-type]
        on_row_error="log_and_continue",
    ).run(progress=False)
    elapsed = time.perf_counter() - t0
    if report.failed:
        raise RuntimeError(f"benchmark rows failed: {report.errors[:3]}")
    return elapsed, report.compilations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=64)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data", type=Path, help="folder for the demo catalog (kept between runs)")
    ap.add_argument("--skip-workers", action="store_true", help="in-process comparison only")
    args = ap.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench_etl_"))
    data = args.data or scratch / "data"
    catalog = demo_catalog(data, args.scenes, args.size)

    variants: dict[str, Callable[[Path], tuple[float, int]]] = {
        "hand-written loop (reference)": lambda out: hand_loop(catalog, out),
        "CatalogPipeline, in process": lambda out: catalog_pipeline(catalog, out, LocalExecutor()),
    }
    startup: dict[str, Callable[[Path], tuple[float, int]]] = {}
    if not args.skip_workers:
        pool = f"CatalogPipeline, process pool x{args.workers}"
        dask = f"CatalogPipeline, Dask x{args.workers}"
        variants[pool] = lambda out: catalog_pipeline(catalog, out, ProcessExecutor(args.workers))
        variants[dask] = lambda out: catalog_pipeline(
            catalog, out, DaskExecutor(workers=args.workers)
        )
        startup[pool] = lambda out: catalog_pipeline(
            catalog, out, ProcessExecutor(args.workers), rows=args.workers
        )
        startup[dask] = lambda out: catalog_pipeline(
            catalog, out, DaskExecutor(workers=args.workers), rows=args.workers
        )

    times: dict[str, list[float]] = {name: [] for name in variants}
    starts: dict[str, list[float]] = {name: [] for name in startup}
    compiles: dict[str, int] = {}
    for rep in range(args.repeats + 1):  # the first round warms caches (page cache, imports)
        for k, (name, run) in enumerate([*variants.items(), *startup.items()]):
            out = scratch / f"out-{rep}-{k}"
            elapsed, traces = run(out)
            shutil.rmtree(out, ignore_errors=True)
            if rep == 0:
                continue
            if k < len(variants):
                times[name].append(elapsed)
                compiles[name] = traces
            else:
                starts[name].append(elapsed)
    shutil.rmtree(scratch, ignore_errors=True)

    med = {name: statistics.median(t) for name, t in times.items()}
    ref = med["hand-written loop (reference)"]
    local = med["CatalogPipeline, in process"]
    print(
        f"\ngeorax bench_etl: {args.scenes} scenes of 6x{args.size}x{args.size} uint16 -> NDVI "
        f"float32 COG, median of {args.repeats} runs"
    )
    print(
        f"machine: {machine()}, load avg {os.getloadavg()[0]:.1f}, "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )
    header = (
        f"{'variant':<34} {'median s':>9} {'ms/row':>8} {'vs loop':>8} {'vs in-process':>14} "
        f"{'compiles':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, t in med.items():
        print(
            f"{name:<34} {t:>9.2f} {1e3 * t / args.scenes:>8.1f} {t / ref:>7.3f}x "
            f"{local / t:>13.2f}x {compiles[name]:>9}"
        )
    for name, t in starts.items():
        t_start = statistics.median(t)
        per_row = (med[name] - t_start) / max(args.scenes - args.workers, 1)
        rate = (
            f"then {1e3 * per_row:.1f} ms/row = {local / args.scenes / per_row:.2f}x the "
            "in-process rate"
            if per_row > 0
            else "the rest is within the noise (use more scenes)"
        )
        print(f"{name}: start + one row per worker {t_start:.2f} s, {rate}")
    overhead = (local - ref) / ref
    print(
        f"\nper-row overhead of CatalogPipeline in process: {overhead:+.1%} "
        f"({1e3 * (local - ref) / args.scenes:+.1f} ms/row; target <= +10 %)"
    )
    print("'vs in-process' > 1 means faster than the in-process run (scaling with workers).")
    print(f"jax {jax.__version__}, devices {jax.devices()}")


if __name__ == "__main__":
    main()
