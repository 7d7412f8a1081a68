"""The map page in a real browser: headless Chromium loads /map and shows the layer.

The page is served by an app on 127.0.0.1 (a thread of this test); Chromium loads it, Leaflet
(vendored, no CDN) requests the tiles, and the screenshot's map area is checked by its pixels:
most of the layer's footprint must carry the colormap's colours (viridis), not Leaflet's grey
background. Without CI the test skips, saying why, when Chromium is missing; with ``CI=true`` it
must run.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from _serve_support import services, write_data
from georax.serve import create_app, serve_in_thread

CHROMIUM = "/usr/bin/chromium"
WIDTH, HEIGHT = 800, 600


def _chromium() -> str:
    if os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{CHROMIUM} is missing on CI (.ci/run installs Debian's chromium)")
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium); CI runs this test")
    raise AssertionError  # unreachable


def _screenshot(url: str, out: Path, profile: Path) -> np.ndarray:
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--screenshot={out}",
        f"--window-size={WIDTH},{HEIGHT}",
        "--virtual-time-budget=20000",  # let Leaflet fetch and draw its tiles
        url,
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and out.exists(), proc.stderr[-2000:]
    return np.asarray(Image.open(out).convert("RGB")).astype(np.int32)


def _near(pixels: np.ndarray, colours: np.ndarray, tol: int = 24) -> np.ndarray:
    """Per pixel: whether it lies within `tol` (max abs per channel) of one of `colours`."""
    flat = pixels.reshape(-1, 1, 3)
    return (np.abs(flat - colours[None, :, :]).max(-1) <= tol).any(-1).reshape(pixels.shape[:2])


def test_map_page_shows_the_layer_in_chromium(tmp_path: Path) -> None:
    root = tmp_path / "site"
    write_data(root, 256)
    app = create_app(services(root, 256))
    with serve_in_thread(app) as base:  # a fresh browser profile for each page
        layer_shot = _screenshot(f"{base}/map?layer=ndvi", tmp_path / "map.png", tmp_path / "p1")
        control = "data:text/html,<body style='background:%23ddd'>no layer</body>"
        blank = _screenshot(control, tmp_path / "b.png", tmp_path / "p2")
    viridis = (matplotlib.colormaps["viridis"].resampled(256)(np.arange(256)) * 255)[:, :3]
    map_area = layer_shot[60:-40, 60:-60]  # away from the zoom buttons and attribution
    on_colormap = _near(map_area, viridis.astype(np.int32)[::4])
    grey = _near(map_area, np.array([[221, 221, 221]]), tol=3)
    # fitBounds puts the layer in the middle of the view: a large part of the map area shows it
    assert on_colormap.mean() > 0.25, f"only {on_colormap.mean():.1%} of the map is the layer"
    assert grey.mean() > 0.02  # and Leaflet's background around it
    assert len(np.unique(map_area.reshape(-1, 3), axis=0)) > 50  # an image, not a flat fill
    blank_area = blank[60:-40, 60:-60]
    assert _near(blank_area, viridis.astype(np.int32)[::4]).mean() < 0.01
