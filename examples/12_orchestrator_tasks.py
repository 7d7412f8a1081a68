"""Seed case 12 -- orchestrator task units: a Prefect flow of small, pickleable, idempotent tasks.

The orchestrator (here Prefect; Airflow or Dagster look the same) owns retries, parallelism and
alerting; georax owns the science. The interface is one plain function,
:func:`georax.run.run_task` ``(pipeline_yaml, slice_dict, out_dir) -> {out_uri, stats,
config_hash}``: it rebuilds the pipeline on the worker through the sandboxed loader, loads the
slice, and writes ``{out_dir}/{content key}.tif`` atomically, where the content key is the
SHA-256 of (pipeline digest, slice hash). So a retried task -- or a whole flow run again --
overwrites the same file with the same bytes and never leaves a duplicate.

The flow below:

1. selects the day's slices from the demo catalog (one scene is corrupt: a data error);
2. submits one ``@task(retries=3)`` per slice; the first task's first attempt fails *after* its
   COG was written (a simulated dropped connection), and its retry rewrites the same file;
3. collects results and failures and reports the failure rate (alerting on a rate, not on the
   first failure, belongs to the orchestrator);
4. is run a second time: same output names, same number of files.

``--engine dask`` runs the same tasks as Dask futures (``client.submit(run_task, ..., retries=3)``
on a local cluster on 127.0.0.1), which is also the fallback when Prefect is not installed
(``pip install 'georax[orchestrate]'`` for Prefect).

Run: ``python examples/12_orchestrator_tasks.py [OUTPUT_DIR] [--n 6] [--size 64]
[--engine prefect|dask]`` (default output folder ``./georax-out/12``). Writes ``catalog/``,
``12_pipeline.yaml``, ``outputs/`` (one COG per slice, named by content key) and
``12_results.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Callable
from typing import Any

import georax.data as gd
from georax.catalog import open_catalog
from georax.run import run_task

PIPELINE_YAML = """\
_target_: georax.Sequential
operators:
- {_target_: georax.geo.cloud.MaskClouds}
- {_target_: georax.geo.radiometry.DNToReflectance}
- {_target_: georax.geo.radiometry.DarkObjectSubtraction, percentile: 1.0, clip_negative: true}
- {_target_: georax.geo.indices.NDVI}
"""


def ndvi(
    pipeline_yaml: str, slice_dict: dict[str, Any], out_dir: str, flaky: str | None = None
) -> dict[str, Any]:
    """The task body: georax's task unit, plus a simulated transient failure for the demo.

    With `flaky` set, the first attempt fails *after* the COG was written (as when the
    connection drops while the orchestrator records the result); the retry writes it again.
    """
    result = run_task(pipeline_yaml, slice_dict, out_dir)
    if flaky is not None and not os.path.exists(flaky):
        with open(flaky, "w", encoding="utf-8") as f:
            f.write(result["out_uri"])
        raise ConnectionError("simulated: connection dropped after the COG was written")
    return result


def with_prefect(slices: list[dict[str, Any]], yaml_path: str, out_dir: str, flaky: str) -> list:
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    ndvi_task = task(ndvi, name="ndvi", retries=3, retry_delay_seconds=0, cache_policy=NO_CACHE)

    @flow(name="daily-ndvi")
    def daily_ndvi() -> list:
        futures = [
            ndvi_task.submit(yaml_path, s, out_dir, flaky if i == 0 else None)
            for i, s in enumerate(slices)
        ]
        return [f.result(raise_on_failure=False) for f in futures]

    return daily_ndvi()


def with_dask(slices: list[dict[str, Any]], yaml_path: str, out_dir: str, flaky: str) -> list:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        futures = [
            client.submit(
                ndvi, yaml_path, s, out_dir, flaky if i == 0 else None, retries=3, pure=False
            )
            for i, s in enumerate(slices)
        ]
        results = []
        for f in futures:
            try:
                results.append(f.result())
            except Exception as e:  # the task failed after its retries: report, do not stop
                results.append(e)
        return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Seed case 12: orchestrator task units")
    parser.add_argument("out", nargs="?", default=os.path.join("georax-out", "12"))
    parser.add_argument("--n", type=int, default=6, help="scenes in the demo catalog")
    parser.add_argument("--size", type=int, default=64, help="scene size in pixels")
    parser.add_argument("--engine", choices=("prefect", "dask"), default="prefect")
    parser.add_argument("--date", default="2024-06-01", help="first day of the flow's window")
    parser.add_argument("--days", type=int, default=7, help="days in the flow's window")
    args = parser.parse_args(argv)
    out = os.path.abspath(args.out)
    for stale in ("catalog", "outputs", "attempts"):
        shutil.rmtree(os.path.join(out, stale), ignore_errors=True)
    os.makedirs(os.path.join(out, "attempts"))

    engine = args.engine
    if engine == "prefect" and importlib.util.find_spec("prefect") is None:
        print("prefect is not installed (pip install 'georax[orchestrate]'): using Dask futures")
        engine = "dask"
    run_flow: Callable[..., list] = with_prefect if engine == "prefect" else with_dask

    demo = gd.write_demo_catalog(
        os.path.join(out, "catalog"), args.n, size=args.size, corrupt=[args.n // 2]
    )
    start = dt.date.fromisoformat(args.date)
    window = (start.isoformat(), (start + dt.timedelta(days=args.days)).isoformat())
    day = open_catalog(demo.catalog).query(time=window)
    slices = [s.to_dict() for s in day.iter_slices()]  # JSON-friendly: what a task receives
    yaml_path = os.path.join(out, "12_pipeline.yaml")
    with open(yaml_path, "w", encoding="utf-8") as f:
        f.write(PIPELINE_YAML)
    out_dir = os.path.join(out, "outputs")
    print(f"{len(slices)} slice(s) between {window[0]} and {window[1]}; engine: {engine}")

    runs = []
    for attempt in (1, 2):
        flaky = os.path.join(out, "attempts", f"flow{attempt}-dropped")
        results = run_flow(slices, yaml_path, out_dir, flaky)
        done = [r for r in results if isinstance(r, dict)]
        failed = [
            (s["id"], r) for s, r in zip(slices, results, strict=True) if not isinstance(r, dict)
        ]
        files = sorted(os.listdir(out_dir))
        print(
            f"\nflow run {attempt}: {len(done)} done, {len(failed)} failed "
            f"(failure rate {len(failed) / len(results):.0%}); {len(files)} file(s) in outputs/"
        )
        for s, r in zip(slices, results, strict=True):
            if isinstance(r, dict):
                mean = r["stats"]["mean"]
                shown = f"NDVI mean {mean:+.3f}" if mean is not None else "no clear pixel"
                print(f"  {s['id']} -> {os.path.basename(r['out_uri'])[:16]}...tif  {shown}")
            else:
                print(f"  {s['id']} failed: {type(r).__name__}: {r}")
        print(f"  retried after a dropped connection: {os.path.exists(flaky)}")
        runs.append(
            {
                "results": done,
                "failed": [[i, type(e).__name__, str(e)] for i, e in failed],
                "files": files,
            }
        )

    uris = [[r["out_uri"] for r in run["results"]] for run in runs]
    same = uris[0] == uris[1] and runs[0]["files"] == runs[1]["files"]
    print(f"\nsecond flow run wrote the same files (no duplicates): {same}")
    with open(os.path.join(out, "12_results.json"), "w", encoding="utf-8") as f:
        json.dump({"engine": engine, "slices": slices, "runs": runs}, f, indent=2)
    print(f"wrote {out_dir} and 12_results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
