"""GeoTIFF / Cloud-Optimised GeoTIFF reading and writing through rasterio (GDAL).

This is a host boundary: reads and writes run in Python on the host, outside any compiled
program. A read returns a :class:`~georax.GeoTensor` (bands-first ``(band, H, W)``) ready for a
jitted pipeline; a write takes one back to disk.

- :func:`read`: a window, bounds in any CRS, a band list (indices or names), boundless reads
  with a fill value.
- :func:`iter_blocks`: block-wise reading of files larger than memory (bounded peak memory).
- :func:`write` / :func:`write_cog`: GeoTIFF and COG (GDAL's COG driver: tiled, overviews,
  compression, nodata, band descriptions), written atomically through
  :func:`georax.io.files.atomic_destination`, so a crash never leaves a half-written output
  under the final name and the temporaries of a dead writer are cleaned by the next write.
- :func:`info`: metadata without reading pixels.

Hostile files: only regular files are opened (:func:`georax.io.files.require_readable`), and
every read checks what it would allocate against the read budget (:mod:`georax.io.budget`)
before allocating, so a decompression bomb is refused with a typed error, not an out-of-memory.

Band indices in this API are 0-based (like the GeoTensor band axis), not GDAL's 1-based indexes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import rasterio
import rasterio.errors
from affine import Affine
from rasterio.dtypes import check_dtype, in_dtype_range
from rasterio.enums import Compression, Interleaving, Resampling
from rasterio.windows import Window

from georax.core.errors import GeoraxError, ShapeError
from georax.io.budget import MAX_BANDS, check_read_bytes, max_read_bytes
from georax.io.errors import (
    BandIndexError,
    CorruptRasterError,
    CRSMismatchError,
    RasterDTypeError,
    RasterReadError,
    RasterWriteError,
    WindowError,
)
from georax.io.files import PathLike, as_path, atomic_destination, is_local, require_readable
from georax.io.windows import WindowLike, as_window, check_crs, grown_window, window_from_bounds
from georax.tensor.buffers import aligned_empty, as_jax_array
from georax.tensor.geotensor import BoundingBox, GeoTensor, require_geotensor
from georax.tensor.grid import crs_equal

__all__ = [
    "RasterInfo",
    "check_creation_options",
    "info",
    "iter_blocks",
    "open_raster",
    "read",
    "value_fits",
    "write",
    "write_cog",
]


# ----------------------------------------------------------------------------- opening
@contextlib.contextmanager
def open_raster(path: PathLike) -> Iterator[Any]:
    """Open `path` for reading with rasterio, after refusing special files.

    **Arguments:**

    - `path`: a local path or a GDAL-readable URL.

    **Yields:** the open rasterio dataset.

    **Raises:** :class:`~georax.io.errors.RasterNotFoundError`,
    :class:`~georax.io.errors.RasterReadError` (not a regular file, a bad path),
    :class:`~georax.io.errors.CorruptRasterError`.
    """
    p = as_path(path, RasterReadError, "georax.io")
    require_readable(p)
    try:
        src = rasterio.open(p)
    except rasterio.errors.RasterioIOError as e:
        if is_local(p):
            raise CorruptRasterError(
                f"{p}: not a readable raster (corrupt, truncated or unsupported format): {e}"
            ) from e
        raise RasterReadError(f"{p}: cannot open: {e}") from e
    with src:
        if src.count > MAX_BANDS:
            raise RasterReadError(
                f"{p}: declares {src.count} bands, more than the {MAX_BANDS} georax opens "
                "(georax.io.MAX_BANDS; reading per-band metadata costs grow with the square of "
                "the band count)"
            )
        yield src


def _crs_string(crs: Any) -> str | None:
    if crs is None:
        return None
    return crs.to_string()


# ----------------------------------------------------------------------------- info
@dataclasses.dataclass(frozen=True)
class RasterInfo:
    """Metadata of a raster file (no pixels read).

    Attributes: ``path``, ``width``, ``height``, ``count`` (bands), ``dtype``, ``crs`` (string or
    None), ``transform``, ``fill_value`` (the file's nodata), ``band_names`` (descriptions, None
    if any is missing), ``block_shape`` (internal ``(rows, cols)`` tile/strip size),
    ``overviews`` (decimation factors of band 1), ``compression`` and ``bounds``.
    """

    path: str
    width: int
    height: int
    count: int
    dtype: str
    crs: str | None
    transform: Affine
    fill_value: float | int | None
    band_names: tuple[str, ...] | None
    block_shape: tuple[int, int]
    overviews: tuple[int, ...]
    compression: str | None
    bounds: BoundingBox

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel size ``(xres, yres)``, positive."""
        t = self.transform
        return (math.hypot(t.a, t.d), math.hypot(t.b, t.e))


def _band_names(src: Any, indexes: Sequence[int]) -> tuple[str, ...] | None:
    names = [src.descriptions[i - 1] for i in indexes]
    if all(names):
        return tuple(names)
    return None


def info(path: PathLike) -> RasterInfo:
    """Read a raster's metadata without reading its pixels.

    **Arguments:**

    - `path`: a local path or a GDAL-readable URL (``/vsicurl/...``, ``s3://...``).

    **Returns:** a :class:`RasterInfo`.

    **Raises:** :class:`~georax.io.errors.RasterNotFoundError`,
    :class:`~georax.io.errors.RasterReadError`, :class:`~georax.io.errors.CorruptRasterError`.
    """
    p = as_path(path, RasterReadError, "georax.io.info")
    with open_raster(p) as src:
        return RasterInfo(
            path=p,
            width=src.width,
            height=src.height,
            count=src.count,
            dtype=src.dtypes[0],
            crs=_crs_string(src.crs),
            transform=src.transform,
            fill_value=_nodata(src.nodata, src.dtypes[0]),
            band_names=_band_names(src, range(1, src.count + 1)),
            block_shape=tuple(src.block_shapes[0]),
            overviews=tuple(src.overviews(1)),
            compression=src.compression.name.lower() if src.compression else None,
            bounds=BoundingBox(*src.bounds),
        )


# ----------------------------------------------------------------------------- request checks
def _resolve_bands(src: Any, bands: Any, path: str) -> list[int]:
    """0-based indices or names -> GDAL 1-based indexes, with a typed error when out of range."""
    if bands is None:
        return list(range(1, src.count + 1))
    if isinstance(bands, int | str | np.integer):
        bands = [bands]
    try:
        bands = list(bands)
    except TypeError:
        raise BandIndexError(
            f"{path}: bands must be an index, a name or a sequence of them, got {bands!r}"
        ) from None
    out = []
    for b in bands:
        if isinstance(b, str):
            if b not in src.descriptions:
                raise BandIndexError(
                    f"{path}: no band named {b!r}; band descriptions are {src.descriptions}"
                )
            out.append(src.descriptions.index(b) + 1)
        elif isinstance(b, int | np.integer) and not isinstance(b, bool):
            i = int(b)
            if not -src.count <= i < src.count:
                raise BandIndexError(
                    f"{path}: band index {i} out of range for {src.count} band(s) "
                    f"(0-based: 0..{src.count - 1})"
                )
            out.append(i % src.count + 1)
        else:
            raise BandIndexError(f"{path}: band {b!r} is neither a 0-based index nor a name")
    if not out:
        raise BandIndexError(f"{path}: empty band list")
    return out


def _gdal_dtype(dtype: Any, path: str, what: str) -> np.dtype:
    """`dtype` as a NumPy dtype GDAL can read into or write, or a RasterDTypeError."""
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError) as e:
        raise RasterDTypeError(f"{path}: {what} {dtype!r} is not a NumPy dtype: {e}") from None
    if not check_dtype(dt.name):
        hint = " (cast with gt.astype('uint8'))" if dt == np.bool_ else ""
        raise RasterDTypeError(f"{path}: GDAL rasters cannot store {what} {dt}{hint}")
    return dt


def _out_dtype(dtype: Any, src: Any, indexes: list[int], path: str) -> np.dtype:
    if dtype is None:
        try:
            return np.result_type(*{src.dtypes[i - 1] for i in indexes})
        except TypeError:
            raise RasterDTypeError(
                f"{path}: pixel type {src.dtypes[indexes[0] - 1]} has no NumPy dtype; pass "
                "dtype= to convert on read"
            ) from None
    return _gdal_dtype(dtype, path, "dtype")


def _nodata(value: float | None, dtype: str) -> float | int | None:
    """GDAL reports nodata as a float; give integer rasters an int (``0``, not ``0.0``)."""
    if value is None or math.isnan(value) or not np.issubdtype(np.dtype(dtype), np.integer):
        return value
    return int(value) if float(value).is_integer() else value


def value_fits(value: Any, dtype: np.dtype) -> bool:
    """Whether `value` (a real number or None) is representable in `dtype` (NaN: floats only)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return bool(np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.complexfloating))
    return bool(in_dtype_range(value, dtype.name))


def _real_or_none(value: Any, path: str, what: str) -> float | int | None:
    """A fill/nodata value as a Python number, or a RasterDTypeError naming it."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RasterDTypeError(f"{path}: {what} must be a real number or None, got {value!r}")
    return value


def _request_window(src: Any, window: Any, bounds: Any, bounds_crs: Any, path: str) -> Window:
    if window is not None and bounds is not None:
        raise WindowError(f"{path}: pass either window= or bounds=, not both")
    if bounds is not None:
        return window_from_bounds(src, bounds, bounds_crs, path)
    if window is not None:
        return as_window(window, path)
    return Window(0, 0, src.width, src.height)


def _fill_values(
    src: Any, indexes: list[int], fill_value: Any, out_dtype: np.dtype, boundless: bool, p: str
) -> tuple[Any, Any]:
    """``(fill, outside)``: the GeoTensor's fill value and the value for outside pixels."""
    fill = _real_or_none(fill_value, p, "fill_value")
    if fill is None:
        fill = _nodata(src.nodata, src.dtypes[indexes[0] - 1])
    outside = fill if fill is not None else 0
    if boundless and not value_fits(outside, out_dtype):
        raise RasterDTypeError(f"{p}: fill value {outside!r} does not fit dtype {out_dtype}")
    return fill, outside


# ----------------------------------------------------------------------------- budgeted reads
def _check_block_budget(src: Any, indexes: list[int], budget: int, path: str) -> None:
    """One internal block is decompressed whole to read any of its pixels: price it too."""
    bh, bw = src.block_shapes[indexes[0] - 1]
    widest = max((src.dtypes[i - 1] for i in indexes), key=lambda d: np.dtype(d).itemsize)
    per_block = src.count if src.interleaving == Interleaving.pixel else 1
    check_read_bytes(path, (per_block, bh, bw), widest, budget, what="one internal block")


def _read_window(
    src: Any,
    indexes: list[int],
    window: Window,
    *,
    boundless: bool,
    fill_value: Any,
    dtype: np.dtype,
    path: str,
    budget: int,
) -> np.ndarray:
    """Read `window` (whole pixels) into a fresh aligned buffer, pasting onto `fill_value`.

    The buffer (and, for a window past the edges, the inner read) is priced against `budget`
    before anything is allocated.
    """
    c0, r0, w, h = int(window.col_off), int(window.row_off), int(window.width), int(window.height)
    inside = c0 >= 0 and r0 >= 0 and c0 + w <= src.width and r0 + h <= src.height
    if not inside and not boundless:
        raise WindowError(
            f"{path}: window rows [{r0}, {r0 + h}) x cols [{c0}, {c0 + w}) is not inside the "
            f"{src.height}x{src.width} raster; pass boundless=True to fill outside pixels"
        )
    ic0, ir0 = max(c0, 0), max(r0, 0)
    ic1, ir1 = min(c0 + w, src.width), min(r0 + h, src.height)
    inner = max(ic1 - ic0, 0) * max(ir1 - ir0, 0) * len(indexes) * dtype.itemsize
    what = f"window rows [{r0}, {r0 + h}) x cols [{c0}, {c0 + w})"
    shape = (len(indexes), h, w)
    check_read_bytes(path, shape, dtype, budget, what=what, extra_bytes=0 if inside else inner)
    out = aligned_empty(shape, dtype)
    try:
        if inside:
            src.read(indexes, window=window, out=out)
            return out
        out[...] = fill_value
        if inner:
            part = Window(ic0, ir0, ic1 - ic0, ir1 - ir0)
            out[:, ir0 - r0 : ir1 - r0, ic0 - c0 : ic1 - c0] = src.read(
                indexes, window=part, out_dtype=dtype
            )
    except rasterio.errors.RasterioIOError as e:
        raise CorruptRasterError(f"{path}: failed reading pixels (corrupt data?): {e}") from e
    return out


def read(
    path: PathLike,
    *,
    bands: int | str | Sequence[int | str] | None = None,
    window: WindowLike | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    bounds_crs: Any = None,
    boundless: bool = False,
    fill_value: float | int | None = None,
    dtype: Any = None,
    expect_crs: Any = None,
    max_bytes: int | str | None = None,
) -> GeoTensor:
    """Read a GeoTIFF/COG (or any GDAL raster) into a :class:`~georax.GeoTensor`.

    The result is ``(band, H, W)`` with the window's transform, the file's CRS, its nodata value
    as ``fill_value`` (or the one given) and the band descriptions as ``band_names`` (when every
    selected band has one). On the CPU backend the pixels are read into an aligned buffer that
    JAX adopts without a second copy.

    **Arguments:**

    - `path`: local path or GDAL URL. A local path must be a regular file.
    - `bands`: 0-based band indices and/or band names (descriptions), in the order wanted;
      default all bands.
    - `window`: a :class:`rasterio.windows.Window` or ``((row_start, row_stop), (col_start,
      col_stop))`` in pixels. Fractional windows are snapped outward to whole pixels.
    - `bounds`: ``(left, bottom, right, top)``; the smallest whole-pixel window covering it is
      read. Mutually exclusive with `window`.
    - `bounds_crs`: the CRS `bounds` are given in (default: the raster's); reprojected with
      :func:`rasterio.warp.transform_bounds` (densified edges).
    - `boundless`: allow windows extending past the raster; outside pixels get `fill_value`.
      Without it such a window raises :class:`~georax.io.errors.WindowError`.
    - `fill_value`: value for outside pixels and the GeoTensor's ``fill_value``; defaults to the
      file's nodata (0 for outside pixels when the file has none).
    - `dtype`: cast on read (e.g. ``"float32"``); default the file's dtype.
    - `expect_crs`: if given, the raster's CRS must equal it
      (:class:`~georax.io.errors.CRSMismatchError` otherwise).
    - `max_bytes`: the most this read may allocate (bytes or ``"2GiB"``); default the budget of
      the enclosing :func:`georax.io.read_budget` or the process default (4 GiB).

    **Returns:** a :class:`~georax.GeoTensor`.

    **Raises:** ``RasterNotFoundError``, ``RasterReadError``, ``CorruptRasterError``,
    ``BandIndexError``, ``WindowError``, ``CRSMismatchError``, ``RasterDTypeError``,
    ``ReadBudgetExceededError`` (all in :mod:`georax.io.errors`), each naming the path and the
    problem.
    """
    p = as_path(path, RasterReadError, "georax.io.read")
    budget = max_read_bytes(max_bytes, "georax.io.read")
    with open_raster(p) as src:
        crs = _crs_string(src.crs)
        if expect_crs is not None:
            expected = check_crs(expect_crs, p, "expect_crs")
            if src.crs is None or not crs_equal(expected.to_wkt(), src.crs.to_wkt()):
                raise CRSMismatchError(f"{p}: CRS is {crs}, expected {expect_crs}")
        indexes = _resolve_bands(src, bands, p)
        out_dtype = _out_dtype(dtype, src, indexes, p)
        win = _request_window(src, window, bounds, bounds_crs, p)
        fill, outside = _fill_values(src, indexes, fill_value, out_dtype, boundless, p)
        _check_block_budget(src, indexes, budget, p)
        arr = _read_window(
            src, indexes, win, boundless=boundless, fill_value=outside, dtype=out_dtype, path=p,
            budget=budget,
        )  # fmt: skip
        transform = src.window_transform(win)
        names = _band_names(src, indexes)
    return GeoTensor(as_jax_array(arr, copy=False), transform, crs, fill, names)


def _count(value: Any, what: str, path: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise WindowError(f"{path}: {what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _block_shape(src: Any, block_shape: Any, path: str) -> tuple[int, int]:
    """The block core shape: given, or the file's tiling grown to about 1024 x 1024."""
    if block_shape is None:
        bh, bw = src.block_shapes[0]
        bh = bh * max(1, 1024 // max(bh, 1)) if bh < src.height else src.height
        bw = bw * max(1, 1024 // max(bw, 1)) if bw < src.width else src.width
        return min(bh, src.height), min(bw, src.width)
    try:
        bh, bw = block_shape
    except (TypeError, ValueError):
        raise WindowError(
            f"{path}: block_shape must be (rows, cols), got {block_shape!r}"
        ) from None
    return _count(bh, "block_shape rows", path, 1), _count(bw, "block_shape cols", path, 1)


def iter_blocks(
    path: PathLike,
    *,
    block_shape: tuple[int, int] | None = None,
    bands: int | str | Sequence[int | str] | None = None,
    halo: int = 0,
    fill_value: float | int | None = None,
    dtype: Any = None,
    max_bytes: int | str | None = None,
) -> Iterator[tuple[Window, GeoTensor]]:
    """Read a raster block by block, for files larger than memory.

    Blocks tile the raster in row-major order; the last row/column of blocks is truncated at the
    edge, so every pixel is in exactly one block's core. Peak memory is one block (plus halo).
    The default block shape is the file's internal tiling scaled up to about 1024x1024 pixels, so
    each read touches whole tiles.

    **Arguments:**

    - `path`: the raster.
    - `block_shape`: ``(rows, cols)`` of each block's core, positive integers.
    - `bands`: as in :func:`read`.
    - `halo`: extra pixels read on every side (boundless, filled with `fill_value` past the
      edges), for neighbourhood operators that need context; an integer >= 0.
    - `fill_value`, `dtype`: as in :func:`read`.
    - `max_bytes`: the most one block (with halo) may allocate; as in :func:`read`. Checked for
      the largest block before the first is read.

    **Yields:** ``(window, block)``: the core window in raster pixels (without halo) and the
    GeoTensor of the window grown by `halo` (its transform locates it exactly).
    """
    p = as_path(path, RasterReadError, "georax.io.iter_blocks")
    budget = max_read_bytes(max_bytes, "georax.io.iter_blocks")
    with open_raster(p) as src:
        halo = _count(halo, "halo", p, 0)
        indexes = _resolve_bands(src, bands, p)
        out_dtype = _out_dtype(dtype, src, indexes, p)
        bh, bw = _block_shape(src, block_shape, p)
        fill, outside = _fill_values(src, indexes, fill_value, out_dtype, True, p)
        _check_block_budget(src, indexes, budget, p)
        largest = (len(indexes), min(bh, src.height) + 2 * halo, min(bw, src.width) + 2 * halo)
        check_read_bytes(p, largest, out_dtype, budget, what="one block with its halo")
        crs = _crs_string(src.crs)
        names = _band_names(src, indexes)
        for r0 in range(0, src.height, bh):
            for c0 in range(0, src.width, bw):
                core = Window(c0, r0, min(bw, src.width - c0), min(bh, src.height - r0))
                grown = grown_window(core, halo)
                arr = _read_window(
                    src, indexes, grown, boundless=True, fill_value=outside, dtype=out_dtype,
                    path=p, budget=budget,
                )  # fmt: skip
                gt = GeoTensor(
                    as_jax_array(arr, copy=False), src.window_transform(grown), crs, fill, names
                )
                yield core, gt


# ----------------------------------------------------------------------------- writing
def _band_descriptions(names: Any, count: int, path: str) -> tuple[str, ...] | None:
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise RasterWriteError(f"{path}: band_names must be a sequence of strings, got {names!r}")
    if not all(isinstance(n, str) for n in names):
        raise RasterWriteError(f"{path}: band_names must all be strings, got {tuple(names)!r}")
    if len(names) != count:
        raise ShapeError(f"{path}: {len(names)} band names for {count} band(s)")
    return tuple(names)


def _writable_array(gt: GeoTensor, fill_value: Any, path: str) -> tuple[np.ndarray, Any]:
    """The ``(band, H, W)`` host array to write and its checked fill (nodata) value."""
    arr = np.asarray(gt.values)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ShapeError(
            f"{path}: can only write (band, H, W) or (H, W) GeoTensors, got shape {arr.shape}"
        )
    if 0 in arr.shape:
        raise ShapeError(f"{path}: nothing to write, shape {arr.shape} has no pixels")
    _gdal_dtype(arr.dtype, path, "dtype")
    fill_value = _real_or_none(fill_value, path, "fill_value")
    if fill_value is not None and not value_fits(fill_value, arr.dtype):
        raise RasterDTypeError(
            f"{path}: fill_value (nodata) {fill_value!r} is not representable in {arr.dtype}"
        )
    return arr, fill_value


def _overview_factors(overviews: Any, path: str) -> list[int]:
    if not overviews:
        return []
    if isinstance(overviews, str) or not isinstance(overviews, Sequence):
        raise RasterWriteError(
            f"{path}: overviews must be a list of decimation factors such as [2, 4, 8], got "
            f"{overviews!r}"
        )
    bad = [f for f in overviews if isinstance(f, bool) or not isinstance(f, int) or f < 2]
    if bad:
        raise RasterWriteError(f"{path}: overview factors must be integers >= 2, got {bad}")
    return list(overviews)


def _resampling(name: Any, path: str) -> Resampling:
    try:
        return Resampling[name]
    except (KeyError, TypeError):
        raise RasterWriteError(
            f"{path}: unknown overview_resampling {name!r}; one of {[r.name for r in Resampling]}"
        ) from None


def _write(
    gt: GeoTensor,
    path: PathLike,
    *,
    driver: str,
    fill_value: Any,
    band_names: Sequence[str] | None,
    overwrite: bool,
    options: dict[str, Any],
    overviews: Sequence[int] | None = None,
    overview_resampling: str = "average",
) -> str:
    """Check, then write `gt` with `driver` to a temporary and commit it atomically."""
    p = as_path(path, RasterWriteError, f"georax.io.write ({driver})")
    fill_value = gt.fill_value if fill_value is None else fill_value
    arr, nodata = _writable_array(gt, fill_value, p)
    names = _band_descriptions(
        band_names if band_names is not None else gt.band_names, arr.shape[0], p
    )
    factors = _overview_factors(overviews, p)
    resampling = _resampling(overview_resampling, p)
    profile = {
        "driver": driver,
        "width": arr.shape[2],
        "height": arr.shape[1],
        "count": arr.shape[0],
        "dtype": arr.dtype.name,
        "crs": gt.crs,
        "transform": gt.transform,
        "nodata": nodata,
        **{k: v for k, v in options.items() if v is not None},
    }
    with atomic_destination(p, overwrite) as tmp:
        try:
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.write(arr)
                if names is not None:
                    dst.descriptions = names
                if factors:
                    dst.build_overviews(factors, resampling)
                    dst.update_tags(ns="rio_overview", resampling=resampling.name)
        except Exception as e:  # rasterio's CPLE_* errors do not share a public base class
            if isinstance(e, GeoraxError):
                raise
            raise RasterWriteError(f"{p}: GDAL failed to write ({driver}): {e}") from e
    return p


def check_creation_options(
    path: str, compress: Any, blocksize: Any = None, min_block: int = 16
) -> None:
    """Refuse compression names and tile sizes GDAL would only warn about (then ignore).

    **Arguments:**

    - `path`: the destination, for messages.
    - `compress`: a GDAL compression name or None.
    - `blocksize`: the tile size: a power of two in ``[min_block, 8192]`` (None: untiled).
    - `min_block`: the driver's smallest tile (16 for GTiff, 128 for COG).

    **Raises:** :class:`~georax.io.errors.RasterWriteError`.
    """
    known = {c.name.lower() for c in Compression}
    if compress is not None and (not isinstance(compress, str) or compress.lower() not in known):
        raise RasterWriteError(f"{path}: unknown compress={compress!r}; one of {sorted(known)}")
    if blocksize is not None and (
        isinstance(blocksize, bool)
        or not isinstance(blocksize, int)
        or blocksize < min_block
        or blocksize & (blocksize - 1)
        or blocksize > 8192
    ):
        raise RasterWriteError(
            f"{path}: blocksize={blocksize!r} must be a power of two in [{min_block}, 8192]"
        )


def _predictor(predictor: bool, dtype: np.dtype, cog: bool) -> Any:
    """GDAL's predictor option: horizontal (integers), floating point (floats), none otherwise."""
    real = np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
    if not predictor or not real:
        return None
    if cog:
        return "YES"  # the COG driver picks 2 (integers) or 3 (floats) itself
    return 3 if np.issubdtype(dtype, np.floating) else 2


def write(
    gt: GeoTensor,
    path: PathLike,
    *,
    compress: str | None = "deflate",
    predictor: bool = True,
    tiled: bool = True,
    blocksize: int = 512,
    fill_value: float | int | None = None,
    band_names: Sequence[str] | None = None,
    overviews: Sequence[int] | None = None,
    overview_resampling: str = "average",
    overwrite: bool = True,
    **creation_options: Any,
) -> str:
    """Write a GeoTensor to a (tiled, compressed) GeoTIFF, atomically.

    **Arguments:**

    - `gt`: a ``(band, H, W)`` or ``(H, W)`` GeoTensor.
    - `path`: destination file; written to a temporary file in the same directory, then renamed
      (see :func:`georax.io.files.atomic_destination`).
    - `compress`: GDAL compression (``"deflate"``, ``"lzw"``, ``"zstd"``, None).
    - `predictor`: horizontal (integers) / floating-point predictor for better compression.
    - `tiled`, `blocksize`: internal tiling (power-of-two tiles, >= 16).
    - `fill_value`: the value written as the file's nodata (default ``gt.fill_value``); must
      fit the dtype.
    - `band_names`: band descriptions (default ``gt.band_names``).
    - `overviews`: decimation factors to build internal overviews for (e.g. ``[2, 4, 8]``).
    - `overview_resampling`: a :class:`rasterio.enums.Resampling` name.
    - `overwrite`: replace an existing file (default) or raise.
    - `creation_options`: further GDAL GTiff creation options (``BIGTIFF="YES"``...).

    **Returns:** the path written.

    **Raises:** ``RasterDTypeError`` (dtype/fill value the format cannot hold), ``RasterWriteError``
    (bad options, a destination that is a directory or in a missing directory, GDAL failures),
    ``ShapeError``.
    """
    gt = require_geotensor(gt, "georax.io.write")
    p = as_path(path, RasterWriteError, "georax.io.write")
    check_creation_options(p, compress, blocksize if tiled else None, 16)
    options = {
        "compress": compress,
        "predictor": _predictor(predictor and compress is not None, np.dtype(gt.dtype), False),
        "tiled": tiled,
        **({"blockxsize": blocksize, "blockysize": blocksize} if tiled else {}),
        **creation_options,
    }
    return _write(
        gt,
        p,
        driver="GTiff",
        fill_value=fill_value,
        band_names=band_names,
        overwrite=overwrite,
        options=options,
        overviews=overviews,
        overview_resampling=overview_resampling,
    )


_COG_OVERVIEWS = ("AUTO", "NONE")


def write_cog(
    gt: GeoTensor,
    path: PathLike,
    *,
    compress: str | None = "deflate",
    predictor: bool = True,
    blocksize: int = 512,
    fill_value: float | int | None = None,
    band_names: Sequence[str] | None = None,
    overview_resampling: str = "average",
    overviews: str = "AUTO",
    overwrite: bool = True,
    **creation_options: Any,
) -> str:
    """Write a GeoTensor as a Cloud-Optimised GeoTIFF, atomically.

    Uses GDAL's COG driver: tiled, overviews down to one block (``overviews="AUTO"``) or none
    (``"NONE"``), IFDs and tiles ordered for HTTP range reads, so the output passes
    ``rio_cogeo.cogeo.cog_validate``.

    **Arguments:**

    - `gt`, `path`, `fill_value`, `band_names`, `overwrite`: as in :func:`write`.
    - `compress`: ``"deflate"``, ``"lzw"``, ``"zstd"``, ``"webp"``, ``"none"`` or None...
    - `predictor`: enable the predictor (``PREDICTOR=YES``) for integer and float data.
    - `blocksize`: tile size (power of two, >= 128: GDAL's COG driver ignores smaller ones).
    - `overview_resampling`: resampling for overviews (``"average"``, ``"nearest"``, ``"mode"``
      for categorical bands...).
    - `overviews`: ``"AUTO"`` or ``"NONE"``.
    - `creation_options`: further COG creation options (``LEVEL=9``, ``NUM_THREADS="ALL_CPUS"``).

    **Returns:** the path written.
    """
    gt = require_geotensor(gt, "georax.io.write_cog")
    p = as_path(path, RasterWriteError, "georax.io.write_cog")
    check_creation_options(p, compress, blocksize, 128)
    _resampling(overview_resampling, p)
    if not isinstance(overviews, str) or overviews.upper() not in _COG_OVERVIEWS:
        raise RasterWriteError(f"{p}: overviews={overviews!r} must be one of {_COG_OVERVIEWS}")
    compress = "none" if compress is None else compress
    options = {
        "compress": compress,
        "predictor": _predictor(
            predictor and compress.lower() != "none", np.dtype(gt.dtype), cog=True
        ),
        "blocksize": blocksize,
        "overview_resampling": overview_resampling,
        "overviews": overviews.upper(),
        **creation_options,
    }
    return _write(
        gt,
        p,
        driver="COG",
        fill_value=fill_value,
        band_names=band_names,
        overwrite=overwrite,
        options=options,
    )
