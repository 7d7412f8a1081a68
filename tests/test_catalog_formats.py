"""open_catalog: GeoParquet, CSV, STAC (ItemCollection and static catalog), folders of COGs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pystac
import pytest
import rasterio
import shapely

import georax.data as gd
import georax.io as gio
from georax.catalog import (
    Catalog,
    CatalogFormatError,
    CatalogNotFoundError,
    load_raster,
    open_catalog,
)
from georax.io import CorruptRasterError

N = 5


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, gd.DemoCatalog]:
    root = tmp_path_factory.mktemp("formats")
    return {
        fmt: gd.write_demo_catalog(root / fmt, N, size=[24, 32], corrupt=[3], format=fmt)
        for fmt in gd.catalog.CATALOG_FORMATS
    }


def test_every_format_gives_the_same_rows_and_slices(demos) -> None:
    slices = {}
    for fmt, demo in demos.items():
        cat = open_catalog(demo.catalog)
        assert isinstance(cat, Catalog) and cat.crs == "EPSG:4326"
        assert cat.ids == demo.ids
        slices[fmt] = [cat.slice_of(r) for r in cat.iter_rows()]
    ref = slices["parquet"]
    assert [s.uri for s in ref] == list(demos["parquet"].scenes)  # relative paths resolved
    assert [s.shape for s in ref] == [(24, 24), (32, 32), (24, 24), (32, 32), (24, 24)]
    assert ref[1].time == ("2024-06-02T10:30:00Z",) * 2
    for fmt in ("csv", "stac"):
        # same grid, time, bands; only the folder differs (its own copy of the scenes)
        same = [s.replace(uri=r.uri) for s, r in zip(slices[fmt], ref, strict=True)]
        assert [s.hash for s in same] == [s.hash for s in ref], fmt
    folder = slices["folder"]  # read from the headers: no time in the files
    assert [s.replace(time=r.time, uri=r.uri).hash for s, r in zip(folder, ref, strict=True)] == [
        s.hash for s in ref
    ]
    assert all(s.time is None for s in folder)


def test_properties_and_row_fields(demos) -> None:
    cat = open_catalog(demos["parquet"].catalog)
    assert cat.properties == ("platform", "cloud_cover")
    row = cat.row("scene_001")
    assert row.properties["platform"] == "sentinel-2b"
    assert 0.0 <= row.properties["cloud_cover"] <= 1.0
    assert row.crs == "EPSG:32630" and row.shape == (32, 32)
    assert row.bands == gd.S2_BANDS
    assert row.geometry.bounds[0] < row.geometry.bounds[2]
    stac = open_catalog(demos["stac"].catalog)
    assert stac.row("scene_001").properties["eo:cloud_cover"] == pytest.approx(
        100 * row.properties["cloud_cover"]
    )


def test_a_moved_catalog_still_finds_its_scenes(demos, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(demos["csv"].root, moved)
    cat = open_catalog(moved / "catalog.csv")
    s = cat.slice_of("scene_000")
    assert s.uri == str(moved / "scenes" / "scene_000.tif")
    np.testing.assert_array_equal(
        np.asarray(load_raster(s).values), np.asarray(gio.read(demos["csv"].scenes[0]).values)
    )


def test_static_stac_catalog_folder(demos, tmp_path: Path) -> None:
    items = json.loads(Path(demos["stac"].catalog).read_text())["features"]
    root = pystac.Catalog("demo", "a static catalog")
    for d in items:
        item = pystac.Item.from_dict(d)
        href = Path(demos["stac"].root) / d["assets"]["data"]["href"]
        item.assets["data"].href = str(href)
        root.add_item(item)
    root.normalize_hrefs(str(tmp_path / "stac"))
    root.save(pystac.CatalogType.SELF_CONTAINED)
    cat = open_catalog(tmp_path / "stac")  # a folder holding catalog.json
    assert sorted(cat.ids) == list(demos["stac"].ids)
    assert cat.slice_of("scene_002").shape == (24, 24)


def test_csv_with_bounds_columns_and_a_crs(tmp_path: Path, demos) -> None:
    scene = demos["parquet"].scenes[0]
    info = gio.info(scene)
    pd.DataFrame(
        [
            {
                "id": "a",
                "path": scene,
                **dict(zip(("minx", "miny", "maxx", "maxy"), info.bounds, strict=True)),
            }
        ]
    ).to_csv(tmp_path / "c.csv", index=False)
    cat = open_catalog(tmp_path / "c.csv", crs="EPSG:32630")
    assert cat.crs == "EPSG:32630"
    assert cat.frame.geometry.iloc[0].bounds == pytest.approx(tuple(info.bounds))
    # no proj:* columns: the grid is read from the raster's header
    s = cat.slice_of("a")
    assert s.shape == (info.height, info.width) and s.crs == "EPSG:32630"


def test_plain_parquet_with_wkt(tmp_path: Path, demos) -> None:
    scene = demos["parquet"].scenes[1]
    pd.DataFrame(
        [{"id": "x", "uri": scene, "wkt": shapely.box(0, 0, 1, 1).wkt, "datetime": "2024-01-02"}]
    ).to_parquet(tmp_path / "t.parquet")
    cat = open_catalog(tmp_path / "t.parquet")
    assert cat.ids == ("x",) and cat.slice_of("x").time == ("2024-01-02T00:00:00Z",) * 2


def test_stac_geoparquet_assets_column(tmp_path: Path, demos) -> None:
    """stac-geoparquet keeps hrefs in an ``assets`` struct: the data asset is the raster."""
    frame = gpd.read_parquet(demos["parquet"].catalog).drop(columns=["uri"])
    frame["assets"] = [
        {
            "thumbnail": {"href": "thumb.png", "roles": ["thumbnail"]},
            "data": {"href": f"scenes/{i}.tif", "roles": ["data"]},
        }
        for i in frame["id"]
    ]
    frame.to_parquet(Path(demos["parquet"].root) / "stac.parquet")
    cat = open_catalog(Path(demos["parquet"].root) / "stac.parquet")
    assert [cat.slice_of(i).uri for i in cat.ids] == list(demos["parquet"].scenes)


def test_folder_scan_keeps_unreadable_files_as_failing_rows(tmp_path: Path, demos) -> None:
    folder = tmp_path / "cogs"
    shutil.copytree(Path(demos["folder"].catalog), folder)
    (folder / "garbage.tif").write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    cat = open_catalog(folder)
    row = cat.row("garbage")
    assert row.scan_error is not None and row.geometry is None
    with pytest.raises(CorruptRasterError, match=r"garbage\.tif"):
        cat.slice_of(row)
    assert len(cat.query((-180, -90, 180, 90))) == N  # no footprint: never matches a box


def test_folder_scan_reads_the_tiff_datetime_tag(tmp_path: Path) -> None:
    gt = gd.sentinel2_l1c(16, seed=3)
    path = tmp_path / "tagged.tif"
    gio.write(gt, path)
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(TIFFTAG_DATETIME="2024:07:14 09:15:00")
    cat = open_catalog(tmp_path)
    assert cat.slice_of("tagged").time == ("2024-07-14T09:15:00Z",) * 2
    assert cat.query(time="2024-07-14T09:15:00").ids == ("tagged",)


def test_format_errors_are_typed(tmp_path: Path, demos) -> None:
    with pytest.raises(CatalogNotFoundError):
        open_catalog(tmp_path / "nope.parquet")
    with pytest.raises(CatalogFormatError, match="needs a path"):
        open_catalog(123)  # type: ignore[arg-type]
    (tmp_path / "x.txt").write_text("id,uri\n")
    with pytest.raises(CatalogFormatError, match="unknown catalog format"):
        open_catalog(tmp_path / "x.txt")
    (tmp_path / "nogeom.csv").write_text("id,uri\na,b.tif\n")
    with pytest.raises(CatalogFormatError, match="no footprint"):
        open_catalog(tmp_path / "nogeom.csv")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(CatalogFormatError, match="not a readable Parquet"):
        open_catalog(tmp_path / "bad.parquet")
    (tmp_path / "notstac.json").write_text('{"type": "Topology"}')
    with pytest.raises(CatalogFormatError, match="not a STAC document"):
        open_catalog(tmp_path / "notstac.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(CatalogFormatError, match="cannot read the STAC"):
        open_catalog(tmp_path / "broken.json")
    frame = gpd.read_parquet(demos["parquet"].catalog)
    dup = pd.concat([frame, frame.iloc[:1]])
    dup.to_parquet(tmp_path / "dup.parquet")
    with pytest.raises(CatalogFormatError, match="ids repeat"):
        open_catalog(tmp_path / "dup.parquet")
    bad_time = frame.assign(datetime="not a date")
    bad_time.to_parquet(tmp_path / "time.parquet")
    with pytest.raises(CatalogFormatError, match="ISO 8601"):
        open_catalog(tmp_path / "time.parquet")
    bad_bbox = frame.assign(**{"proj:bbox": [[1.0, 2.0]] * len(frame)})
    bad_bbox.to_parquet(tmp_path / "bbox.parquet")
    with pytest.raises(CatalogFormatError, match="'proj:bbox'"):
        open_catalog(tmp_path / "bbox.parquet")
