"""Seed case 2 -- the notebook chain becomes a nightly ETL over a catalog, resumable.

A catalog of scenes (here: the bundled demo catalog, written as GeoParquet, with two scenes that
were corrupted after cataloguing -- a flaky upload) drives the iteration. The same operator graph
a notebook uses (QA cloud mask -> DN to reflectance -> dark-object subtraction, clipped at 0
-> NDVI) is loaded
from YAML through the sandboxed loader and run by :class:`georax.run.CatalogPipeline`:

1. the catalog is queried by bounding box (given in Web Mercator, any CRS works) and time;
2. every row is loaded (:func:`georax.catalog.load_raster`), run through the pipeline --
   compiled once per scene *shape*, not once per scene -- and written as a COG, atomically;
3. the corrupt scenes are reported (type and message, in the report and the manifest) while
   every other row is written; the run would stop if more than ``--max-failure-rate`` of the
   rows failed;
4. the "nightly rerun" resumes: rows already done with this pipeline are skipped (their files
   are checked against the manifest's digests), the failed ones are tried again -- and once the
   broken scenes are uploaded again, the third night completes the catalog.

``--executor process`` or ``dask`` runs the same rows on a spawn-only process pool or a local
Dask cluster (127.0.0.1); pointing ``DaskExecutor`` at a scheduler address moves it to a cluster.

Run: ``python examples/02_catalog_etl.py [OUTPUT_DIR] [--n 12] [--size 128] [--executor local]``
(default output folder ``./georax-out/02``). Writes ``catalog/`` (scenes + catalog.parquet),
``02_ndvi_etl.yaml``, ``ndvi/`` (one COG per scene, ``stats.parquet``, ``manifest.jsonl``) and
``02_report.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import geopandas as gpd
from rasterio.warp import transform_bounds

import georax as gx
import georax.data as gd
from georax.catalog import open_catalog
from georax.run import CatalogPipeline, CogWriter, RunReport, make_executor

PIPELINE_YAML = """\
_target_: georax.Sequential
operators:
- {_target_: georax.geo.cloud.MaskClouds}
- {_target_: georax.geo.radiometry.DNToReflectance}
- {_target_: georax.geo.radiometry.DarkObjectSubtraction, percentile: 1.0, clip_negative: true}
- {_target_: georax.geo.indices.NDVI}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Seed case 2: catalog-driven, resumable ETL")
    parser.add_argument("out", nargs="?", default=os.path.join("georax-out", "02"))
    parser.add_argument("--n", type=int, default=12, help="scenes in the demo catalog")
    parser.add_argument("--size", type=int, default=128, help="scene size in pixels")
    parser.add_argument("--executor", choices=("local", "process", "dask"), default="local")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-failure-rate", type=float, default=0.25)
    args = parser.parse_args(argv)
    out = os.path.abspath(args.out)
    for stale in ("catalog", "ndvi", "reupload"):  # a fresh demo each time the example runs
        shutil.rmtree(os.path.join(out, stale), ignore_errors=True)
    os.makedirs(out, exist_ok=True)

    # --- the catalog: N scenes on a grid in UTM 30N, one day apart; two corrupted afterwards
    demo = gd.write_demo_catalog(
        os.path.join(out, "catalog"), args.n, size=[args.size, args.size // 2], corrupt=2
    )
    catalog = open_catalog(demo.catalog)
    print(f"catalog: {catalog}")
    west, south, east, north = catalog.frame.total_bounds
    west_part = (west, south, west + 0.7 * (east - west), north)  # the western 70 %
    box_3857 = transform_bounds("EPSG:4326", "EPSG:3857", *west_part)
    selected = catalog.query(box_3857, bbox_crs="EPSG:3857", time=("2024-06-01", "2024-06-30"))
    print(f"query (bbox given in EPSG:3857, June 2024): {len(selected)} of {len(catalog)} rows")

    # --- the pipeline, from YAML, through the sandboxed loader (what a scheduler would load)
    yaml_path = os.path.join(out, "02_ndvi_etl.yaml")
    with open(yaml_path, "w", encoding="utf-8") as f:
        f.write(PIPELINE_YAML)
    etl = gx.loads_yaml(PIPELINE_YAML, allowed=gx.registry.public_operators())
    print(f"pipeline {gx.config_hash(etl)[:12]}: {etl.display_name}")

    def nightly() -> RunReport:
        return CatalogPipeline(
            selected,
            etl,
            writer=CogWriter(os.path.join(out, "ndvi")),
            executor=make_executor(args.executor, workers=args.workers),
            on_row_error="log_and_continue",
            max_failure_rate=args.max_failure_rate,
        ).run(resume=True, progress=sys.stderr.isatty())

    report = nightly()
    print("\nfirst night:")
    print(report.summary())
    stats = gpd.read_parquet(os.path.join(out, "ndvi", "stats.parquet"))
    print("\nper-scene NDVI statistics (stats.parquet):")
    for row in stats.sort_values("id").itertuples():
        if row.valid_fraction == 0:
            print(f"  {row.id}  no clear pixel (the scene is under a cloud)")
        else:
            print(f"  {row.id}  NDVI mean {row.mean:+.3f}  clear {row.valid_fraction:6.1%}")

    again = nightly()
    print("\nsecond night (resume):")
    print(again.summary())

    # --- the broken uploads are replaced (the same deterministic scenes, written again)
    fixed = gd.write_demo_catalog(
        os.path.join(out, "reupload"), args.n, size=[args.size, args.size // 2]
    )
    for path in demo.corrupt:
        shutil.copyfile(os.path.join(fixed.root, "scenes", os.path.basename(path)), path)
    third = nightly()
    print(f"\nthird night (after re-uploading {len(demo.corrupt)} scenes):")
    print(third.summary())

    with open(os.path.join(out, "02_report.json"), "w", encoding="utf-8") as f:
        reports = {"first": report, "resume": again, "reupload": third}
        json.dump({k: r.to_dict() for k, r in reports.items()}, f, indent=2)
    print(f"\nwrote {out}/ndvi (COGs, stats.parquet, manifest.jsonl) and 02_report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
