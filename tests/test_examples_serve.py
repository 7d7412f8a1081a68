"""The serving examples (seed cases 4, 5, 6 over HTTP, 7) run as a new user would run them.

Each example starts its own server process on 127.0.0.1 (LitServe for 04, ``georax serve`` for
the others), talks to it over HTTP and stops it. The tests check what the examples wrote against
the same pipelines computed here, in process, from the same scenes.
"""

from __future__ import annotations

import re
import runpy
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest
import yaml
from PIL import Image

import georax as gx

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _direct(config: str | dict, scene: gx.GeoTensor) -> np.ndarray:
    """The pipeline of `config` run here on `scene` (float32 input, as the servers read it)."""
    text = config if isinstance(config, str) else yaml.safe_dump(config)
    op = gx.loads_yaml(text)
    gt = scene.replace(values=scene.values.astype(np.float32))
    return np.asarray(eqx.filter_jit(lambda g: op(g, key=jax.random.key(0)))(gt).values)


def _assert_same(served: gx.GeoTensor, direct: np.ndarray) -> None:
    """Equal up to float32 reassociation (two compilations of one program), NaN where NaN."""
    scale = float(np.nanmax(np.abs(direct)))
    np.testing.assert_allclose(np.asarray(served.values), direct, rtol=1e-4, atol=1e-5 * scale)


def test_04_litserve_api_batches_and_matches_the_pipeline(
    tmp_path: Path, run_example: Callable[..., str]
) -> None:
    stdout = run_example("04_litserve_api.py", "--out-dir", str(tmp_path), timeout=600)
    assert "malformed request: HTTP 400" in stdout
    assert "path outside data_root: HTTP 403" in stdout
    assert len(set(re.findall(r"config_hash ([0-9a-f]{16})", stdout))) == 1
    batches = [int(b) for b in re.findall(r"batch of (\d+)", stdout)]
    assert len(batches) == 4 and all(1 <= b <= 4 for b in batches)
    pipeline = (tmp_path / "pipeline.yaml").read_text()
    for seed in range(4):
        scene = gx.io.read(tmp_path / "data" / f"s{seed}.tif")
        served = gx.io.read(tmp_path / f"ndvi_s{seed}.tif")
        _assert_same(served, _direct(pipeline, scene))
        assert served.transform == scene.transform


def test_05_fastapi_multi_pipeline_serves_each_pipeline(
    tmp_path: Path, run_example: Callable[..., str]
) -> None:
    stdout = run_example("05_fastapi_multi_pipeline.py", "--out-dir", str(tmp_path), timeout=600)
    # declared shapes compiled before the server was up; the new bounds shape exactly once
    assert "compilations by the uploads: 0" in stdout
    assert "by the bounds request: 1" in stdout
    services = yaml.safe_load((tmp_path / "services.yaml").read_text())
    scene = gx.io.read(tmp_path / "data" / "s2_l1c.tif")
    for name, spec in services["pipelines"].items():
        served = gx.io.read(tmp_path / f"{name}.tif")
        _assert_same(served, _direct(spec["config"], scene))


def test_06_http_upload_refuses_each_attack_and_serves_the_safe_one(
    tmp_path: Path, run_example: Callable[..., str]
) -> None:
    stdout = run_example("06_http_upload.py", "--out-dir", str(tmp_path), timeout=600)
    lines = re.findall(r"^(.+): HTTP (\d{3})\n    (.*)$", stdout, flags=re.M)
    statuses = {label: int(status) for label, status, _ in lines}
    answers = {label: detail for label, _, detail in lines}
    assert statuses == {
        "safe submission": 201,
        "the same again": 200,
        "malicious _target_": 403,
        "python tag": 422,
        "billion laughs": 422,
        "over budget": 422,
        "huge window": 422,
        "typo in a field": 422,
    }
    assert answers["malicious _target_"].startswith("UntrustedTargetError")
    assert answers["over budget"].startswith("BudgetExceededError")
    assert "Traceback" not in stdout
    # the accepted pipeline's output, written under the server's output root, is the pipeline's
    example = runpy.run_path(str(EXAMPLES / "06_http_upload.py"))
    (output,) = (tmp_path / "outputs").rglob("*.tif")
    scene = gx.io.read(tmp_path / "scene.tif")
    _assert_same(gx.io.read(output), _direct(example["SAFE"], scene))


def test_07_tile_server_mosaic_shows_the_layers(
    tmp_path: Path, run_example: Callable[..., str]
) -> None:
    stdout = run_example(
        "07_tile_server.py", "--out-dir", str(tmp_path), "--size", "256", timeout=600
    )
    assert "If-None-Match: 304" in stdout
    assert "same bytes: True" in stdout
    compiles = float(re.search(r"compilations in the server's life: ([0-9.]+)", stdout).group(1))
    assert compiles == 2  # one per layer, at start-up; no tile compiled anything
    mosaics = sorted(tmp_path.glob("*_z*.png"))
    assert {p.name.split("_z")[0] for p in mosaics} == {"ndvi", "true_color"}
    for path in mosaics:
        rgba = np.asarray(Image.open(path).convert("RGBA"))
        alpha = rgba[..., 3]
        assert 0.02 < (alpha > 0).mean() < 1.0  # the scene, and transparent tiles around it
        assert len(np.unique(rgba[alpha > 0].reshape(-1, 4), axis=0)) > 50  # an image
