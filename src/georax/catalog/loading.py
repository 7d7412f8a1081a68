"""Load the pixels of a :class:`~georax.catalog.GeoSlice` into a :class:`~georax.GeoTensor`.

:func:`load_raster` is the default loader of :class:`georax.run.CatalogPipeline` and of the
orchestrator task :func:`georax.run.run_task`. It returns exactly the slice's grid:

- when the raster is already on that grid (same CRS, same pixel size, whole-pixel offset) it is
  a windowed read through :func:`georax.io.read` -- no resampling, bit-exact pixels;
- otherwise the raster is reprojected/resampled on the fly through a GDAL ``WarpedVRT``, which
  reads only the source blocks under the slice;
- either way, pixels outside the raster get the fill value (a boundless read), so slices near a
  scene's edge keep their shape.

A byte budget is checked before anything is allocated, so a hostile slice (a million-pixel
square on a tiny file) is refused with a typed error instead of exhausting memory.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import rasterio
import rasterio.errors
from rasterio.dtypes import in_dtype_range
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from georax.catalog.errors import CatalogError, SliceError, SliceTooLargeError
from georax.catalog.geoslice import GeoSlice
from georax.io import BandIndexError, CorruptRasterError, CRSMismatchError, RasterDTypeError
from georax.io import info as raster_info
from georax.io import read as read_raster
from georax.io.raster import RasterInfo
from georax.tensor import GeoTensor
from georax.tensor.grid import crs_equal

__all__ = ["DEFAULT_READ_BUDGET", "RasterLoader", "load_raster"]

#: Default most bytes one :func:`load_raster` call may allocate for pixels (4 GiB).
DEFAULT_READ_BUDGET = 2**32

# A source pixel grid counts as "the slice's grid" when sizes and offsets agree to this fraction
# of a pixel; then a plain window read is exact and no resampling happens.
_ALIGN_TOL = 1e-6


def _band_indexes(slice_: GeoSlice, meta: RasterInfo) -> list[int]:
    """0-based band indices for the slice's band names (all bands when it names none)."""
    if slice_.bands is None:
        return list(range(meta.count))
    if meta.band_names is None:
        raise BandIndexError(
            f"{meta.path}: the slice asks for bands {list(slice_.bands)} by name but the file has "
            "no band descriptions"
        )
    missing = [b for b in slice_.bands if b not in meta.band_names]
    if missing:
        raise BandIndexError(
            f"{meta.path}: no band named {missing}; the file has {list(meta.band_names)}"
        )
    return [meta.band_names.index(b) for b in slice_.bands]


def _aligned_window(slice_: GeoSlice, meta: RasterInfo) -> tuple[tuple[int, int], ...] | None:
    """The pixel window of the slice in the raster when the grids coincide, else None."""
    if meta.crs is None or not crs_equal(meta.crs, slice_.crs):
        return None
    t = meta.transform
    xres, yres = slice_.resolution
    if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
        return None
    if abs(t.a - xres) > _ALIGN_TOL * xres or abs(-t.e - yres) > _ALIGN_TOL * yres:
        return None
    col = (slice_.bounds[0] - t.c) / t.a
    row = (t.f - slice_.bounds[3]) / -t.e
    if abs(col - round(col)) > _ALIGN_TOL * max(1.0, abs(col)) or abs(row - round(row)) > (
        _ALIGN_TOL * max(1.0, abs(row))
    ):
        return None
    r0, c0 = round(row), round(col)
    h, w = slice_.shape
    return (r0, r0 + h), (c0, c0 + w)


def _resampling(name: str) -> Resampling:
    try:
        return Resampling[name]
    except KeyError:
        raise CatalogError(
            f"load_raster: unknown resampling {name!r}; one of {[r.name for r in Resampling]}"
        ) from None


def _outside_fill(fill: Any, dtype: np.dtype, uri: str) -> Any:
    """The value GDAL writes where the slice leaves the raster (0 when there is no fill)."""
    value = 0 if fill is None else fill
    if isinstance(value, float) and math.isnan(value):
        ok = bool(np.issubdtype(dtype, np.floating))
    else:
        ok = bool(in_dtype_range(value, dtype.name))
    if not ok:
        raise RasterDTypeError(f"{uri}: fill value {value!r} does not fit dtype {dtype}")
    return value


def _warped_read(
    slice_: GeoSlice,
    meta: RasterInfo,
    indexes: list[int],
    resampling: Resampling,
    fill: Any,
    dtype: np.dtype,
) -> np.ndarray:
    if meta.crs is None:
        raise CRSMismatchError(
            f"{meta.path}: the raster has no CRS, so it cannot be reprojected to the slice's "
            f"{slice_.crs}"
        )
    h, w = slice_.shape
    try:
        with (
            rasterio.open(meta.path) as src,
            WarpedVRT(
                src,
                crs=slice_.crs,
                transform=slice_.transform,
                width=w,
                height=h,
                resampling=resampling,
                nodata=_outside_fill(fill, dtype, meta.path),
                dtype=dtype.name,
            ) as vrt,
        ):
            return vrt.read([i + 1 for i in indexes])
    except rasterio.errors.RasterioError as e:
        raise CorruptRasterError(
            f"{meta.path}: failed reading pixels through a WarpedVRT to {slice_.crs} "
            f"(corrupt data?): {e}"
        ) from e


def load_raster(
    slice_: GeoSlice,
    *,
    resampling: str = "nearest",
    fill_value: float | int | None = None,
    dtype: Any = None,
    max_bytes: int = DEFAULT_READ_BUDGET,
) -> GeoTensor:
    """Read a slice's pixels from ``slice_.uri`` onto the slice's grid.

    **Arguments:**

    - `slice_`: the :class:`~georax.catalog.GeoSlice` (its ``uri`` must be set).
    - `resampling`: a :class:`rasterio.enums.Resampling` name, used only when the raster's grid
      differs from the slice's (``"nearest"`` keeps values exact; ``"bilinear"`` for
      continuous data).
    - `fill_value`: value of pixels outside the raster and the result's ``fill_value``;
      default the file's nodata (outside pixels are 0 when the file has none, as in
      :func:`georax.io.read`).
    - `dtype`: cast on read; default the file's dtype.
    - `max_bytes`: refuse slices whose pixels would take more bytes than this.

    **Returns:** a ``(band, H, W)`` :class:`~georax.GeoTensor` with ``H, W = slice_.shape``,
    the slice's CRS and transform, and the file's band descriptions as ``band_names``.

    **Raises:** :class:`~georax.catalog.errors.SliceError` (no uri),
    :class:`~georax.catalog.errors.SliceTooLargeError`, and the :mod:`georax.io.errors` types
    (``RasterNotFoundError``, ``CorruptRasterError``, ``BandIndexError``, ``CRSMismatchError``,
    ``RasterDTypeError``), each naming the file.
    """
    if not isinstance(slice_, GeoSlice):
        raise SliceError(None, f"load_raster needs a GeoSlice, got {type(slice_).__name__}")
    if slice_.uri is None:
        raise SliceError("uri", "load_raster needs a slice with a uri (the raster to read)")
    meta = raster_info(slice_.uri)
    indexes = _band_indexes(slice_, meta)
    try:
        out_dtype = np.dtype(dtype if dtype is not None else meta.dtype)
    except TypeError:
        raise RasterDTypeError(f"{meta.path}: dtype {dtype!r} is not a NumPy dtype") from None
    h, w = slice_.shape
    required = len(indexes) * h * w * out_dtype.itemsize
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
        raise CatalogError(f"load_raster: max_bytes must be an int >= 0, got {max_bytes!r}")
    if required > max_bytes:
        raise SliceTooLargeError(meta.path, required, max_bytes)
    fill = fill_value if fill_value is not None else meta.fill_value
    window = _aligned_window(slice_, meta)
    if window is not None:
        gt = read_raster(
            meta.path,
            bands=indexes,
            window=window,
            boundless=True,
            fill_value=fill_value,
            dtype=out_dtype,
        )
        # the window's transform equals the slice's up to rounding: use the slice's exactly
        return gt.replace(transform=slice_.transform, crs=slice_.crs)
    values = _warped_read(slice_, meta, indexes, _resampling(resampling), fill, out_dtype)
    names = tuple(meta.band_names[i] for i in indexes) if meta.band_names else None
    return GeoTensor(values, slice_.transform, slice_.crs, fill, names)


@dataclasses.dataclass(frozen=True)
class RasterLoader:
    """:func:`load_raster` with fixed options, as a pickleable callable ``slice -> GeoTensor``.

    Pass it as ``loader=`` to :class:`georax.run.CatalogPipeline` when the defaults of
    :func:`load_raster` do not fit (``RasterLoader(resampling="bilinear", dtype="float32")``).
    A plain function would do too, as long as it is defined at module level (process pools and
    Dask pickle it by reference).

    **Arguments:** as the keywords of :func:`load_raster`; `bands` overrides the slice's bands.
    """

    resampling: str = "nearest"
    fill_value: float | int | None = None
    dtype: str | None = None
    max_bytes: int = DEFAULT_READ_BUDGET
    bands: Sequence[str] | None = None

    def __post_init__(self) -> None:
        _resampling(self.resampling)
        if self.bands is not None:
            object.__setattr__(self, "bands", tuple(self.bands))

    def __call__(self, slice_: GeoSlice) -> GeoTensor:
        if self.bands is not None:
            slice_ = slice_.replace(bands=self.bands)
        return load_raster(
            slice_,
            resampling=self.resampling,
            fill_value=self.fill_value,
            dtype=self.dtype,
            max_bytes=self.max_bytes,
        )


def is_remote(uri: str) -> bool:
    """Whether ``uri`` is a URL or GDAL virtual path rather than a local file."""
    return "://" in uri or uri.startswith("/vsi")


def resolve_uri(uri: str, base: str | None) -> str:
    """``uri`` made absolute against the directory ``base`` when it is a relative local path."""
    if is_remote(uri) or os.path.isabs(uri) or base is None:
        return uri
    return os.path.normpath(os.path.join(base, uri))
