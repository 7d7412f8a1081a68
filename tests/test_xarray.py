"""xarray interop, checked against rioxarray reading the same files."""

from __future__ import annotations

import numpy as np
import pytest
import rioxarray
import xarray as xr
from affine import Affine

import georax as gx
import georax.io as gio
from georax.data import sentinel2_l1c
from georax.errors import DataError, ShapeError
from georax.tensor.buffers import aligned_empty


@pytest.fixture(scope="module")
def scene() -> gx.GeoTensor:
    return sentinel2_l1c(64, seed=5)


@pytest.fixture(scope="module")
def path(scene, tmp_path_factory) -> str:
    return gio.write_cog(scene, str(tmp_path_factory.mktemp("xr") / "s2.tif"))


def test_to_xarray_matches_rioxarray_open(scene, path) -> None:
    ours = gio.to_xarray(scene, name="s2")
    theirs = rioxarray.open_rasterio(path)
    assert ours.dims == theirs.dims == ("band", "y", "x")
    for coord in ("x", "y", "band"):
        np.testing.assert_allclose(ours[coord].values, theirs[coord].values)
    assert ours.rio.crs == theirs.rio.crs
    assert ours.rio.crs.to_epsg() == 32630
    assert ours.rio.transform() == theirs.rio.transform() == scene.transform
    assert ours.rio.nodata == theirs.rio.nodata == 0
    assert tuple(ours.attrs["long_name"]) == tuple(theirs.attrs["long_name"]) == scene.band_names
    np.testing.assert_array_equal(ours.values, theirs.values)
    assert ours.name == "s2"


def test_from_xarray_of_rioxarray_equals_read(scene, path) -> None:
    from_rio = gio.from_xarray(rioxarray.open_rasterio(path))
    direct = gio.read(path)
    np.testing.assert_array_equal(np.asarray(from_rio.values), np.asarray(direct.values))
    assert from_rio.transform == direct.transform
    assert from_rio.crs == direct.crs == "EPSG:32630"
    assert from_rio.band_names == direct.band_names == scene.band_names
    assert from_rio.fill_value == 0


def test_roundtrip_is_zero_copy(scene) -> None:
    da = gio.to_xarray(scene)
    assert np.shares_memory(da.values, np.asarray(scene.values))
    assert not da.values.flags.writeable  # a view of an immutable JAX buffer
    back = gio.from_xarray(da)
    assert back.values is scene.values  # the JAX array itself comes back: no copy
    assert back.transform == scene.transform and back.band_names == scene.band_names


def test_from_xarray_adopts_aligned_numpy_without_copy() -> None:
    buf = aligned_empty((2, 8, 16), np.float32)
    buf[...] = np.arange(buf.size, dtype=np.float32).reshape(buf.shape)
    da = xr.DataArray(
        buf,
        dims=("band", "y", "x"),
        coords={"x": 100.0 + 5 * np.arange(16) + 2.5, "y": 900.0 - 5 * np.arange(8) - 2.5},
    )
    gt = gio.from_xarray(da)
    assert np.shares_memory(np.asarray(gt.values), buf)
    assert gt.transform == Affine(5.0, 0.0, 100.0, 0.0, -5.0, 900.0)
    assert gt.crs is None and gt.band_names is None
    copied = gio.from_xarray(da, copy=True)
    assert not np.shares_memory(np.asarray(copied.values), buf)
    np.testing.assert_array_equal(np.asarray(copied.values), buf)


def test_rioxarray_written_crs_and_subsets(scene) -> None:
    da = gio.to_xarray(scene)
    sub = da.isel(x=slice(10, 30), y=slice(5, 25))
    gt = gio.from_xarray(sub)
    ref = scene[..., 5:25, 10:30]
    assert gt.transform == ref.transform
    np.testing.assert_array_equal(np.asarray(gt.values), np.asarray(ref.values))
    # a DataArray that only rioxarray annotated (no GeoTransform attribute, CRS via write_crs)
    bare = xr.DataArray(
        np.asarray(ref.values),
        dims=("band", "y", "x"),
        coords={"x": ref.x_coords, "y": ref.y_coords},
    )
    annotated = bare.rio.write_crs("EPSG:32630")
    back = gio.from_xarray(annotated)
    assert back.crs == "EPSG:32630" and back.transform == ref.transform


def test_rioxarray_to_raster_of_our_dataarray(scene, tmp_path) -> None:
    out = tmp_path / "via_rio.tif"
    gio.to_xarray(scene).rio.to_raster(out)
    back = gio.read(out)
    assert back.transform == scene.transform and back.crs == "EPSG:32630"
    np.testing.assert_array_equal(np.asarray(back.values), np.asarray(scene.values))


def test_two_and_four_dimensional() -> None:
    t = Affine(2, 0, 0, 0, -2, 10)
    flat = gx.GeoTensor(np.ones((5, 4), np.float32), t, "EPSG:4326", np.nan)
    da = gio.to_xarray(flat)
    assert da.dims == ("y", "x") and np.isnan(da.attrs["_FillValue"])
    back = gio.from_xarray(da)
    assert back.shape == (5, 4) and back.crs == "EPSG:4326" and np.isnan(back.fill_value)
    stack = gx.GeoTensor(np.zeros((3, 2, 5, 4), np.float32), t, "EPSG:4326")
    da4 = gio.to_xarray(stack)
    assert da4.dims == ("dim_0", "band", "y", "x")
    assert gio.from_xarray(da4).shape == (3, 2, 5, 4)


def test_string_band_coordinate_gives_names() -> None:
    da = xr.DataArray(
        np.zeros((2, 3, 3)),
        dims=("band", "y", "x"),
        coords={"band": ["VV", "VH"], "x": [0.5, 1.5, 2.5], "y": [2.5, 1.5, 0.5]},
    )
    assert gio.from_xarray(da).band_names == ("VV", "VH")


def test_bad_dataarrays_are_refused() -> None:
    ok = {"x": [0.5, 1.5, 2.5], "y": [2.5, 1.5, 0.5]}
    with pytest.raises(ShapeError, match="needs 'y' and 'x' dims"):
        gio.from_xarray(xr.DataArray(np.zeros((3, 3)), dims=("a", "b")))
    with pytest.raises(ShapeError, match="transpose first"):
        gio.from_xarray(xr.DataArray(np.zeros((3, 3, 2)), dims=("y", "x", "band"), coords=ok))
    with pytest.raises(DataError, match="not evenly spaced"):
        gio.from_xarray(
            xr.DataArray(
                np.zeros((3, 3)), dims=("y", "x"), coords={"x": [0, 1, 5], "y": [2.5, 1.5, 0.5]}
            )
        )
    with pytest.raises(DataError, match="single x or y"):
        gio.from_xarray(
            xr.DataArray(
                np.zeros((1, 3)), dims=("y", "x"), coords={"x": [0.5, 1.5, 2.5], "y": [0.5]}
            )
        )
    with pytest.raises(ShapeError, match="unrotated"):
        gio.to_xarray(gx.GeoTensor(np.zeros((3, 3)), Affine(1, 0.5, 0, 0.5, -1, 0)))
