"""The ``georax`` command: dispatch, help and the demo."""

from __future__ import annotations

import subprocess
import sys

from georax.cli import build_parser, main


def test_help_lists_demo() -> None:
    assert "demo" in build_parser().format_help()


def test_no_command_prints_help_and_fails(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([]) == 2
    assert "usage: georax" in capsys.readouterr().out


def test_console_script_runs_demo(tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run(
        [sys.executable, "-m", "georax.cli", "demo", "--size", "64", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "config hash" in proc.stdout and "run median" in proc.stdout
    for name in ("ndvi.tif", "ndvi.png", "pipeline.yaml", "scene_s2_l1c.tif"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_demo_outputs_are_consistent(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The NDVI COG is NaN wherever QA60 flags clouds, and within [-1, 1] elsewhere.

    Outside clouds NDVI is NaN only where it is undefined: dark-object subtraction (clipped at 0)
    left both red and NIR at exactly 0 (the darkest water pixels).
    """
    import numpy as np

    from georax.data import sentinel2_l1c
    from georax.geo.viz import encode_png
    from georax.io import read

    assert main(["demo", "--size", "96", "--out", str(tmp_path), "--repeats", "1"]) == 0
    ndvi = np.asarray(read(tmp_path / "ndvi.tif").values)[0]
    dn = np.asarray(sentinel2_l1c(96).values)
    cloudy = (dn[-1] & ((1 << 10) | (1 << 11))) != 0
    assert ndvi.shape == (96, 96)
    assert np.isnan(ndvi[cloudy]).all() and 0.0 < cloudy.mean() < 0.5
    undefined = np.isnan(ndvi) & ~cloudy
    assert undefined.mean() < 0.01
    # those pixels are at the darkest 1 % in both red and NIR of the cloud-free scene
    red, nir = (dn[i][~cloudy] for i in (2, 3))
    assert np.all(dn[2][undefined] <= np.percentile(red, 1.0) + 1)
    assert np.all(dn[3][undefined] <= np.percentile(nir, 1.0) + 1)
    assert np.all(np.abs(ndvi[~np.isnan(ndvi)]) <= 1.0)
    png = (tmp_path / "ndvi.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 100
    assert callable(encode_png)
