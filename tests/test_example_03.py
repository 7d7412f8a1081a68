"""Example 03 (seed case 3) runs as a new user would run it, in its short configuration."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio

import georax as gx


def test_03_train_and_infer(tmp_path: Path, run_example: Callable[..., str]) -> None:
    out = run_example("03_train_and_infer.py", str(tmp_path), "--quick", timeout=600)
    # one preprocess object in both paths, checked by the script itself
    assert re.search(r"preprocess config hash \(training == inference\): [0-9a-f]{16}", out)
    assert "compiled once" in out
    assert "loaded in a fresh process through the sandbox: bit-identical output" in out

    # the COG is the mask; its IoU against the held-out truth, computed here, is the printed one
    with rasterio.open(tmp_path / "03_cloud_mask.tif") as src:
        mask = src.read(1)
        assert src.dtypes[0] == "uint8" and src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.nodata is None  # 0 is "clear", not missing
        scene = gx.data.sentinel2_l1c(512, seed=2024)
        assert src.transform == scene.transform and src.crs == scene.crs
    assert set(np.unique(mask)) <= {0, 1}
    truth = np.asarray(gx.data.sentinel2_truth(512, seed=2024).cloud).astype(bool)
    iou = (truth & (mask == 1)).sum() / (truth | (mask == 1)).sum()
    printed = float(re.search(r"held-out cloud IoU: ([0-9.]+)", out).group(1))
    assert abs(iou - printed) < 1e-4
    assert iou > 0.7  # it learned clouds (the full run reaches more; see the example's docstring)

    for png in ("03_cloud_mask.png", "03_learning_curve.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = json.loads((tmp_path / "03_history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3] and history[-1]["step"] == 150
    assert history[-1]["loss"] < history[0]["loss"]
    assert (tmp_path / "03_pipeline" / "pipeline.yaml").exists()
    ckpts = tmp_path / "03_checkpoints" / "steps150-seed0"
    assert sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit()) == [100, 150]
