"""Catalog queries (bbox in any CRS, time, properties), sampling, random chips and tiles."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import shapely
from rasterio.warp import transform_bounds

import georax.data as gd
import georax.io as gio
from georax.catalog import (
    CatalogQueryError,
    EmptyQueryError,
    GeoSlice,
    load_raster,
    open_catalog,
)

N = 9


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> gd.DemoCatalog:
    return gd.write_demo_catalog(tmp_path_factory.mktemp("query"), N, size=32)


@pytest.fixture(scope="module")
def cat(demo):
    return open_catalog(demo.catalog)


def _rows_under(cat, utm_box) -> set[str]:
    """Rows whose own UTM bounds intersect a UTM box (the truth the queries must match)."""
    box = shapely.box(*utm_box)
    return {r.id for r in cat.iter_rows() if shapely.box(*r.bounds).intersects(box)}


def test_bbox_query_is_the_same_in_any_crs(cat) -> None:
    first = cat.row("scene_000").bounds
    # a box covering the middle of scene_000 and spilling into its right neighbour
    utm = (first[0] + 100, first[1] + 100, first[2] + 60, first[3] - 100)
    expected = _rows_under(cat, utm)
    assert expected == {"scene_000", "scene_001"}
    for crs in ("EPSG:32630", "EPSG:4326", "EPSG:3857"):
        box = utm if crs == "EPSG:32630" else transform_bounds("EPSG:32630", crs, *utm)
        got = set(cat.query(box, bbox_crs=crs).ids)
        # the WGS 84 footprints are the UTM bounds' envelopes: a superset, never fewer rows
        assert expected <= got <= expected | {"scene_003", "scene_004"}, crs
    assert len(cat.query((100.0, 10.0, 101.0, 11.0))) == 0
    with pytest.raises(CatalogQueryError, match="query bbox"):
        cat.query((1.0, 1.0, 0.0, 2.0))


def test_time_query_overlaps_intervals(cat) -> None:
    assert cat.query(time=("2024-06-02", "2024-06-04")).ids == ("scene_001", "scene_002")
    assert cat.query(time="2024-06-03T10:30:00Z").ids == ("scene_002",)
    assert len(cat.query(time=("2023-01-01", "2023-12-31"))) == 0
    with pytest.raises(CatalogQueryError, match="query time"):
        cat.query(time=("2024-06-04", "2024-06-02"))


def test_property_queries(cat) -> None:
    a = cat.query(properties={"platform": "sentinel-2a"})
    assert a.ids == tuple(f"scene_{i:03d}" for i in range(0, N, 2))
    both = cat.query(properties={"platform": ["sentinel-2a", "sentinel-2b"]})
    assert len(both) == N
    cover = np.array([r.properties["cloud_cover"] for r in cat.iter_rows()])
    low = cat.query(properties={"cloud_cover": lambda s: s < np.median(cover)})
    assert len(low) == int((cover < np.median(cover)).sum()) > 0
    combined = cat.query(time=("2024-06-01", "2024-06-05"), properties={"platform": "sentinel-2b"})
    assert combined.ids == ("scene_001", "scene_003")
    with pytest.raises(CatalogQueryError, match="no column 'sensor'"):
        cat.query(properties={"sensor": "x"})
    with pytest.raises(CatalogQueryError, match="one bool per row"):
        cat.query(properties={"cloud_cover": lambda s: 1.0})


def test_sample_is_keyed_and_distinct(cat) -> None:
    a = cat.sample(4, jax.random.key(1))
    assert len(a) == 4 and len(set(a.ids)) == 4 and set(a.ids) <= set(cat.ids)
    assert a.ids == cat.sample(4, jax.random.key(1)).ids
    draws = {cat.sample(4, jax.random.key(k)).ids for k in range(6)}
    assert len(draws) > 1
    assert list(a.ids) == sorted(a.ids)  # catalog order
    with pytest.raises(CatalogQueryError, match="n=10"):
        cat.sample(10, jax.random.key(0))
    with pytest.raises(CatalogQueryError, match="PRNG key"):
        cat.sample(2, 0)


def test_random_chips_lie_inside_their_scene_on_its_grid(cat, demo) -> None:
    chips = list(cat.iter_random_slices(8, 12, jax.random.key(3)))
    assert len(chips) == 12
    assert [c.hash for c in chips] == [
        c.hash for c in cat.iter_random_slices(8, 12, jax.random.key(3))
    ]
    assert len({c.id.split("/")[0] for c in chips}) > 1
    for c in chips:
        scene = cat.slice_of(c.id.split("/")[0])
        assert c.shape == (8, 8) and c.crs == scene.crs and c.resolution == scene.resolution
        col = (c.bounds[0] - scene.bounds[0]) / 10.0
        row = (scene.bounds[3] - c.bounds[3]) / 10.0
        assert col.is_integer() and row.is_integer()
        assert 0 <= col <= 32 - 8 and 0 <= row <= 32 - 8
        whole = np.asarray(gio.read(scene.uri).values)
        r, k = int(row), int(col)
        np.testing.assert_array_equal(
            np.asarray(load_raster(c).values), whole[:, r : r + 8, k : k + 8]
        )
    with pytest.raises(EmptyQueryError):
        next(cat.iter_random_slices(64, 1, jax.random.key(0)))


def test_read_tile_mosaics_the_rows_under_it(cat) -> None:
    a, b = cat.row("scene_000").bounds, cat.row("scene_001").bounds
    utm = (a[0] + 160, a[1] + 80, b[0] + 160, a[3] - 80)  # straddles the two scenes
    tile_box = transform_bounds("EPSG:32630", "EPSG:3857", *utm)
    tile = cat.read_tile(tile_box, 24, "EPSG:3857", bands=["B04", "B08"], resampling="nearest")
    assert tile.shape == (2, 24, 24) and tile.crs == "EPSG:3857"
    assert tile.band_names == ("B04", "B08")
    values = np.asarray(tile.values)
    # every pixel comes from one of the two scenes, as read onto the same grid one by one
    grid = GeoSlice(tile_box, "EPSG:3857", (24, 24), bands=("B04", "B08"))
    parts = [
        np.asarray(load_raster(grid.replace(uri=cat.row(i).uri)).values)
        for i in ("scene_000", "scene_001")
    ]
    expected = np.where(parts[0] != 0, parts[0], parts[1])
    np.testing.assert_array_equal(values, expected)
    assert (parts[0] != 0).any() and (parts[1] != 0).any() and (values != 0).all()
    with pytest.raises(EmptyQueryError, match="no row intersects"):
        cat.read_tile((0.0, 0.0, 1000.0, 1000.0), 16, "EPSG:3857")


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.query(bbox=5),
        lambda c: c.query(bbox=(0.0, 1.0)),
        lambda c: c.query(bbox="0,0,1,1"),
        lambda c: c.query(bbox=(0, 0, 1, 1), bbox_crs="EPSG:0"),
        lambda c: next(c.iter_random_slices((8,), 1, jax.random.key(0))),
        lambda c: next(c.iter_random_slices(0, 1, jax.random.key(0))),
        lambda c: next(c.iter_random_slices(8, 1.5, jax.random.key(0))),
        lambda c: c.read_tile(None, 16),
        lambda c: c.read_tile((0, 0, 1, 1), 0),
        lambda c: c.sample(True, jax.random.key(0)),
    ],
)
def test_hostile_arguments_get_typed_errors(cat, call) -> None:
    with pytest.raises(CatalogQueryError):
        call(cat)
