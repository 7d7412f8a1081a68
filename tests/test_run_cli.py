"""``georax run`` as a user runs it: a catalog with a corrupt scene, resume, filters, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import georax.data as gd
from _run_support import SEED_CHAIN_YAML, worker_env

ROOT = Path(__file__).resolve().parents[1]


def georax(*args: str, code: int) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "georax.cli", "run", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=worker_env(ROOT),
    )
    assert proc.returncode == code, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[gd.DemoCatalog, Path]:
    root = tmp_path_factory.mktemp("cli")
    demo = gd.write_demo_catalog(root / "demo", 6, size=24, corrupt=[2], format="csv")
    pipeline = root / "ndvi.yaml"
    pipeline.write_text(SEED_CHAIN_YAML)
    return demo, pipeline


def test_run_resume_and_report(setup, tmp_path: Path) -> None:
    demo, pipeline = setup
    out = tmp_path / "out"
    text = georax(
        str(pipeline), "--catalog", demo.catalog, "--out", str(out), "--no-progress", code=3
    )
    assert "5 done, 0 skipped, 1 failed of 6 row(s)" in text
    assert "failed scene_002: CorruptRasterError" in text
    assert len(list(out.glob("*.tif"))) == 5 and (out / "stats.parquet").exists()

    refused = georax(str(pipeline), "--catalog", demo.catalog, "--out", str(out), code=1)
    assert "--resume" in refused

    again = georax(
        str(pipeline),
        "--catalog",
        demo.catalog,
        "--out",
        str(out),
        "--resume",
        "--json",
        "--no-progress",
        code=3,
    )
    report = json.loads(again[again.index("{") :])
    assert (report["done"], report["skipped"], report["failed"]) == (0, 5, 1)
    assert report["errors"][0][:2] == ["scene_002", "CorruptRasterError"]


def test_filters_and_the_process_executor(setup, tmp_path: Path) -> None:
    demo, pipeline = setup
    text = georax(
        str(pipeline),
        "--catalog",
        demo.catalog,
        "--out",
        str(tmp_path),
        "--start",
        "2024-06-04",
        "--executor",
        "process",
        "--workers",
        "2",
        "--no-progress",
        code=0,
    )
    assert "3 done, 0 skipped, 0 failed of 3 row(s)" in text and "process executor" in text
    assert sorted(p.name for p in tmp_path.glob("*.tif")) == [
        "scene_003.tif",
        "scene_004.tif",
        "scene_005.tif",
    ]


def test_errors_exit_1_with_a_message(setup, tmp_path: Path) -> None:
    demo, pipeline = setup
    missing = georax(
        str(tmp_path / "nope.yaml"), "--catalog", demo.catalog, "--out", str(tmp_path), code=1
    )
    assert "no such pipeline file" in missing and "Traceback" not in missing
    bad = tmp_path / "bad.yaml"
    bad.write_text("{_target_: os.system, command: ls}")
    sandboxed = georax(
        str(bad), "--catalog", demo.catalog, "--out", str(tmp_path / "o"), "--sandbox", code=1
    )
    assert "os.system" in sandboxed and "Traceback" not in sandboxed
    nocat = georax(
        str(pipeline), "--catalog", str(tmp_path / "x.parquet"), "--out", str(tmp_path), code=1
    )
    assert "no such catalog" in nocat
    rate = georax(
        str(pipeline),
        "--catalog",
        demo.catalog,
        "--out",
        str(tmp_path / "r"),
        "--max-failure-rate",
        "0.1",
        "--no-progress",
        code=1,
    )
    assert "run aborted" in rate
    usage = georax(
        str(pipeline),
        "--catalog",
        demo.catalog,
        "--out",
        str(tmp_path),
        "--max-failure-rate",
        "nan",
        code=2,
    )
    assert "fraction" in usage
