"""Examples 02 (catalog ETL) and 12 (orchestrator task units) run as a new user runs them."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest

import georax as gx
import georax.io as gio
from georax.catalog import GeoSlice, load_raster
from georax.run import content_key

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _manifest(folder: Path) -> dict[str, dict]:
    lines = (folder / "manifest.jsonl").read_text().splitlines()[1:]
    return {r["row"]: r for r in map(json.loads, lines)}


def test_02_catalog_etl(tmp_path: Path) -> None:
    stdout = run_example("02_catalog_etl.py", str(tmp_path), "--n", "12", "--size", "48")
    assert "query (bbox given in EPSG:3857, June 2024): 9 of 12 rows" in stdout
    assert "7 done, 0 skipped, 2 failed of 9 row(s)" in stdout
    assert "failed scene_004: CorruptRasterError" in stdout
    assert "0 done, 7 skipped, 2 failed of 9 row(s)" in stdout  # resume retries the failures
    assert "2 done, 7 skipped, 0 failed of 9 row(s)" in stdout  # after the re-upload
    report = json.loads((tmp_path / "02_report.json").read_text())
    assert report["first"]["compilations"] == 2  # two scene shapes in the catalog
    assert report["reupload"]["failure_rate"] == 0.0

    ndvi = tmp_path / "ndvi"
    records = _manifest(ndvi)
    assert len(records) == 9 and all(r["status"] == "done" for r in records.values())
    assert {p.name for p in ndvi.glob("*.tif")} == {r["output"] for r in records.values()}
    stats = gpd.read_parquet(ndvi / "stats.parquet")
    assert len(stats) == 9
    # a written scene is the pipeline's result, recomputed here from the catalog's scene
    pipe = gx.loads_yaml((tmp_path / "02_ndvi_etl.yaml").read_text())
    scene = gio.read(tmp_path / "catalog" / "scenes" / "scene_001.tif")
    expected = np.asarray(pipe(scene).values)
    written = gio.read(ndvi / "scene_001.tif")
    np.testing.assert_allclose(np.asarray(written.values), expected, rtol=1e-6, equal_nan=True)
    finite = expected[np.isfinite(expected)]
    assert finite.min() >= -1.0 and finite.max() <= 1.0  # clipped DOS keeps NDVI in range
    assert (
        records["scene_001"]["output_digest"]
        == hashlib.sha256((ndvi / "scene_001.tif").read_bytes()).hexdigest()
    )


@pytest.mark.parametrize("engine", ["prefect", "dask"])
def test_12_orchestrator_tasks(tmp_path: Path, engine: str) -> None:
    prefect_home = tmp_path / "prefect-home"
    stdout = run_example(
        "12_orchestrator_tasks.py",
        str(tmp_path / "out"),
        "--n",
        "6",
        "--size",
        "32",
        "--engine",
        engine,
        env={
            "PREFECT_HOME": str(prefect_home),  # a throwaway local Prefect (ephemeral API)
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            # The ephemeral API server starts in a subprocess; its default 20 s start-up budget
            # is too short on a loaded 2-core machine (seen timing out beside the suite).
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        },
    )
    assert f"engine: {engine}" in stdout
    assert stdout.count("5 done, 1 failed (failure rate 17%); 5 file(s) in outputs/") == 2
    assert stdout.count("retried after a dropped connection: True") == 2
    assert "second flow run wrote the same files (no duplicates): True" in stdout
    assert "scene_003 failed: CorruptRasterError" in stdout

    out = tmp_path / "out"
    results = json.loads((out / "12_results.json").read_text())
    pipe = gx.loads_yaml((out / "12_pipeline.yaml").read_text())
    first = results["runs"][0]["results"][0]
    slice_ = GeoSlice.from_dict(results["slices"][0])
    # the output is named by the content key and holds the pipeline's result for the slice
    assert (
        Path(first["out_uri"]).name == f"{content_key(gx.pipeline_digest(pipe), slice_.hash)}.tif"
    )
    assert first["config_hash"] == gx.config_hash(pipe)
    np.testing.assert_allclose(
        np.asarray(gio.read(first["out_uri"]).values),
        np.asarray(pipe(load_raster(slice_)).values),
        rtol=1e-6,
        equal_nan=True,
    )
    assert sorted(os.listdir(out / "outputs")) == results["runs"][1]["files"]
    assert [p for p in os.listdir(out / "outputs") if not p.endswith(".tif")] == []
