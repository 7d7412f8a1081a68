"""The :class:`Catalog`: a table of scenes (one row per raster) that yields slices.

A catalog is a :class:`geopandas.GeoDataFrame` with one row per raster and these columns (the
STAC names, so a STAC item maps onto a row one to one):

==================  ======================================================================
``id``              unique row id (str)
``uri``             the raster: an absolute path or a GDAL URL
``geometry``        the footprint, in the catalog's CRS (:attr:`Catalog.crs`, usually WGS 84)
``start_datetime``  start of the acquisition interval (UTC; ``NaT`` when unknown)
``end_datetime``    end of the interval (equal to the start for one instant)
``proj:code``       the raster's own CRS (``"EPSG:32630"``), or None when unknown
``proj:bbox``       the raster's bounds in that CRS ``(left, bottom, right, top)``, or None
``proj:shape``      the raster's ``(height, width)``, or None
``bands``           the band names, or None
``scan_error``      why the raster could not be read while scanning (directory catalogs)
==================  ======================================================================

Every other column is a property that :meth:`Catalog.query` can filter on. When a row lacks
its grid (``proj:*``), :meth:`Catalog.slice_of` reads it from the file's header.

Everything here runs on the host and touches no pixels except :meth:`Catalog.read_tile`, which
mosaics the rows under a tile through :func:`~georax.catalog.load_raster`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import geopandas as gpd
import jax
import numpy as np
import pandas as pd
import shapely
from rasterio.warp import transform_bounds

from georax.catalog.errors import (
    CatalogFormatError,
    CatalogQueryError,
    EmptyQueryError,
    SliceError,
)
from georax.catalog.geoslice import GeoSlice, canonical_crs, canonical_time
from georax.catalog.loading import load_raster
from georax.io import CorruptRasterError
from georax.io import info as raster_info
from georax.tensor import GeoTensor

__all__ = ["CORE_COLUMNS", "Catalog", "CatalogRow"]

#: Columns with a meaning to georax (see the module docstring); all others are properties.
CORE_COLUMNS = (
    "id",
    "uri",
    "geometry",
    "start_datetime",
    "end_datetime",
    "proj:code",
    "proj:bbox",
    "proj:shape",
    "bands",
    "scan_error",
)


@dataclasses.dataclass(frozen=True)
class CatalogRow:
    """One catalog row, as :meth:`Catalog.iter_rows` yields it.

    Attributes: ``id``, ``uri``, ``geometry`` (shapely footprint in the catalog CRS, or None),
    ``start``/``end`` (UTC datetimes or None), ``crs``/``bounds``/``shape`` (the raster's own
    grid, or None when the catalog does not record it), ``bands``, ``scan_error`` and
    ``properties`` (every other column).
    """

    id: str
    uri: str
    geometry: Any
    start: dt.datetime | None
    end: dt.datetime | None
    crs: str | None
    bounds: tuple[float, float, float, float] | None
    shape: tuple[int, int] | None
    bands: tuple[str, ...] | None
    scan_error: str | None
    properties: Mapping[str, Any]

    @property
    def time(self) -> tuple[str, str] | None:
        """The row's time interval in :class:`GeoSlice` form."""
        return canonical_time((self.start, self.end)) if self.start is not None else None


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return v is pd.NaT


def _py(v: Any) -> Any:
    """A cell as a plain Python value (NumPy scalars and arrays, pandas NaT/Timestamp)."""
    if _is_missing(v):
        return None
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    if isinstance(v, np.ndarray):
        return tuple(_py(x) for x in v.tolist())
    if isinstance(v, np.generic):
        return v.item()
    return v


def _as_key(key: Any, who: str) -> jax.Array:
    if not isinstance(key, jax.Array):
        raise CatalogQueryError(
            f"{who}: key must be a JAX PRNG key (jax.random.key(0)), got {type(key).__name__}"
        )
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape != (2,):
        raise CatalogQueryError(f"{who}: {key!r} is not a JAX PRNG key")
    return key


def _numbers(value: Any, n: int, what: str, who: str) -> tuple[Any, ...]:
    """``value`` as a tuple of `n` items, or a typed error naming what was expected."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
        raise CatalogQueryError(f"{who}: {what} must be a sequence of {n} numbers, got {value!r}")
    items = tuple(value)
    if len(items) != n:
        raise CatalogQueryError(f"{who}: {what} must have {n} numbers, got {value!r}")
    return items


def _positive_int(v: Any, name: str, who: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or int(v) < 1:
        raise CatalogQueryError(f"{who}: {name} must be an int >= 1, got {v!r}")
    return int(v)


class Catalog:
    """A queryable table of rasters (see the module docstring for its columns).

    Open one with :func:`georax.catalog.open_catalog`; build one from a GeoDataFrame holding the
    core columns with ``Catalog(frame)``. Queries return new catalogs; the table is never
    modified in place.

    **Arguments:**

    - `frame`: a GeoDataFrame with at least ``id``, ``uri`` and ``geometry`` (with a CRS).
    - `source`: where it was read from (shown in messages).
    """

    def __init__(self, frame: gpd.GeoDataFrame, *, source: str | None = None) -> None:
        if not isinstance(frame, gpd.GeoDataFrame):
            raise CatalogFormatError(
                f"{source or 'Catalog'}: needs a geopandas.GeoDataFrame, got {type(frame).__name__}"
            )
        for column in ("id", "uri"):
            if column not in frame.columns:
                raise CatalogFormatError(f"{source or 'Catalog'}: no {column!r} column")
        if frame.crs is None:
            raise CatalogFormatError(f"{source or 'Catalog'}: the geometry column has no CRS")
        ids = frame["id"]
        if ids.isna().any() or not all(isinstance(i, str) and i for i in ids):
            raise CatalogFormatError(f"{source or 'Catalog'}: ids must be non-empty strings")
        dup = ids[ids.duplicated()].unique().tolist()
        if dup:
            raise CatalogFormatError(f"{source or 'Catalog'}: ids repeat: {dup[:5]}")
        frame = frame.copy()
        for column in CORE_COLUMNS:
            if column not in frame.columns:
                frame[column] = pd.NaT if column.endswith("datetime") else None
        self._frame = frame.reset_index(drop=True)
        self.source = source

    # ------------------------------------------------------------------ basics
    @property
    def frame(self) -> gpd.GeoDataFrame:
        """A copy of the table."""
        return self._frame.copy()

    @property
    def crs(self) -> str:
        """The CRS of the footprints (``geometry``)."""
        return canonical_crs(self._frame.crs.to_wkt())

    @property
    def ids(self) -> tuple[str, ...]:
        """The row ids, in order."""
        return tuple(self._frame["id"])

    @property
    def properties(self) -> tuple[str, ...]:
        """The property columns (everything but the core columns)."""
        return tuple(c for c in self._frame.columns if c not in CORE_COLUMNS)

    def __len__(self) -> int:
        return len(self._frame)

    def __repr__(self) -> str:
        return f"Catalog({len(self)} rows, crs={self.crs}, source={self.source!r})"

    def _subset(self, mask: Any) -> Catalog:
        return Catalog(self._frame[np.asarray(mask, dtype=bool)], source=self.source)

    # ------------------------------------------------------------------ queries
    def query(
        self,
        bbox: Sequence[float] | None = None,
        *,
        bbox_crs: Any = "EPSG:4326",
        time: Any = None,
        properties: Mapping[str, Any] | None = None,
    ) -> Catalog:
        """The rows matching every given condition, as a new catalog.

        **Arguments:**

        - `bbox`: ``(left, bottom, right, top)`` in `bbox_crs`; rows whose footprint
          intersects it are kept. The box is reprojected to the catalog's CRS with densified
          edges (:func:`rasterio.warp.transform_bounds`).
        - `bbox_crs`: the CRS of `bbox` (any CRS; default WGS 84 longitude/latitude).
        - `time`: an instant or ``(start, end)``; rows whose interval overlaps it are kept
          (rows without a time are dropped).
        - `properties`: ``{column: condition}``; a condition is a value (equality), a list/
          tuple/set of values (membership) or a callable ``Series -> bool Series``.

        **Raises:** :class:`~georax.catalog.errors.CatalogQueryError` (unknown column, bad
        box or time).
        """
        mask = np.ones(len(self), dtype=bool)
        if bbox is not None:
            mask &= self._bbox_mask(bbox, bbox_crs)
        if time is not None:
            mask &= self._time_mask(time)
        for column, condition in (properties or {}).items():
            mask &= self._property_mask(column, condition)
        return self._subset(mask)

    def _bbox_mask(self, bbox: Sequence[float], bbox_crs: Any) -> np.ndarray:
        try:
            box = GeoSlice(_numbers(bbox, 4, "bbox", "query"), bbox_crs, (1, 1))  # validates
        except SliceError as e:
            raise CatalogQueryError(f"query bbox {bbox!r} in {bbox_crs!r}: {e.problem}") from None
        left, bottom, right, top = box.bounds
        if box.crs != self.crs:
            left, bottom, right, top = transform_bounds(
                box.crs, self.crs, left, bottom, right, top, densify_pts=21
            )
        geoms = self._frame.geometry
        return np.asarray(geoms.intersects(shapely.box(left, bottom, right, top)), dtype=bool)

    def _time_mask(self, time: Any) -> np.ndarray:
        try:
            start, end = canonical_time(time)  # type: ignore[misc]
        except SliceError as e:
            raise CatalogQueryError(f"query time {time!r}: {e.problem}") from None
        qs, qe = pd.Timestamp(start), pd.Timestamp(end)
        s = pd.to_datetime(self._frame["start_datetime"], utc=True)
        e = pd.to_datetime(self._frame["end_datetime"], utc=True)
        return np.asarray((s <= qe) & (e >= qs), dtype=bool)

    def _property_mask(self, column: str, condition: Any) -> np.ndarray:
        if column not in self._frame.columns:
            raise CatalogQueryError(
                f"query: no column {column!r}; properties are {list(self.properties)}"
            )
        series = self._frame[column]
        if callable(condition):
            result = condition(series)
        elif isinstance(condition, list | tuple | set | frozenset):
            result = series.isin(list(condition))
        else:
            result = series == condition
        mask = np.asarray(result)
        if mask.dtype != bool or mask.shape != (len(self),):
            raise CatalogQueryError(
                f"query: the condition on {column!r} must give one bool per row, got "
                f"{mask.dtype} {mask.shape}"
            )
        return mask

    def sample(self, n: int, key: jax.Array) -> Catalog:
        """``n`` distinct rows drawn at random with the JAX PRNG `key`, in catalog order.

        **Raises:** :class:`~georax.catalog.errors.CatalogQueryError` if ``n`` exceeds the
        number of rows.
        """
        n = _positive_int(n, "n", "Catalog.sample")
        key = _as_key(key, "Catalog.sample")
        if n > len(self):
            raise CatalogQueryError(f"Catalog.sample: n={n} but the catalog has {len(self)} rows")
        chosen = np.sort(np.asarray(jax.random.permutation(key, len(self)))[:n])
        mask = np.zeros(len(self), dtype=bool)
        mask[chosen] = True
        return self._subset(mask)

    # ------------------------------------------------------------------ rows and slices
    def iter_rows(self) -> Iterator[CatalogRow]:
        """Every row as a :class:`CatalogRow`, in order."""
        extra = list(self.properties)
        for rec in self._frame.to_dict("records"):
            start, end = _py(rec["start_datetime"]), _py(rec["end_datetime"])
            bounds, shape, bands = _py(rec["proj:bbox"]), _py(rec["proj:shape"]), _py(rec["bands"])
            yield CatalogRow(
                id=rec["id"],
                uri=rec["uri"],
                geometry=rec["geometry"],
                start=start,
                end=end if end is not None else start,
                crs=_py(rec["proj:code"]),
                bounds=tuple(bounds) if bounds is not None else None,
                shape=tuple(int(s) for s in shape) if shape is not None else None,
                bands=tuple(bands) if bands is not None else None,
                scan_error=_py(rec["scan_error"]),
                properties={k: _py(rec[k]) for k in extra},
            )

    def row(self, row_id: str) -> CatalogRow:
        """The row with id `row_id`."""
        match = self._frame.index[self._frame["id"] == row_id]
        if len(match) == 0:
            raise CatalogQueryError(f"no row with id {row_id!r}")
        sub = Catalog(self._frame.iloc[[int(match[0])]], source=self.source)
        return next(sub.iter_rows())

    def slice_of(self, row: CatalogRow | str) -> GeoSlice:
        """The slice covering a whole row's raster on its own grid.

        When the catalog records the row's grid (``proj:code``, ``proj:bbox``, ``proj:shape``)
        no file is opened; otherwise the grid is read from the raster's header.

        **Raises:** :class:`~georax.io.errors.CorruptRasterError` for a row whose raster could
        not be read when the catalog was scanned, and the :func:`georax.io.info` errors.
        """
        if isinstance(row, str):
            row = self.row(row)
        if row.scan_error is not None:
            raise CorruptRasterError(f"{row.uri}: {row.scan_error}")
        if row.crs is not None and row.bounds is not None and row.shape is not None:
            crs, bounds, shape = row.crs, row.bounds, row.shape
        else:
            meta = raster_info(row.uri)
            if meta.crs is None:
                raise SliceError("crs", f"{row.uri}: the raster has no CRS")
            if meta.transform.b != 0 or meta.transform.d != 0:
                raise SliceError("bounds", f"{row.uri}: rotated rasters are not supported")
            crs, bounds, shape = meta.crs, tuple(meta.bounds), (meta.height, meta.width)
        return GeoSlice(bounds, crs, shape, row.time, row.bands, row.uri, row.id)

    def iter_slices(self) -> Iterator[GeoSlice]:
        """:meth:`slice_of` every row, in order."""
        for row in self.iter_rows():
            yield self.slice_of(row)

    def iter_random_slices(
        self, chip_size: int | tuple[int, int], n: int, key: jax.Array
    ) -> Iterator[GeoSlice]:
        """``n`` random chips: a row drawn uniformly, then a whole-pixel window inside it.

        Chips lie entirely inside their raster, on its own grid (no resampling on load). Rows
        smaller than the chip, or without a grid, are not drawn.

        **Arguments:**

        - `chip_size`: ``size`` or ``(height, width)`` in pixels.
        - `n`: number of chips.
        - `key`: a JAX PRNG key; the same key gives the same chips.

        **Yields:** :class:`GeoSlice` objects with ids ``"{row id}/{k}"``.
        """
        if isinstance(chip_size, int | np.integer):
            ch = cw = chip_size
        else:
            ch, cw = _numbers(chip_size, 2, "chip_size", "iter_random_slices")
        ch = _positive_int(ch, "chip_size", "iter_random_slices")
        cw = _positive_int(cw, "chip_size", "iter_random_slices")
        n = _positive_int(n, "n", "iter_random_slices")
        key = _as_key(key, "iter_random_slices")
        slices = [
            self.slice_of(r)
            for r in self.iter_rows()
            if r.scan_error is None and r.shape is not None and r.crs is not None
        ]
        slices = [s for s in slices if s.shape[0] >= ch and s.shape[1] >= cw]
        if not slices:
            raise EmptyQueryError(
                f"iter_random_slices: no row with a recorded grid is at least {ch}x{cw} pixels"
            )
        k_row, k_off = jax.random.split(key)
        rows = np.asarray(jax.random.randint(k_row, (n,), 0, len(slices)))
        u = np.asarray(jax.random.uniform(k_off, (n, 2)), dtype=np.float64)
        for k in range(n):
            s = slices[int(rows[k])]
            h, w = s.shape
            r0 = min(int(u[k, 0] * (h - ch + 1)), h - ch)
            c0 = min(int(u[k, 1] * (w - cw + 1)), w - cw)
            xres, yres = s.resolution
            left, top = s.bounds[0] + c0 * xres, s.bounds[3] - r0 * yres
            yield GeoSlice(
                (left, top - ch * yres, left + cw * xres, top),
                s.crs,
                (ch, cw),
                s.time,
                s.bands,
                s.uri,
                f"{s.id}/{k}",
            )

    # ------------------------------------------------------------------ tiles
    def read_tile(
        self,
        bounds: Sequence[float],
        size: int | tuple[int, int],
        crs: Any = "EPSG:3857",
        *,
        bands: Sequence[str] | None = None,
        resampling: str = "bilinear",
        dtype: Any = None,
    ) -> GeoTensor:
        """Mosaic every row under a tile onto the tile's grid (the seeds' tile server).

        Rows are painted in catalog order; each fills only the pixels still empty (equal to
        the fill value, or NaN) -- "first valid pixel wins", so order the catalog (e.g. by
        cloud cover) to choose which scene shows.

        **Arguments:**

        - `bounds`: the tile's ``(left, bottom, right, top)`` in `crs`.
        - `size`: ``size`` or ``(height, width)`` of the tile in pixels.
        - `crs`: the tile's CRS (default Web Mercator).
        - `bands`: band names to read (default every band of each raster).
        - `resampling`: resampling when a raster is not on the tile's grid.
        - `dtype`: cast on read.

        **Returns:** a ``(band, H, W)`` :class:`~georax.GeoTensor` on the tile's grid.

        **Raises:** :class:`~georax.catalog.errors.EmptyQueryError` when no row intersects the
        tile, and the loading errors of :func:`~georax.catalog.load_raster`.
        """
        try:
            tile = GeoSlice(_numbers(bounds, 4, "bounds", "read_tile"), crs, size, bands=bands)
        except SliceError as e:
            raise CatalogQueryError(f"read_tile: {e}") from None
        hits = self.query(tile.bounds, bbox_crs=tile.crs)
        if len(hits) == 0:
            raise EmptyQueryError(f"read_tile: no row intersects {tile.bounds} in {tile.crs}")
        mosaic: np.ndarray | None = None
        result: GeoTensor | None = None
        for row in hits.iter_rows():
            gt = load_raster(
                tile.replace(uri=row.uri, id=row.id), resampling=resampling, dtype=dtype
            )
            values = np.asarray(gt.values)
            if mosaic is None:
                mosaic, result = values.copy(), gt
                continue
            if values.shape != mosaic.shape:
                raise CatalogQueryError(
                    f"read_tile: row {row.id!r} has {values.shape[0]} band(s), the first row "
                    f"{mosaic.shape[0]}; pass bands= to read the same bands from every row"
                )
            empty = _empty(mosaic, result.fill_value if result is not None else None)
            mosaic[empty] = values[empty]
            if not _empty(mosaic, result.fill_value if result is not None else None).any():
                break
        assert result is not None and mosaic is not None
        return result.replace(values=mosaic)


def _empty(values: np.ndarray, fill: Any) -> np.ndarray:
    out = (
        np.isnan(values)
        if np.issubdtype(values.dtype, np.floating)
        else np.zeros_like(values, dtype=bool)
    )
    fill_value = 0 if fill is None else fill
    if not (isinstance(fill_value, float) and math.isnan(fill_value)):
        out |= values == fill_value
    return out
