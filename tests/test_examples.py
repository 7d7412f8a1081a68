"""The seed-case examples run as a new user would run them (subprocesses, small scenes)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio

import georax.data as gd

SIZE = 128


@pytest.fixture
def run_small(run_example: Callable[..., str]) -> Callable[[str, Path], str]:
    """Run an example writing to ``out`` on a small scene (``run_example`` is in conftest)."""
    return lambda name, out: run_example(name, str(out), "--size", str(SIZE))


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5_000  # a real figure, not an empty canvas


def test_01_notebook_exploration(tmp_path: Path, run_small: Callable[[str, Path], str]) -> None:
    stdout = run_small("01_notebook_exploration.py", tmp_path)
    assert "taps fired: 3" in stdout  # the taps fired inside jax.jit
    assert "second call (no recompile): taps fired 3 more times" in stdout
    assert_png(tmp_path / "01_notebook_stats.png")
    log = json.loads((tmp_path / "01_notebook_stats.json").read_text())
    assert [s["stage"] for s in log] == ["after_mask", "after_correction", "ndvi"]

    # the recorded numbers are the scene's, computed here independently with NumPy
    scene = gd.sentinel2_l1c(SIZE, seed=0)
    v = np.asarray(scene.values)
    cloudy = (v[-1].astype(np.int64) & ((1 << 10) | (1 << 11))) != 0
    after_mask = log[0]
    assert after_mask["bands"] == list(scene.band_names[:-1])
    assert after_mask["nan_fraction"] == pytest.approx(cloudy.mean())
    expected_means = [v[b][~cloudy].astype(np.float64).mean() for b in range(6)]
    np.testing.assert_allclose(after_mask["mean"], expected_means, rtol=1e-6)
    # dark-object subtraction at the 2nd percentile, clipped at 0: p2 of every band is now 0
    np.testing.assert_allclose(log[1]["p2"], 0.0, atol=1e-6)
    ndvi = log[2]
    assert -1.0 <= ndvi["p2"][0] <= ndvi["p98"][0] <= 1.0


def test_11_cross_sensor_fusion(tmp_path: Path, run_small: Callable[[str, Path], str]) -> None:
    stdout = run_small("11_cross_sensor_fusion.py", tmp_path)
    # Graph.summary printed, with both named outputs
    assert "AlignAndStack -> 'fused_stack'" in stdout
    assert "ModelOp[PixelClassifier] -> 'crop_map'" in stdout
    # the target-grid choice is honoured, and said so
    assert "fused_stack on the optical grid: True" in stdout
    assert "crop_map on the optical grid: True" in stdout
    assert re.search(r"fused_stack \(9, 128, 128\)", stdout)
    accuracy = float(re.search(r"accuracy vs the sample world's land cover: ([0-9.]+)", stdout)[1])
    assert accuracy > 0.9

    optical = gd.sentinel2_l1c(SIZE, seed=0)
    with rasterio.open(tmp_path / "11_crop_map.tif") as src:
        crop_map = src.read(1)
        assert src.transform == optical.transform
        assert src.crs.to_epsg() == 32630
        assert src.nodata == -1
    assert crop_map.shape == (SIZE, SIZE)
    assert set(np.unique(crop_map)) <= {-1, 0, 1, 2, 3}
    truth = np.asarray(gd.landcover(SIZE, seed=0, transform=optical.transform).values)
    clear = crop_map >= 0
    assert clear.mean() > 0.5
    assert (crop_map[clear] == truth[clear]).mean() == pytest.approx(accuracy, abs=1e-3)
    assert_png(tmp_path / "11_fusion.png")
