"""examples/14_differentiable_retrieval.py run as a new user would (a subprocess, a small scene),
its outputs checked against the scene regenerated here and an independent NumPy matched filter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

import georax.data as gd
from test_retrieval import matched_filter_numpy

ROOT = Path(__file__).resolve().parents[1]
SIZE, SEED, STEPS = 96, 1, 150


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("ex14")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "14_differentiable_retrieval.py"),
            str(out),
            *("--size", str(SIZE), "--seed", str(SEED), "--steps", str(STEPS), "--chip", "32"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc.stdout


def test_retrieval_beats_the_matched_filter_on_the_same_scene(run: tuple[Path, str]) -> None:
    out, stdout = run
    summary = json.loads((out / "14_summary.json").read_text())
    assert summary["rmse_retrieval"] < summary["rmse_matched_filter"]
    assert "retrieval beats the matched filter" in stdout
    assert "9 chips per step" in stdout  # 96 / 32 = 3 x 3: the scene is larger than one chip

    # the matched-filter score is the scene's: recomputed here with NumPy from the same seed
    scene = gd.plume_scene(SIZE, seed=SEED)
    truth = np.asarray(scene.enhancement.values[0], np.float64)
    mf = matched_filter_numpy(
        np.asarray(scene.reflectance.values), scene.absorption, scene.air_mass_factor, 1e-3
    )
    assert summary["rmse_matched_filter"] == pytest.approx(
        float(np.sqrt(np.mean((mf - truth) ** 2))), rel=1e-3
    )

    # the retrieved map on disk is georeferenced like the scene and scores what was reported
    with rasterio.open(out / "14_enhancement.tif") as src:
        retrieved = src.read(1)
        assert src.transform == scene.reflectance.transform
        assert src.crs.to_epsg() == 32613
        assert src.descriptions == ("enhancement",)
    assert retrieved.shape == (SIZE, SIZE)
    rmse = float(np.sqrt(np.mean((retrieved.astype(np.float64) - truth) ** 2)))
    assert summary["rmse_retrieval"] == pytest.approx(rmse, rel=1e-4)


def test_loss_curve_is_saved_and_converges(run: tuple[Path, str]) -> None:
    out, _ = run
    rows = (out / "14_loss.csv").read_text().splitlines()
    assert rows[0] == "step,loss"
    steps, losses = np.loadtxt(rows[1:], delimiter=",", unpack=True)
    np.testing.assert_array_equal(steps, np.arange(STEPS + 1))
    summary = json.loads((out / "14_summary.json").read_text())
    assert losses[0] == pytest.approx(summary["initial_loss"], rel=1e-6)
    assert losses[-1] == pytest.approx(summary["final_loss"], rel=1e-6)
    assert losses[-1] < 0.9 * losses[0]
    tail = losses[-25:]
    assert tail.max() - tail.min() < 1e-4 * losses[-1]  # flat: converged


def test_figure_is_written(run: tuple[Path, str]) -> None:
    out, _ = run
    png = out / "14_retrieval.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000  # four panels, not an empty canvas
