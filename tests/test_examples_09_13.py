"""Examples 09 (regulatory artifact) and 13 (pipeline A/B) run as a new user runs them."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import georax as gx
import georax.data as gd
from georax.repro import load

ROOT = Path(__file__).resolve().parents[1]
SIZE = 96


def run_example(name: str, *args: str, code: int = 0) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == code, proc.stdout + proc.stderr
    return proc.stdout


def test_09_regulatory_artifact(tmp_path: Path) -> None:
    stdout = run_example("09_regulatory_artifact.py", str(tmp_path), "--size", str(SIZE))
    assert stdout.count(": refused -> artifact member") == 2
    assert "tampered inputs/000.tif: refused" in stdout
    assert "tampered pipeline/pipeline.yaml: refused" in stdout
    assert "rerun in a fresh process: bit-exact" in stdout
    digest = stdout.split("publish digest ")[1].split()[0]
    art = load(tmp_path / "09_artifact.gxa", expected_digest=digest)
    scene = (tmp_path / "09_scene.tif").read_bytes()
    assert art.inputs[0]["sha256"] == hashlib.sha256(scene).hexdigest()
    assert art.metadata["doi"] == "10.xxxx/mars-2024Q3"
    rerun = json.loads((tmp_path / "09_rerun.json").read_text())
    assert rerun["status"] == "bit-exact" and rerun["outputs"][0]["key"] == "scene"
    assert not (tmp_path / "09_tampered.gxa").exists()


def test_13_pipeline_ab(tmp_path: Path) -> None:
    n = 8
    stdout = run_example("13_pipeline_ab.py", str(tmp_path), "--size", str(SIZE), "--n", str(n))
    assert "+ operators[3] LeeSpeckle (added after DarkObjectSubtraction, before NDVI)" in stdout
    assert "~ operators[2].percentile (DarkObjectSubtraction): 1.0 -> 2.0" in stdout
    diff = json.loads((tmp_path / "13_config_diff.json").read_text())
    assert diff["counts"] == {"changed": 1, "added": 1}
    report = json.loads((tmp_path / "13_ab_report.json").read_text())
    assert report["n"] == n and report["compilations"] == 1
    rmse = np.array([row["rmse"] for row in report["per_input"]])
    assert report["stats"]["rmse"]["p99"] == pytest.approx(np.quantile(rmse, 0.99))
    assert report["worst"]["rmse"][0][1] == pytest.approx(rmse.max())
    png = (tmp_path / "13_ab_histogram.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    assert "gate:" in stdout

    # the per-scene number is the real one: recompute scene_000 with NumPy
    old = gx.loads_yaml((tmp_path / "13_old.yaml").read_text())
    new = gx.loads_yaml((tmp_path / "13_new.yaml").read_text())
    scene = gd.sentinel2_l1c(SIZE, seed=0, cloud_cover=0.1)
    a, b = np.asarray(old(scene).values), np.asarray(new(scene).values)
    ok = np.isfinite(a) & np.isfinite(b)
    expected = np.sqrt(np.mean((a[ok].astype(np.float64) - b[ok]) ** 2))
    assert report["per_input"][0]["id"] == "scene_000"
    assert report["per_input"][0]["rmse"] == pytest.approx(expected, rel=1e-4)

    # as a CI step: --strict exits 3 on a failed gate, 0 on a generous one
    run_example(
        "13_pipeline_ab.py",
        str(tmp_path),
        "--size",
        "48",
        "--n",
        "4",
        "--max-p99",
        "1e-9",
        "--strict",
        code=3,
    )
    run_example(
        "13_pipeline_ab.py",
        str(tmp_path),
        "--size",
        "48",
        "--n",
        "4",
        "--max-p99",
        "10",
        "--allow-bimodal",
        "--strict",
        code=0,
    )
