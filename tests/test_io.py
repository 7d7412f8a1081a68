"""GeoTIFF/COG I/O: round trips checked by independent tools, windows/bounds/bands/boundless,
block iteration, atomic writes and typed errors for bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import transform_bounds
from rio_cogeo.cogeo import cog_validate

import georax as gx
import georax.io as gio
from georax.data import sentinel2_l1c
from georax.errors import GeoraxError, ShapeError
from georax.io import (
    BandIndexError,
    CorruptRasterError,
    CRSMismatchError,
    RasterDTypeError,
    RasterNotFoundError,
    RasterWriteError,
    WindowError,
)
from georax.tensor import GeoTensorRequiredError


@pytest.fixture(scope="module")
def scene() -> gx.GeoTensor:
    return sentinel2_l1c(300, seed=3)


@pytest.fixture(scope="module")
def cog(scene, tmp_path_factory) -> str:
    return gio.write_cog(scene, str(tmp_path_factory.mktemp("io") / "s2.tif"), blocksize=128)


def _np(gt: gx.GeoTensor) -> np.ndarray:
    return np.asarray(gt.values)


# ----------------------------------------------------------------------------- round trips
def test_cog_is_valid_and_readable_by_rasterio(scene, cog) -> None:
    valid, errors, _warnings = cog_validate(cog)
    assert valid, errors
    with rasterio.open(cog) as src:
        assert src.crs.to_epsg() == 32630
        assert src.transform == scene.transform
        assert src.descriptions == scene.band_names
        assert src.nodata == 0
        assert src.overviews(1) == [2, 4]  # 300 px, 128 px tiles: 150, 75
        assert src.is_tiled and src.block_shapes[0] == (128, 128)
        np.testing.assert_array_equal(src.read(), _np(scene))


def test_read_roundtrip_exact(scene, cog) -> None:
    back = gio.read(cog)
    np.testing.assert_array_equal(_np(back), _np(scene))
    assert back.transform == scene.transform
    assert back.crs == "EPSG:32630"
    assert back.band_names == scene.band_names
    assert back.fill_value == 0 and isinstance(back.fill_value, int)
    assert back.dtype == np.uint16


@pytest.mark.parametrize("fill", [np.nan, -9999.0])
def test_gtiff_float_roundtrip_with_overviews(tmp_path, fill) -> None:
    values = np.linspace(0, 1, 2 * 64 * 64, dtype=np.float32).reshape(2, 64, 64)
    values[0, 0, 0] = fill
    gt = gx.GeoTensor(values, Affine(30, 0, 1000, 0, -30, 5000), "EPSG:4326", fill, ("a", "b"))
    path = gio.write(gt, tmp_path / "f.tif", blocksize=16, overviews=[2, 4])
    assert isinstance(path, str)
    back = gio.read(path)
    np.testing.assert_array_equal(_np(back), values)
    assert back.band_names == ("a", "b")
    assert back.fill_value == fill or (np.isnan(fill) and np.isnan(back.fill_value))
    info = gio.info(path)
    assert info.overviews == (2, 4) and info.block_shape == (16, 16)
    assert info.crs == "EPSG:4326" and info.resolution == (30.0, 30.0)
    assert info.compression == "deflate"


def test_write_2d_without_crs(tmp_path) -> None:
    gt = gx.GeoTensor(np.arange(12, dtype=np.int16).reshape(3, 4), Affine(1, 0, 0, 0, -1, 3))
    back = gio.read(gio.write_cog(gt, tmp_path / "plain.tif"))
    assert back.crs is None and back.shape == (1, 3, 4) and back.band_names is None
    np.testing.assert_array_equal(_np(back)[0], _np(gt))


# ----------------------------------------------------------------------------- selections
def test_window_matches_slicing(scene, cog) -> None:
    win = gio.read(cog, window=((10, 40), (5, 70)))
    ref = scene[..., 10:40, 5:70]
    np.testing.assert_array_equal(_np(win), _np(ref))
    assert win.transform == ref.transform
    via_rasterio_window = gio.read(cog, window=rasterio.windows.Window(5, 10, 65, 30))
    np.testing.assert_array_equal(_np(via_rasterio_window), _np(ref))


def test_bands_by_index_and_name(scene, cog) -> None:
    sel = gio.read(cog, bands=["B08", 2, -1])
    assert sel.band_names == ("B08", "B04", "QA60")
    np.testing.assert_array_equal(_np(sel), _np(scene)[[3, 2, 6]])
    one = gio.read(cog, bands=0)
    assert one.shape == (1, 300, 300) and one.band_names == ("B02",)


def test_bounds_same_crs_matches_crop_bounds(scene, cog) -> None:
    left, bottom, _right, top = scene.bounds
    box = (left + 101.0, bottom + 203.0, left + 455.0, top - 99.0)
    got = gio.read(cog, bounds=box)
    ref = scene.crop_bounds(box)
    assert got.transform == ref.transform and got.shape == ref.shape
    np.testing.assert_array_equal(_np(got), _np(ref))


def test_bounds_in_another_crs_cover_the_request(scene, cog) -> None:
    left, bottom, _right, _top = scene.bounds
    utm = (left + 200, bottom + 200, left + 600, bottom + 500)
    lonlat = transform_bounds("EPSG:32630", "EPSG:4326", *utm)
    got = gio.read(cog, bounds=lonlat, bounds_crs="EPSG:4326")
    g = got.bounds
    # the reprojected request is covered, with at most a pixel or two of slack
    assert g.left <= utm[0] and g.bottom <= utm[1] and g.right >= utm[2] and g.top >= utm[3]
    assert g.right - g.left < (utm[2] - utm[0]) + 40
    r0, c0 = scene.index(g.left + 5, g.top - 5)
    np.testing.assert_array_equal(
        _np(got), _np(scene[..., r0 : r0 + got.height, c0 : c0 + got.width])
    )


def test_boundless_read_fills_outside(scene, cog) -> None:
    got = gio.read(cog, window=((-4, 6), (294, 304)), boundless=True, fill_value=7, bands=[0])
    arr = _np(got)[0]
    assert arr.shape == (10, 10)
    assert np.all(arr[:4] == 7) and np.all(arr[:, 6:] == 7)
    np.testing.assert_array_equal(arr[4:, :6], _np(scene)[0, 0:6, 294:300])
    assert got.xy(4, 0) == scene.xy(0, 294)
    assert got.fill_value == 7
    empty = gio.read(cog, window=((400, 410), (0, 5)), boundless=True)
    assert np.all(_np(empty) == 0)  # the file's nodata


def test_iter_blocks_reassemble_the_raster(scene, cog) -> None:
    out = np.zeros(scene.shape, np.uint16)
    n = 0
    for win, block in gio.iter_blocks(cog, block_shape=(128, 150), halo=3):
        n += 1
        core = block[..., 3 : 3 + win.height, 3 : 3 + win.width]
        assert core.transform == scene[..., win.toslices()[0], win.toslices()[1]].transform
        r, c = win.row_off, win.col_off
        out[:, r : r + win.height, c : c + win.width] = _np(core)
        assert block.shape[-2:] == (win.height + 6, win.width + 6)
    assert n == 3 * 2  # ceil(300 / 128) x ceil(300 / 150)
    np.testing.assert_array_equal(out, _np(scene))
    (_first_win, first), *_ = gio.iter_blocks(cog, block_shape=(128, 150), halo=3)
    assert np.all(_np(first)[:, :3, :] == 0)  # halo past the top edge is nodata


def test_iter_blocks_default_shape_follows_tiles(cog) -> None:
    wins = [w for w, _ in gio.iter_blocks(cog)]
    assert (wins[0].height, wins[0].width) == (300, 300)  # 128-px tiles grow to cover 1024


# ----------------------------------------------------------------------------- atomic writes
def test_failed_write_leaves_destination_untouched(scene, tmp_path, monkeypatch) -> None:
    dest = tmp_path / "out.tif"
    gio.write_cog(scene, dest)
    before = dest.read_bytes()

    def crash(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr("georax.io.files.os.replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        gio.write_cog(scene.replace(values=scene.values // 2), dest)
    monkeypatch.undo()
    assert dest.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["out.tif"]  # no temporary left behind


def test_bad_options_are_typed_and_leave_nothing(scene, tmp_path) -> None:
    with pytest.raises(RasterWriteError, match=r"bad.tif: blocksize=100 must be a power of two"):
        gio.write_cog(scene, tmp_path / "bad.tif", blocksize=100)
    with pytest.raises(RasterWriteError, match="unknown compress='bogus'"):
        gio.write_cog(scene, tmp_path / "bad.tif", compress="bogus")
    assert os.listdir(tmp_path) == []


def test_gdal_error_mid_write_is_typed_and_atomic(scene, tmp_path, monkeypatch) -> None:
    dest = tmp_path / "out.tif"
    gio.write(scene, dest)
    before = dest.read_bytes()
    real_open = rasterio.open

    def failing_open(path, mode="r", **kw):
        ds = real_open(path, mode, **kw)
        if mode == "w":

            def write(arr):  # half the bands land on disk, then the "disk" fails
                ds.__class__.write(ds, arr[: len(arr) // 2], list(range(1, len(arr) // 2 + 1)))
                raise rasterio.errors.RasterioIOError("simulated: No space left on device")

            ds.write = write
        return ds

    monkeypatch.setattr("georax.io.raster.rasterio.open", failing_open)
    with pytest.raises(RasterWriteError, match=r"out.tif: GDAL failed to write.*No space left"):
        gio.write(scene, dest)
    monkeypatch.undo()
    assert dest.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["out.tif"]


def test_write_refusals(scene, tmp_path) -> None:
    path = gio.write(scene, tmp_path / "a.tif")
    with pytest.raises(RasterWriteError, match="overwrite=False"):
        gio.write(scene, path, overwrite=False)
    with pytest.raises(RasterWriteError, match="does not exist"):
        gio.write(scene, tmp_path / "missing" / "a.tif")
    with pytest.raises(RasterDTypeError, match=r"cannot store dtype bool.*astype"):
        gio.write(scene.replace(values=scene.values > 5), tmp_path / "b.tif")
    with pytest.raises(RasterDTypeError, match=r"fill_value \(nodata\) -1"):
        gio.write_cog(scene, tmp_path / "c.tif", fill_value=-1)
    with pytest.raises(ShapeError, match="band names"):
        gio.write(scene, tmp_path / "d.tif", band_names=["x"])
    with pytest.raises(GeoTensorRequiredError):
        gio.write(np.zeros((2, 2)), tmp_path / "e.tif")  # type: ignore[arg-type]
    assert sorted(os.listdir(tmp_path)) == ["a.tif"]


# ----------------------------------------------------------------------------- bad input
def test_missing_file(tmp_path) -> None:
    missing = tmp_path / "nope.tif"
    with pytest.raises(RasterNotFoundError, match=r"nope\.tif: no such file") as e:
        gio.read(missing)
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, GeoraxError)


def test_corrupt_and_truncated_files(cog, tmp_path) -> None:
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"this is not a tiff at all" * 10)
    with pytest.raises(CorruptRasterError, match=r"garbage\.tif: not a readable raster"):
        gio.read(garbage)
    truncated = tmp_path / "truncated.tif"
    data = Path(cog).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptRasterError, match=r"truncated\.tif"):
        gio.read(truncated)
    with pytest.raises(CorruptRasterError):
        gio.info(garbage)


def test_band_out_of_range(cog) -> None:
    with pytest.raises(BandIndexError, match=r"s2.tif: band index 7 out of range for 7 band"):
        gio.read(cog, bands=[0, 7])
    with pytest.raises(BandIndexError, match="no band named 'B8A'"):
        gio.read(cog, bands=["B8A"])
    with pytest.raises(IndexError):  # also a builtin IndexError
        gio.read(cog, bands=[-8])


def test_window_outside_raster(cog) -> None:
    with pytest.raises(
        WindowError, match=r"s2.tif: window rows \[290, 310\).*not inside.*boundless"
    ):
        gio.read(cog, window=((290, 310), (0, 10)))
    with pytest.raises(WindowError, match="either window= or bounds="):
        gio.read(cog, window=((0, 1), (0, 1)), bounds=(0, 0, 1, 1))
    with pytest.raises(WindowError, match="not inside"):
        gio.read(cog, bounds=(0.0, 0.0, 10.0, 10.0))
    with pytest.raises(WindowError, match="empty"):
        gio.read(cog, window=((5, 5), (0, 3)))


def test_crs_mismatch(cog, tmp_path) -> None:
    with pytest.raises(CRSMismatchError, match=r"s2.tif: CRS is EPSG:32630, expected EPSG:4326"):
        gio.read(cog, expect_crs="EPSG:4326")
    assert gio.read(cog, expect_crs=rasterio.crs.CRS.from_epsg(32630).to_wkt()).crs == "EPSG:32630"
    nocrs = gio.write(gx.GeoTensor(np.zeros((4, 4), np.uint8)), tmp_path / "nocrs.tif")
    with pytest.raises(CRSMismatchError, match="has no CRS"):
        gio.read(nocrs, bounds=(0, 0, 1, 1), bounds_crs="EPSG:4326")


def test_wrong_dtype_request(cog) -> None:
    with pytest.raises(RasterDTypeError, match="not a NumPy dtype"):
        gio.read(cog, dtype="float99")
    f = gio.read(cog, dtype="float32", window=((0, 2), (0, 2)))
    assert f.dtype == np.float32
    with pytest.raises(RasterDTypeError, match="fill value -5 does not fit"):
        gio.read(cog, window=((-1, 2), (0, 2)), boundless=True, fill_value=-5)


# ----------------------------------------------------------------------------- strip writer
def _strips(path, **kw):
    t = Affine(10, 0, 0, 0, -10, 0)
    return gio.strip_writer(path, width=32, height=40, crs="EPSG:32631", transform=t, **kw)


@pytest.mark.parametrize("cog", [True, False])
def test_strip_writer_commits_strips_in_any_order(tmp_path, cog) -> None:
    x = np.arange(2 * 40 * 32, dtype=np.float32).reshape(2, 40, 32)
    with _strips(tmp_path / "s.tif", cog=cog, blocksize=16, fill_value=-1.0) as out:
        out.write(x[:, 24:], 24)
        out.write(x[:, :24], 0)
        assert not (tmp_path / "s.tif").exists()  # nothing under the final name yet
    back = gio.read(tmp_path / "s.tif")
    np.testing.assert_array_equal(np.asarray(back.values), x)
    assert back.fill_value == -1.0 and back.crs == "EPSG:32631"
    if cog:
        assert cog_validate(str(tmp_path / "s.tif"))[0]
    else:
        assert gio.info(tmp_path / "s.tif").block_shape == (16, 16)
    assert sorted(os.listdir(tmp_path)) == ["s.tif"]


def test_strip_writer_refuses_gaps_and_mismatched_strips(tmp_path) -> None:
    (tmp_path / "s.tif").write_bytes(b"old")
    with (
        pytest.raises(RasterWriteError, match=r"rows \[\(10, 40\)\] were never written"),
        _strips(tmp_path / "s.tif") as out,
    ):
        out.write(np.zeros((1, 10, 32), np.float32), 0)
    with (
        pytest.raises(ShapeError, match="earlier strips had 1"),
        _strips(tmp_path / "s.tif") as out,
    ):
        out.write(np.zeros((1, 10, 32), np.float32), 0)
        out.write(np.zeros((2, 10, 32), np.float32), 10)
    with (
        pytest.raises(ShapeError, match=r"rows \[35, 45\) are outside"),
        _strips(tmp_path / "s.tif") as out,
    ):
        out.write(np.zeros((1, 10, 32), np.float32), 35)
    with (
        pytest.raises(ShapeError, match=r"must be \(band, rows, 32\)"),
        _strips(tmp_path / "s.tif") as out,
    ):
        out.write(np.zeros((1, 10, 31), np.float32), 0)
    with (
        pytest.raises(RasterDTypeError, match="cannot store dtype bool"),
        _strips(tmp_path / "s.tif") as out,
    ):
        out.write(np.zeros((1, 10, 32), bool), 0)
    with (
        pytest.raises(RasterWriteError, match="height must be a positive integer"),
        gio.strip_writer(tmp_path / "s.tif", width=3, height=0, crs=None, transform=None),
    ):
        pass
    assert (tmp_path / "s.tif").read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["s.tif"]


def test_read_budget_error_pickles() -> None:
    import pickle

    err = gio.ReadBudgetExceededError("a.tif", 10, 5, "reading")
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.required, back.budget, back.stage) == ("a.tif", 10, 5, "read")
    assert str(back) == str(err)
