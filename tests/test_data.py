"""Synthetic sample scenes: determinism, physical plausibility, QA60 consistency, grids."""

from __future__ import annotations

import math

import numpy as np
import pytest
from affine import Affine
from pyproj import Transformer
from rio_cogeo.cogeo import cog_validate

import georax.data as gd
import georax.io as gio
from georax.errors import ConfigError

OPAQUE = 1 << gd.QA60_OPAQUE_BIT
CIRRUS = 1 << gd.QA60_CIRRUS_BIT


@pytest.fixture(scope="module")
def s2() -> np.ndarray:
    return np.asarray(gd.sentinel2_l1c(256, seed=1, cloud_cover=0.25).values)


@pytest.fixture(scope="module")
def truth() -> gd.S2Truth:
    return gd.sentinel2_truth(256, seed=1, cloud_cover=0.25)


def test_s2_metadata() -> None:
    gt = gd.sentinel2_l1c((40, 60))
    assert gt.shape == (7, 40, 60) and gt.dtype == np.uint16
    assert gt.band_names == gd.S2_BANDS == ("B02", "B03", "B04", "B08", "B11", "B12", "QA60")
    assert gt.crs == "EPSG:32630" and gt.resolution == (10.0, 10.0)
    assert (gt.transform.c, gt.transform.f) == gd.DEFAULT_ORIGIN
    assert gt.fill_value == 0 and int(np.asarray(gt.values)[:6].min()) >= 1


def test_deterministic_and_seeded() -> None:
    a = np.asarray(gd.sentinel2_l1c(64, seed=7).values)
    b = np.asarray(gd.sentinel2_l1c(64, seed=7).values)
    c = np.asarray(gd.sentinel2_l1c(64, seed=8).values)
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != c) > 0.5
    s1a, s1b = gd.sentinel1_grd(32, seed=7), gd.sentinel1_grd(32, seed=7)
    np.testing.assert_array_equal(np.asarray(s1a.values), np.asarray(s1b.values))


def test_qa60_bits_match_the_clouds(s2, truth) -> None:
    qa = s2[6]
    assert set(np.unique(qa)) <= {0, OPAQUE, CIRRUS}
    np.testing.assert_array_equal((qa & OPAQUE) > 0, truth.cloud)
    np.testing.assert_array_equal((qa & CIRRUS) > 0, truth.cirrus)
    assert not np.any(truth.cloud & truth.cirrus)
    assert 0.05 < truth.cloud.mean() < 0.6  # requested 0.25 on average over worlds
    # opaque cloud is bright and flat across the VNIR; the clear surface is much darker in blue
    clear = ~truth.cloud & ~truth.cirrus & ~truth.shadow
    thick = truth.cloud_opacity > 0.9
    assert thick.sum() > 100
    assert np.median(s2[0][thick]) > 3500 > 2 * np.median(s2[0][clear])
    assert np.median(s2[0][truth.cloud]) > np.median(s2[0][clear])


def _clear_class(s2, truth, code) -> np.ndarray:
    mask = (truth.landcover == code) & ~truth.cloud & ~truth.cirrus & ~truth.shadow
    assert mask.sum() > 50, f"class {code} too rare in the test scene"
    return s2[:, mask].astype(np.float64) / 10_000


def test_reflectance_is_plausible_per_land_cover(s2, truth) -> None:
    b03, b04, b08, b11, b12 = 1, 2, 3, 4, 5
    water = _clear_class(s2, truth, 0)
    veg = _clear_class(s2, truth, 1)
    soil = _clear_class(s2, truth, 2)
    ndvi = (veg[b08] - veg[b04]) / (veg[b08] + veg[b04])
    assert np.median(ndvi) > 0.6  # red edge
    ndwi = (water[b03] - water[b08]) / (water[b03] + water[b08])
    assert np.median(ndwi) > 0.3 and np.median(water[b08]) < 0.05  # dark NIR water
    assert np.median(soil[b11]) > np.median(soil[b08]) > np.median(soil[b04])  # rising to SWIR
    soil_ndvi = (soil[b08] - soil[b04]) / (soil[b08] + soil[b04])
    assert np.median(soil_ndvi) < 0.3
    assert np.all(np.median(water, axis=1)[[b11, b12]] < 0.02)


def test_shadows_darken_the_surface(s2, truth) -> None:
    assert truth.shadow.sum() > 100
    veg_shadow = (truth.landcover == 1) & truth.shadow
    veg_clear = (truth.landcover == 1) & ~truth.shadow & ~truth.cloud & ~truth.cirrus
    assert np.median(s2[3][veg_shadow]) < 0.8 * np.median(s2[3][veg_clear])


def test_fusion_grids_differ_but_overlap() -> None:
    scenes = gd.fusion_scenes(128, seed=2)
    s2, s1, z = scenes["s2"], scenes["s1"], scenes["dem"]
    assert (s1.resolution, z.resolution) == ((20.0, 20.0), (30.0, 30.0))
    assert s1.band_names == ("VV", "VH") and s1.dtype == np.float32
    assert z.band_names == ("elevation",)
    for other in (s1, z):
        # origins are not on the optical 10 m lattice, so nothing aligns by accident
        assert (other.transform.c - s2.transform.c) % 10 != 0
        b, o = s2.bounds, other.bounds
        assert o.left < b.left and o.bottom < b.bottom and o.right > b.right and o.top > b.top


def test_same_world_on_every_grid() -> None:
    """Land cover and elevation are functions of position: grids agree where they overlap."""
    lc10 = gd.landcover(100, seed=4)
    lc20 = gd.landcover(50, seed=4, transform=Affine(20, 0, 399_965.0, 0, -20, 4_600_015.0))
    # the centre of 20 m pixel (r, c) equals the shared corner of 10 m pixels; the 10 m pixel
    # centred on it exactly: shift origin by 5 m so centres coincide for (2r, 2c)
    lc10s = gd.landcover(100, seed=4, transform=Affine(10, 0, 399_970.0, 0, -10, 4_600_010.0))
    np.testing.assert_array_equal(np.asarray(lc20.values), np.asarray(lc10s.values)[::2, ::2])
    assert np.mean(np.asarray(lc10.values)[::2, ::2] == np.asarray(lc20.values)) > 0.9

    # elevation: a 1-pixel UTM DEM and a 1-pixel geographic DEM centred on the same point
    x, y = 401_234.0, 4_597_654.0
    lon, lat = Transformer.from_crs("EPSG:32630", "EPSG:4326", always_xy=True).transform(x, y)
    utm = gd.dem(1, seed=4, resolution=30.0, origin=(x - 15, y + 15))
    d = 1 / 3600
    geo = gd.dem(1, seed=4, crs="EPSG:4326", origin=(lon - d / 2, lat + d / 2))
    assert geo.crs == "EPSG:4326" and math.isclose(geo.resolution[0], d)
    assert abs(float(utm.values[0, 0, 0]) - float(geo.values[0, 0, 0])) < 0.05


def test_s1_backscatter_and_speckle() -> None:
    clean = np.asarray(gd.sentinel1_grd(128, seed=3, looks=math.inf).values)
    noisy = np.asarray(gd.sentinel1_grd(128, seed=3).values)
    assert np.all(clean > 0) and np.all(noisy > 0)
    assert np.mean(clean[0]) > 3 * np.mean(clean[1])  # VV above VH
    ratio = noisy / clean
    assert abs(ratio.mean() - 1.0) < 0.02
    assert abs(ratio.var() - 1 / 4.4) < 0.02  # unit-mean Gamma(L, 1/L): variance 1/L
    lc = np.asarray(
        gd.landcover(128, seed=3, transform=gd.sentinel1_grd(1, seed=3).transform).values
    )
    vv_db = 10 * np.log10(clean[0])
    assert np.median(vv_db[lc == 0]) < np.median(vv_db[lc == 1]) - 5  # water is dark


def test_write_sample_cogs(tmp_path) -> None:
    paths = gd.write_sample_cogs(tmp_path, size=64, seed=0)
    assert set(paths) == {"s2", "s1", "dem"}
    for key, path in paths.items():
        assert cog_validate(path)[0], path
        gt = gio.read(path)
        assert gt.band_names == {"s2": gd.S2_BANDS, "s1": gd.S1_BANDS, "dem": ("elevation",)}[key]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: gd.sentinel2_l1c(0), "size"),
        (lambda: gd.sentinel2_l1c(True), "size"),
        (lambda: gd.sentinel2_l1c("big"), "size"),
        (lambda: gd.sentinel2_l1c(10**6), "size"),  # ~119 TiB: refused before allocating
        (lambda: gd.landcover((1, 10**11)), "size"),
        (lambda: gd.sentinel2_l1c(8, cloud_cover=1.5), "cloud_cover"),
        (lambda: gd.sentinel1_grd(8, looks=0), "looks"),
        (lambda: gd.dem(8, crs="EPSG:999999"), "crs"),
    ],
)
def test_bad_arguments_name_the_field(call, field) -> None:
    with pytest.raises(ConfigError, match=field):
        call()
