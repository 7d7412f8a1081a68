"""Streaming COG -> COG in strips: equal to the in-memory result, valid COG, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import rasterio
from affine import Affine

import georax as gx
from georax.errors import ConfigError
from georax.patch import (
    Boxcar,
    Hann,
    Max,
    Patcher,
    Patchwise,
    RandomPositions,
    Rectangular,
    RegularStride,
    Triangular,
)
from georax.patch.streaming import stream_patchwise

TRANSFORM = Affine(20.0, 0.0, 300_000.0, 0.0, -20.0, 5_000_000.0)


def _write(path: Path, x: np.ndarray, nodata: float | None = -9999.0) -> None:
    profile = dict(
        driver="GTiff", width=x.shape[2], height=x.shape[1], count=x.shape[0], dtype="float32",
        crs="EPSG:32631", transform=TRANSFORM, nodata=nodata, tiled=True, blockxsize=64,
        blockysize=64,
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(x)


@pytest.mark.parametrize(
    ("patcher", "strip_rows"),
    [
        (Patcher(Rectangular((32, 40)), RegularStride((24, 30)), Hann(), margin=3), 50),
        (Patcher(Rectangular(16), RegularStride(4), Triangular(), padding="constant"), 4),
        (Patcher(Rectangular(20), RegularStride(20), Boxcar(), padding="edge", margin=5), 64),
        (Patcher(Rectangular(24), RegularStride(16), Hann(), Max()), 40),
    ],
    ids=["hann-margin", "small-stride", "tiles-edge", "max"],
)
def test_streaming_equals_in_memory(tmp_path: Path, patcher: Patcher, strip_rows: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 203, 131)).astype(np.float32)
    _write(tmp_path / "in.tif", x)
    op = gx.Lambda(lambda c: jnp.stack([c.sum(0), jnp.tanh(c[1]) * c[0]]))
    pw = Patchwise(patcher, op, batch_size=4)
    out = stream_patchwise(pw, tmp_path / "in.tif", tmp_path / "out.tif", strip_rows=strip_rows)
    with rasterio.open(out) as src:
        y = src.read()
        assert src.transform == TRANSFORM and src.crs.to_string() == "EPSG:32631"
        assert src.nodata == -9999.0 and src.count == 2
    ref = np.asarray(pw(jnp.asarray(x)))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    from rio_cogeo.cogeo import cog_validate

    valid, errors, _ = cog_validate(str(out))
    assert valid, errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "out.tif"]  # no temp left


def test_streamed_cog_has_average_overviews(tmp_path: Path) -> None:
    from rio_cogeo.cogeo import cog_validate

    from georax.io.strips import overview_factors

    assert overview_factors((16384, 16384), 512) == [2, 4, 8, 16, 32]
    assert overview_factors((300, 200), 64) == [2, 4, 8] and overview_factors((64, 64), 64) == []
    x = np.random.default_rng(1).normal(size=(1, 300, 200)).astype(np.float32)
    _write(tmp_path / "in.tif", x)
    pw = Patchwise(Patcher.regular(32, 24, window="hann"), gx.Lambda(lambda c: 2 * c + 1), 4)
    out = stream_patchwise(pw, tmp_path / "in.tif", tmp_path / "out.tif", blocksize=64)
    valid, errors, _ = cog_validate(str(out))
    assert valid, errors
    with rasterio.open(out) as src:
        assert src.overviews(1) == [2, 4, 8]
        full = src.read(1)
    with rasterio.open(out, overview_level=0) as ov:  # the first (2x) overview
        half = ov.read(1)
    # average resampling: each overview pixel is the mean of its 2 x 2 block
    ref = full.reshape(150, 2, 100, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(half, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(full, 2 * x[0] + 1, rtol=1e-5, atol=1e-5)


def test_streaming_refuses_unstreamable_patchers(tmp_path: Path) -> None:
    _write(tmp_path / "in.tif", np.zeros((1, 16, 16), np.float32))
    rnd = Patchwise(Patcher(Rectangular(8), RandomPositions(3)), gx.Identity())
    with pytest.raises(ConfigError, match="RegularStride"):
        stream_patchwise(rnd, tmp_path / "in.tif", tmp_path / "o.tif")
    with pytest.raises(ConfigError, match="strip_rows"):
        stream_patchwise(
            Patchwise(Patcher.regular(8), gx.Identity()), tmp_path / "in.tif", tmp_path / "o.tif",
            strip_rows=0,
        )  # fmt: skip


PEAK = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np, rasterio, jax.numpy as jnp
    from affine import Affine
    import georax as gx
    from georax.patch import Patcher, Patchwise
    from georax.patch.streaming import stream_patchwise
    h, w, src, dst = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    with rasterio.open(src, "w", driver="GTiff", width=w, height=h, count=4, dtype="float32",
                       tiled=True, blockxsize=256, blockysize=256,
                       transform=Affine(1, 0, 0, 0, -1, 0)) as d:
        for r in range(0, h, 256):
            d.write(np.full((4, min(256, h - r), w), r, np.float32),
                    window=rasterio.windows.Window(0, r, w, min(256, h - r)))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pw = Patchwise(Patcher.regular(64, 48, window="hann"), gx.Lambda(lambda c: 2 * c + 1), 8)
    stream_patchwise(pw, src, dst, strip_rows=96, gdal_cache_mb=8)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kb": before, "after_kb": after}))
    """
)


def _peak(tmp_path: Path, h: int, w: int) -> dict[str, int]:
    res = subprocess.run(
        [sys.executable, "-c", PEAK, str(h), str(w), str(tmp_path / f"in{h}.tif"),
         str(tmp_path / f"out{h}.tif")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_streaming_peak_memory_is_bounded_by_strip_not_scene(tmp_path: Path) -> None:
    # Same width, 8x the height: scene bytes grow by 4*(6144-768)*1024*4 = 88 MB in and as much
    # out; peak RSS must not follow (a whole-scene path would add >= 176 MB).
    w = 1024
    small, big = _peak(tmp_path, 768, w), _peak(tmp_path, 6144, w)
    grown_mb = (big["after_kb"] - small["after_kb"]) / 1024
    scene_growth_mb = 4 * (6144 - 768) * w * 4 / 2**20
    assert grown_mb < 0.25 * scene_growth_mb, (small, big)
    with rasterio.open(tmp_path / "out6144.tif") as src:
        row = src.read(1, window=rasterio.windows.Window(0, 6000, w, 1))
    assert np.allclose(row, 2 * (6000 // 256 * 256) + 1)


@pytest.mark.parametrize("cog", [True, False])
def test_failed_stream_leaves_old_output_intact_and_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cog: bool
) -> None:
    """A read failing mid-stream must not leave a half-written raster under the final name."""
    import georax.patch.streaming as streaming

    x = np.random.default_rng(1).normal(size=(2, 120, 64)).astype(np.float32)
    _write(tmp_path / "in.tif", x)
    (tmp_path / "out.tif").write_bytes(b"previous good output")
    real_read = streaming._read_rows
    calls = {"n": 0}

    def flaky_read(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("simulated network drop on the second strip")
        return real_read(*args, **kwargs)

    monkeypatch.setattr(streaming, "_read_rows", flaky_read)
    pw = Patchwise(Patcher(Rectangular(16), RegularStride(16), Boxcar()), gx.Identity())
    with pytest.raises(OSError, match="second strip"):
        stream_patchwise(pw, tmp_path / "in.tif", tmp_path / "out.tif", strip_rows=32, cog=cog)
    assert calls["n"] == 2  # it really failed mid-stream, after writing a strip
    assert (tmp_path / "out.tif").read_bytes() == b"previous good output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "out.tif"]
