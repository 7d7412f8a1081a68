"""load_raster: exact windowed reads, boundless edges, WarpedVRT reprojection, typed errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds

import georax.data as gd
import georax.io as gio
from georax.catalog import (
    GeoSlice,
    RasterLoader,
    SliceError,
    SliceTooLargeError,
    load_raster,
)
from georax.io import BandIndexError, CorruptRasterError, RasterNotFoundError


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, np.ndarray, GeoSlice]:
    gt = gd.sentinel2_l1c(64, seed=4)
    path = gio.write_cog(gt, str(tmp_path_factory.mktemp("load") / "s.tif"), blocksize=128)
    s = GeoSlice(tuple(gt.bounds), gt.crs, (64, 64), uri=path, id="s")
    return path, np.asarray(gt.values), s


def _window(s: GeoSlice, r0: int, c0: int, h: int, w: int) -> GeoSlice:
    left, top = s.bounds[0] + 10.0 * c0, s.bounds[3] - 10.0 * r0
    return s.replace(bounds=(left, top - 10.0 * h, left + 10.0 * w, top), shape=(h, w))


def test_aligned_slice_is_an_exact_window(scene) -> None:
    _, values, s = scene
    sub = _window(s, 5, 9, 20, 30)
    gt = load_raster(sub)
    assert gt.shape == (7, 20, 30) and gt.dtype == np.uint16
    np.testing.assert_array_equal(np.asarray(gt.values), values[:, 5:25, 9:39])
    assert gt.transform == sub.transform and gt.crs == "EPSG:32630"
    assert gt.band_names == gd.S2_BANDS and gt.fill_value == 0


def test_slice_leaving_the_raster_is_filled(scene) -> None:
    _, values, s = scene
    edge = _window(s, -4, 50, 16, 24)  # 4 rows above and 10 columns right of the scene
    out = np.asarray(load_raster(edge).values)
    assert out.shape == (7, 16, 24)
    np.testing.assert_array_equal(out[:, 4:, :14], values[:, :12, 50:])
    assert (out[:, :4] == 0).all() and (out[:, :, 14:] == 0).all()
    filled = np.asarray(load_raster(edge, fill_value=7, dtype="float32").values)
    assert (filled[:, :4] == 7).all() and filled.dtype == np.float32


def test_bands_by_name(scene) -> None:
    _, values, s = scene
    gt = load_raster(s.replace(bands=("B08", "B04")))
    np.testing.assert_array_equal(np.asarray(gt.values), values[[3, 2]])
    assert gt.band_names == ("B08", "B04")
    with pytest.raises(BandIndexError, match="no band named"):
        load_raster(s.replace(bands=("B99",)))


def test_other_crs_goes_through_a_warped_vrt(scene) -> None:
    path, _, s = scene
    box = transform_bounds(s.crs, "EPSG:4326", *s.bounds)
    target = GeoSlice(box, "EPSG:4326", (48, 40), bands=("B04",), uri=path)
    gt = load_raster(target)
    assert gt.shape == (1, 48, 40) and gt.crs == "EPSG:4326" and gt.transform == target.transform
    expected = np.zeros((1, 48, 40), np.uint16)
    with rasterio.open(path) as src:
        reproject(
            rasterio.band(src, 3),
            expected,
            dst_transform=target.transform,
            dst_crs="EPSG:4326",
            resampling=Resampling.nearest,
        )
    agree = np.mean(np.asarray(gt.values) == expected)
    assert agree > 0.97  # same GDAL warper; a few edge pixels may round differently


def test_other_resolution_is_resampled(scene) -> None:
    _, values, s = scene
    coarse = s.replace(shape=(32, 32))
    gt = load_raster(coarse, resampling="average", dtype="float32")
    assert gt.shape == (7, 32, 32)
    expected = values[:6].astype(np.float64).reshape(6, 32, 2, 32, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(np.asarray(gt.values)[:6], expected, rtol=1e-3)


def test_read_budget_refuses_before_allocating(scene) -> None:
    _, _, s = scene
    huge = s.replace(shape=(100_000, 100_000))
    with pytest.raises(SliceTooLargeError) as e:
        load_raster(huge)
    assert e.value.required == 7 * 100_000 * 100_000 * 2
    with pytest.raises(SliceTooLargeError):
        load_raster(s, max_bytes=1000)


def test_loading_errors_are_typed(scene, tmp_path: Path) -> None:
    path, _, s = scene
    with pytest.raises(SliceError, match="uri"):
        load_raster(s.replace(uri=None))
    with pytest.raises(RasterNotFoundError):
        load_raster(s.replace(uri=str(tmp_path / "missing.tif")))
    broken = tmp_path / "broken.tif"
    data = Path(path).read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptRasterError, match=r"broken\.tif"):
        load_raster(s.replace(uri=str(broken)))
    with pytest.raises(CorruptRasterError, match=r"broken\.tif"):  # the warped path as well
        load_raster(
            GeoSlice(
                transform_bounds(s.crs, "EPSG:3857", *s.bounds), "EPSG:3857", 16, uri=str(broken)
            )
        )


def test_raster_loader_pickles_and_applies_its_options(scene) -> None:
    _, values, s = scene
    loader = RasterLoader(bands=["B02"], dtype="float32")
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        again = loads(dumps(loader))
        assert again == loader
        gt = again(s)
        assert gt.dtype == np.float32
        np.testing.assert_array_equal(np.asarray(gt.values)[0], values[0].astype(np.float32))
    assert pickle.loads(pickle.dumps(load_raster)) is load_raster
