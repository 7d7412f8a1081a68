"""``open_catalog(path)``: GeoParquet, CSV, STAC (ItemCollection or static catalog), COG folders.

Every format becomes the same :class:`~georax.catalog.Catalog` table (columns described in
:mod:`georax.catalog.table`). Relative raster paths are resolved against the catalog file's
folder, so a catalog and its scenes can be moved together.

Column names follow STAC (``datetime``, ``start_datetime``/``end_datetime``, ``proj:code`` or
``proj:epsg``, ``proj:bbox``, ``proj:shape``, ``proj:transform``, ``bands`` or ``eo:bands``), so a
stac-geoparquet file, a STAC ItemCollection and a table exported from either read alike. In CSV,
list-valued cells are JSON (``"[600000.0, 4990000.0, 600640.0, 5000000.0]"``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyarrow.parquet as pq
import pystac
import rasterio
import rasterio.errors
import shapely
from rasterio.warp import transform_bounds

from georax.catalog.errors import (
    CatalogFormatError,
    CatalogNotFoundError,
    SliceError,
)
from georax.catalog.geoslice import canonical_crs
from georax.catalog.loading import is_remote, resolve_uri
from georax.catalog.table import Catalog

__all__ = ["open_catalog", "scan_rasters"]

_URI_COLUMNS = ("uri", "href", "path", "url", "location")
_WKT_COLUMNS = ("geometry", "wkt", "footprint", "geom")
_BOUNDS_COLUMNS = (
    ("minx", "miny", "maxx", "maxy"),
    ("xmin", "ymin", "xmax", "ymax"),
    ("left", "bottom", "right", "top"),
    ("west", "south", "east", "north"),
)
_RASTER_SUFFIXES = (".tif", ".tiff")
_STAC_ROOTS = ("catalog.json", "collection.json")
_WGS84 = "EPSG:4326"


def open_catalog(
    path: str | os.PathLike[str],
    *,
    crs: Any = None,
    asset: str | None = None,
    recursive: bool = True,
) -> Catalog:
    """Open a catalog of rasters from a file or a folder.

    The format is chosen from the path: ``.parquet``/``.geoparquet`` (GeoParquet, or a plain
    Parquet table with WKT or bounds columns), ``.csv`` (WKT or bounds columns),
    ``.json``/``.geojson`` (a STAC ItemCollection, Catalog, Collection or Item), a folder with
    ``catalog.json`` or ``collection.json`` (a static STAC catalog) or any other folder (every
    ``.tif``/``.tiff`` in it is scanned with rasterio: grid, footprint, band names and the
    ``TIFFTAG_DATETIME`` tag).

    **Arguments:**

    - `path`: the catalog file or folder.
    - `crs`: CRS of the footprints in a CSV or plain Parquet table (default WGS 84).
    - `asset`: for STAC, the asset key holding the raster (default: the first asset with the
      ``data`` role, else the first GeoTIFF asset, else the first asset).
    - `recursive`: scan sub-folders of a raster folder.

    **Returns:** a :class:`~georax.catalog.Catalog`.

    **Raises:** :class:`~georax.catalog.errors.CatalogNotFoundError`,
    :class:`~georax.catalog.errors.CatalogFormatError` naming the file and the problem.
    """
    try:
        p = os.fspath(path)
    except TypeError:
        raise CatalogFormatError(f"open_catalog needs a path, got {path!r}") from None
    local = not is_remote(p)
    if local and not os.path.exists(p):
        raise CatalogNotFoundError(f"{p}: no such catalog file or folder")
    if local and os.path.isdir(p):
        for name in _STAC_ROOTS:
            if os.path.isfile(os.path.join(p, name)):
                return _open_stac(os.path.join(p, name), asset)
        return scan_rasters(p, recursive=recursive)
    suffix = Path(p.split("?")[0]).suffix.lower()
    if suffix in (".parquet", ".geoparquet", ".pq"):
        return _open_parquet(p, crs)
    if suffix == ".csv":
        return _open_csv(p, crs)
    if suffix in (".json", ".geojson"):
        return _open_stac(p, asset)
    raise CatalogFormatError(
        f"{p}: unknown catalog format {suffix or '(no suffix)'!r}; georax reads .parquet, .csv, "
        ".json (STAC) and folders of GeoTIFFs"
    )


# ------------------------------------------------------------------------------ tables
def _base(path: str) -> str | None:
    return None if is_remote(path) else os.path.dirname(os.path.abspath(path))


def _open_parquet(path: str, crs: Any) -> Catalog:
    try:
        metadata = pq.read_schema(path).metadata or {}
        frame = gpd.read_parquet(path) if b"geo" in metadata else pd.read_parquet(path)
    except (OSError, ValueError) as e:
        raise CatalogFormatError(f"{path}: not a readable Parquet file: {e}") from None
    if not isinstance(frame, gpd.GeoDataFrame):
        frame = _with_geometry(frame, path, crs)
    return _finish(frame, path)


def _open_csv(path: str, crs: Any) -> Catalog:
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise CatalogFormatError(f"{path}: not a readable CSV file: {e}") from None
    return _finish(_with_geometry(frame, path, crs), path)


def _with_geometry(frame: pd.DataFrame, path: str, crs: Any) -> gpd.GeoDataFrame:
    """A GeoDataFrame from a WKT column or four bounds columns."""
    try:
        crs_text = canonical_crs(crs if crs is not None else _WGS84)
    except SliceError as e:
        raise CatalogFormatError(f"{path}: crs={crs!r}: {e.problem}") from None
    for column in _WKT_COLUMNS:
        if column in frame.columns:
            try:
                geometry = shapely.from_wkt(
                    frame[column].astype(object).where(frame[column].notna())
                )
            except (shapely.errors.GEOSException, TypeError, ValueError) as e:
                raise CatalogFormatError(f"{path}: column {column!r} is not WKT: {e}") from None
            rest = frame.drop(columns=[column])
            return gpd.GeoDataFrame(rest, geometry=list(geometry), crs=crs_text)
    for names in _BOUNDS_COLUMNS:
        if all(n in frame.columns for n in names):
            try:
                values = frame[list(names)].astype(float).to_numpy()
            except (TypeError, ValueError) as e:
                raise CatalogFormatError(
                    f"{path}: bounds columns {names} are not numbers: {e}"
                ) from None
            geometry = shapely.box(values[:, 0], values[:, 1], values[:, 2], values[:, 3])
            return gpd.GeoDataFrame(frame, geometry=list(geometry), crs=crs_text)
    raise CatalogFormatError(
        f"{path}: no footprint: needs a WKT column (one of {list(_WKT_COLUMNS)}) or bounds "
        f"columns (one of {[list(b) for b in _BOUNDS_COLUMNS]}); columns are {list(frame.columns)}"
    )


def _cell(value: Any) -> Any:
    """A list-valued cell as a Python value (JSON text in CSV, arrays in Parquet)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "[{":
            return json.loads(text)
        return text
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _column(frame: pd.DataFrame, names: Iterable[str]) -> str | None:
    return next((n for n in names if n in frame.columns), None)


def _map_cells(frame: pd.DataFrame, column: str, fn: Callable[[Any], Any], path: str) -> list[Any]:
    out = []
    for row_id, value in zip(frame["id"], frame[column], strict=True):
        try:
            v = _cell(value)
            out.append(None if v is None else fn(v))
        except (ValueError, TypeError, KeyError, IndexError, SliceError) as e:
            raise CatalogFormatError(
                f"{path}: row {row_id!r}, column {column!r}: cannot read {value!r}: {e}"
            ) from None
    return out


def _crs_cell(v: Any) -> str:
    return canonical_crs(int(v) if isinstance(v, float) and v.is_integer() else v)


def _floats(n: int) -> Callable[[Any], tuple[float, ...]]:
    def convert(v: Any) -> tuple[float, ...]:
        out = tuple(float(x) for x in v)
        if len(out) != n or not all(math.isfinite(x) for x in out):
            raise ValueError(f"needs {n} finite numbers")
        return out

    return convert


def _shape_cell(v: Any) -> tuple[int, int]:
    h, w = (int(x) for x in v)
    if h < 1 or w < 1:
        raise ValueError("sizes must be >= 1")
    return h, w


def _band_names(v: Any) -> tuple[str, ...]:
    names = tuple(b["name"] if isinstance(b, Mapping) else b for b in v)
    if not all(isinstance(n, str) and n for n in names):
        raise ValueError("band names must be non-empty strings")
    return names


def _bbox_from_transform(transform: Sequence[float], shape: Sequence[int]) -> tuple[float, ...]:
    a, b, c, d, e, f = (float(t) for t in list(transform)[:6])
    if b != 0 or d != 0:
        raise ValueError("rotated proj:transform is not supported")
    h, w = shape
    xs, ys = (c, c + a * w), (f, f + e * h)
    return min(xs), min(ys), max(xs), max(ys)


def _normalise_time(frame: pd.DataFrame, path: str) -> pd.DataFrame:
    def parse(column: str) -> pd.Series:
        try:
            return pd.to_datetime(frame[column], utc=True, format="ISO8601")
        except (ValueError, TypeError) as e:
            raise CatalogFormatError(
                f"{path}: column {column!r} is not ISO 8601 time: {e}"
            ) from None

    if "start_datetime" in frame.columns or "end_datetime" in frame.columns:
        start = parse("start_datetime") if "start_datetime" in frame.columns else None
        end = parse("end_datetime") if "end_datetime" in frame.columns else None
        if start is None:
            start = end
        if end is None:
            end = start
        if "datetime" in frame.columns:
            instant = parse("datetime")
            start, end = start.fillna(instant), end.fillna(instant)
    elif "datetime" in frame.columns:
        start = end = parse("datetime")
    else:
        return frame
    if bool(((end < start) & start.notna() & end.notna()).any()):
        raise CatalogFormatError(f"{path}: a row ends before it starts")
    return frame.drop(columns=[c for c in ("datetime",) if c in frame.columns]).assign(
        start_datetime=start, end_datetime=end
    )


def _normalise_grid(frame: pd.DataFrame, path: str) -> pd.DataFrame:
    updates: dict[str, list[Any]] = {}
    crs_col = _column(frame, ("proj:code", "proj:epsg", "crs"))
    if crs_col is not None:
        updates["proj:code"] = _map_cells(frame, crs_col, _crs_cell, path)
    shape = None
    if "proj:shape" in frame.columns:
        shape = updates["proj:shape"] = _map_cells(frame, "proj:shape", _shape_cell, path)
    if "proj:bbox" in frame.columns:
        updates["proj:bbox"] = _map_cells(frame, "proj:bbox", _floats(4), path)
    elif "proj:transform" in frame.columns and shape is not None:
        transforms = _map_cells(frame, "proj:transform", lambda v: tuple(float(x) for x in v), path)
        updates["proj:bbox"] = [
            _bbox_from_transform(t, s) if t is not None and s is not None else None
            for t, s in zip(transforms, shape, strict=True)
        ]
    bands_col = _column(frame, ("bands", "eo:bands"))
    if bands_col is not None:
        updates["bands"] = _map_cells(frame, bands_col, _band_names, path)
    drop = [c for c in ("proj:epsg", "crs", "proj:transform", "eo:bands") if c in frame.columns]
    frame = frame.drop(columns=drop)
    for column, values in updates.items():
        frame[column] = pd.Series(values, index=frame.index, dtype=object)
    return frame


def _finish(frame: gpd.GeoDataFrame, path: str, *, base: str | None = None) -> Catalog:
    """Map the recognised columns onto the core ones and build the catalog.

    Relative raster paths are resolved against `base` (default: the folder of `path`).
    """
    if "id" not in frame.columns:
        raise CatalogFormatError(f"{path}: no 'id' column; columns are {list(frame.columns)}")
    frame = frame.assign(id=frame["id"].astype(str))
    base = base if base is not None else _base(path)
    uri_col = _column(frame, _URI_COLUMNS)
    if uri_col is not None:
        uris = _map_cells(frame, uri_col, lambda v: resolve_uri(str(v), base), path)
        frame = frame.drop(columns=[uri_col])
    elif "assets" in frame.columns:  # stac-geoparquet: a struct of assets per row
        uris = _map_cells(frame, "assets", lambda v: resolve_uri(_asset_href(v, None), base), path)
        frame = frame.drop(columns=["assets"])
    else:
        raise CatalogFormatError(
            f"{path}: no raster column (one of {list(_URI_COLUMNS)} or 'assets'); columns are "
            f"{list(frame.columns)}"
        )
    if any(u is None for u in uris):
        raise CatalogFormatError(f"{path}: a row has no raster uri")
    frame["uri"] = uris
    frame = _normalise_grid(_normalise_time(frame, path), path)
    return Catalog(gpd.GeoDataFrame(frame, geometry=frame.geometry.name), source=path)


# ------------------------------------------------------------------------------ STAC
def _asset_href(assets: Mapping[str, Any], key: str | None) -> str:
    """The href of asset `key`, or of the first data / GeoTIFF / any asset."""
    if not assets:
        raise KeyError("the item has no assets")
    if key is not None:
        if key not in assets or assets[key] is None:
            raise KeyError(f"no asset {key!r}; assets are {sorted(assets)}")
        chosen = assets[key]
    else:
        values = [a for a in assets.values() if a is not None]
        chosen = next((a for a in values if "data" in (a.get("roles") or [])), None)
        chosen = chosen or next((a for a in values if "tiff" in str(a.get("type", ""))), None)
        chosen = chosen or values[0]
    return str(chosen["href"])


def _item_row(item: pystac.Item, asset: str | None, base: str | None) -> dict[str, Any]:
    assets = {k: a.to_dict() for k, a in item.assets.items()}
    href = _asset_href(assets, asset)
    key = asset or next(k for k, a in assets.items() if str(a["href"]) == href)
    absolute = item.assets[key].get_absolute_href()
    uri = resolve_uri(absolute if absolute is not None else href, base)
    extra = dict(item.properties)
    for k, v in assets[key].items():  # asset-level projection/band fields win
        if k.startswith(("proj:", "eo:")) or k == "bands":
            extra[k] = v
    row = {"id": item.id, "uri": uri, "geometry": shapely.geometry.shape(item.geometry)}
    row.update({k: v for k, v in extra.items() if k not in row})
    if item.datetime is not None:
        row["datetime"] = item.datetime.isoformat()
    return row


def _open_stac(path: str, asset: str | None) -> Catalog:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        kind = doc.get("type") if isinstance(doc, dict) else None
        base = _base(path)
        if kind == "FeatureCollection":
            items = list(pystac.ItemCollection.from_dict(doc, preserve_dict=False))
        elif kind == "Feature":
            items = [pystac.Item.from_file(path)]
        elif kind in ("Catalog", "Collection"):
            items = list(pystac.read_file(path).get_items(recursive=True))  # type: ignore[union-attr]
        else:
            raise CatalogFormatError(
                f"{path}: not a STAC document (type {kind!r}); expected a FeatureCollection, "
                "Feature, Catalog or Collection"
            )
        rows = [_item_row(item, asset, base) for item in items]
    except CatalogFormatError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, pystac.STACError) as e:
        raise CatalogFormatError(f"{path}: cannot read the STAC document: {e}") from None
    if not rows:
        raise CatalogFormatError(f"{path}: the STAC document holds no items")
    frame = gpd.GeoDataFrame(pd.DataFrame(rows), geometry="geometry", crs=_WGS84)
    return _finish(frame, path)


# ------------------------------------------------------------------------------ folders
def _scan_one(path: str, root: str) -> dict[str, Any]:
    rel = os.path.relpath(path, root)
    row: dict[str, Any] = {"id": Path(rel).with_suffix("").as_posix(), "uri": path}
    try:
        with rasterio.open(path) as src:
            crs = src.crs.to_string() if src.crs else None
            left, bottom, right, top = src.bounds
            row["proj:shape"] = (src.height, src.width)
            names = tuple(src.descriptions)
            row["bands"] = names if all(names) else None
            stamp = src.tags().get("TIFFTAG_DATETIME")
            if crs is not None:
                row["proj:code"] = canonical_crs(crs)
                row["proj:bbox"] = (left, bottom, right, top)
                w, s, e, n = transform_bounds(crs, _WGS84, left, bottom, right, top, densify_pts=21)
                row["geometry"] = shapely.box(w, s, e, n)
        if stamp:
            row["datetime"] = pd.to_datetime(stamp, format="%Y:%m:%d %H:%M:%S", utc=True)
    except (rasterio.errors.RasterioError, SliceError, ValueError) as e:
        row["scan_error"] = f"not a readable raster (corrupt, truncated or unsupported): {e}"
    return row


def scan_rasters(folder: str | os.PathLike[str], *, recursive: bool = True) -> Catalog:
    """A catalog of every GeoTIFF in a folder, read from the files' headers (no pixels).

    Each ``.tif``/``.tiff`` becomes a row with id = its path relative to `folder` without the
    suffix. A file that cannot be opened is kept as a row with ``scan_error`` set, so a run
    over the catalog reports it instead of silently skipping it.
    """
    root = os.path.abspath(os.fspath(folder))
    if not os.path.isdir(root):
        raise CatalogNotFoundError(f"{root}: no such folder")
    walker = Path(root).rglob("*") if recursive else Path(root).glob("*")
    files = sorted(
        str(p)
        for p in walker
        if p.suffix.lower() in _RASTER_SUFFIXES and p.is_file() and not p.name.startswith(".")
    )
    if not files:
        raise CatalogFormatError(f"{root}: no .tif/.tiff files to catalog")
    rows = [_scan_one(f, root) for f in files]
    footprints = [r.pop("geometry", None) for r in rows]
    frame = gpd.GeoDataFrame(pd.DataFrame(rows), geometry=footprints, crs=_WGS84)
    return _finish(frame, root, base=root)
