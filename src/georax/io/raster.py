"""GeoTIFF / Cloud-Optimised GeoTIFF reading and writing through rasterio (GDAL).

This is a host boundary: reads and writes run in Python on the host, outside any compiled
program. A read returns a :class:`~georax.GeoTensor` (bands-first ``(band, H, W)``) ready for a
jitted pipeline; a write takes one back to disk.

- :func:`read`: a window, bounds in any CRS, a band list (indices or names), boundless reads
  with a fill value.
- :func:`iter_blocks`: block-wise reading of files larger than memory (bounded peak memory).
- :func:`write` / :func:`write_cog`: GeoTIFF and COG (GDAL's COG driver: tiled, overviews,
  compression, nodata, band descriptions), written atomically: GDAL writes a temporary file in the
  destination directory which then replaces the destination with :func:`os.replace`, so a crash
  never leaves a half-written output under the final name.
- :func:`info`: metadata without reading pixels.

Band indices in this API are 0-based (like the GeoTensor band axis), not GDAL's 1-based indexes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import rasterio
import rasterio.errors
from affine import Affine
from rasterio.dtypes import check_dtype, in_dtype_range
from rasterio.enums import Compression, Resampling
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from georax.core.errors import GeoraxError, ShapeError
from georax.io.errors import (
    BandIndexError,
    CorruptRasterError,
    CRSMismatchError,
    RasterDTypeError,
    RasterNotFoundError,
    RasterReadError,
    RasterWriteError,
    WindowError,
)
from georax.tensor.buffers import aligned_empty, as_jax_array
from georax.tensor.geotensor import (
    BoundingBox,
    GeoTensor,
    apply_transform,
    require_geotensor,
)
from georax.tensor.grid import crs_equal

__all__ = ["RasterInfo", "info", "iter_blocks", "read", "write", "write_cog"]

PathLike = str | os.PathLike[str]
WindowLike = Window | tuple[tuple[int, int], tuple[int, int]]


# ----------------------------------------------------------------------------- opening
def _is_local(path: str) -> bool:
    return "://" not in path and not path.startswith("/vsi")


@contextlib.contextmanager
def _open(path: PathLike) -> Iterator[Any]:
    """Open ``path`` for reading, translating failures into typed georax errors."""
    p = os.fspath(path)
    if _is_local(p):
        if not os.path.exists(p):
            raise RasterNotFoundError(f"{p}: no such file")
        if os.path.isdir(p):
            raise RasterReadError(f"{p}: is a directory, not a raster file")
    try:
        src = rasterio.open(p)
    except rasterio.errors.RasterioIOError as e:
        if _is_local(p):
            raise CorruptRasterError(
                f"{p}: not a readable raster (corrupt, truncated or unsupported format): {e}"
            ) from e
        raise RasterReadError(f"{p}: cannot open: {e}") from e
    with src:
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
    None), ``transform``, ``nodata``, ``band_names`` (descriptions, None if any is missing),
    ``block_shape`` (internal ``(rows, cols)`` tile/strip size), ``overviews`` (decimation
    factors of band 1), ``compression`` and ``bounds``.
    """

    path: str
    width: int
    height: int
    count: int
    dtype: str
    crs: str | None
    transform: Affine
    nodata: float | None
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
    :class:`~georax.io.errors.CorruptRasterError`.
    """
    with _open(path) as src:
        return RasterInfo(
            path=os.fspath(path),
            width=src.width,
            height=src.height,
            count=src.count,
            dtype=src.dtypes[0],
            crs=_crs_string(src.crs),
            transform=src.transform,
            nodata=_nodata(src.nodata, src.dtypes[0]),
            band_names=_band_names(src, range(1, src.count + 1)),
            block_shape=tuple(src.block_shapes[0]),
            overviews=tuple(src.overviews(1)),
            compression=src.compression.name.lower() if src.compression else None,
            bounds=BoundingBox(*src.bounds),
        )


# ----------------------------------------------------------------------------- reading
def _resolve_bands(src: Any, bands: Any, path: str) -> list[int]:
    """0-based indices or names -> GDAL 1-based indexes, with a typed error when out of range."""
    if bands is None:
        return list(range(1, src.count + 1))
    if isinstance(bands, int | str | np.integer):
        bands = [bands]
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


def _as_window(window: Any, path: str) -> Window:
    if isinstance(window, Window):
        w = window
    else:
        try:
            (r0, r1), (c0, c1) = window
        except (TypeError, ValueError):
            raise WindowError(
                f"{path}: window must be a rasterio Window or ((row_start, row_stop), "
                f"(col_start, col_stop)), got {window!r}"
            ) from None
        w = Window(c0, r0, c1 - c0, r1 - r0)
    # Whole pixels only: snap offsets outward when the window is fractional.
    c0, r0 = math.floor(w.col_off + 1e-6), math.floor(w.row_off + 1e-6)
    c1 = math.ceil(w.col_off + w.width - 1e-6)
    r1 = math.ceil(w.row_off + w.height - 1e-6)
    if c1 <= c0 or r1 <= r0:
        raise WindowError(f"{path}: window {window!r} is empty")
    return Window(c0, r0, c1 - c0, r1 - r0)


def _window_from_bounds(src: Any, bounds: Any, bounds_crs: Any, path: str) -> Window:
    try:
        left, bottom, right, top = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise WindowError(
            f"{path}: bounds must be (left, bottom, right, top), got {bounds!r}"
        ) from None
    if right <= left or top <= bottom:
        raise WindowError(f"{path}: bounds {bounds!r} are empty (need left<right, bottom<top)")
    if bounds_crs is not None and not crs_equal(bounds_crs, _crs_string(src.crs)):
        if src.crs is None:
            raise CRSMismatchError(
                f"{path}: raster has no CRS, cannot reproject bounds given in {bounds_crs}"
            )
        left, bottom, right, top = transform_bounds(
            bounds_crs, src.crs, left, bottom, right, top, densify_pts=21
        )
    inv = ~src.transform
    corners = [
        apply_transform(inv, x, y)
        for x, y in ((left, top), (right, top), (left, bottom), (right, bottom))
    ]
    cols = [c for c, _ in corners]
    rows = [r for _, r in corners]
    eps = 1e-6
    c0, r0 = math.floor(min(cols) + eps), math.floor(min(rows) + eps)
    c1, r1 = math.ceil(max(cols) - eps), math.ceil(max(rows) - eps)
    return Window(c0, r0, max(c1 - c0, 1), max(r1 - r0, 1))


def _read_window(
    src: Any,
    indexes: list[int],
    window: Window,
    *,
    boundless: bool,
    fill: Any,
    dtype: np.dtype,
    path: str,
) -> np.ndarray:
    """Read ``window`` (whole pixels) into a fresh aligned buffer, pasting onto ``fill``."""
    c0, r0, w, h = int(window.col_off), int(window.row_off), int(window.width), int(window.height)
    inside = c0 >= 0 and r0 >= 0 and c0 + w <= src.width and r0 + h <= src.height
    out = aligned_empty((len(indexes), h, w), dtype)
    if inside:
        src.read(indexes, window=window, out=out)
        return out
    if not boundless:
        raise WindowError(
            f"{path}: window rows [{r0}, {r0 + h}) x cols [{c0}, {c0 + w}) is not inside the "
            f"{src.height}x{src.width} raster; pass boundless=True to fill outside pixels"
        )
    out[...] = fill
    ic0, ir0 = max(c0, 0), max(r0, 0)
    ic1, ir1 = min(c0 + w, src.width), min(r0 + h, src.height)
    if ic1 > ic0 and ir1 > ir0:
        inner = Window(ic0, ir0, ic1 - ic0, ir1 - ir0)
        out[:, ir0 - r0 : ir1 - r0, ic0 - c0 : ic1 - c0] = src.read(indexes, window=inner)
    return out


def _out_dtype(dtype: Any, src: Any, indexes: list[int], path: str) -> np.dtype:
    if dtype is None:
        dtypes = {src.dtypes[i - 1] for i in indexes}
        return np.result_type(*dtypes)
    try:
        return np.dtype(dtype)
    except TypeError as e:
        raise RasterDTypeError(f"{path}: dtype {dtype!r} is not a NumPy dtype: {e}") from None


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
) -> GeoTensor:
    """Read a GeoTIFF/COG (or any GDAL raster) into a :class:`~georax.GeoTensor`.

    The result is ``(band, H, W)`` with the window's transform, the file's CRS, its nodata value
    as ``fill_value`` (or the one given) and the band descriptions as ``band_names`` (when every
    selected band has one). On the CPU backend the pixels are read into an aligned buffer that
    JAX adopts without a second copy.

    **Arguments:**

    - `path`: local path or GDAL URL.
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

    **Returns:** a :class:`~georax.GeoTensor`.

    **Raises:** ``RasterNotFoundError``, ``CorruptRasterError``, ``BandIndexError``,
    ``WindowError``, ``CRSMismatchError``, ``RasterDTypeError`` (all in
    :mod:`georax.io.errors`), each naming the path and the problem.
    """
    p = os.fspath(path)
    if window is not None and bounds is not None:
        raise WindowError(f"{p}: pass either window= or bounds=, not both")
    with _open(p) as src:
        crs = _crs_string(src.crs)
        if expect_crs is not None and not crs_equal(expect_crs, crs):
            raise CRSMismatchError(f"{p}: CRS is {crs}, expected {expect_crs}")
        indexes = _resolve_bands(src, bands, p)
        out_dtype = _out_dtype(dtype, src, indexes, p)
        if bounds is not None:
            win = _window_from_bounds(src, bounds, bounds_crs, p)
        elif window is not None:
            win = _as_window(window, p)
        else:
            win = Window(0, 0, src.width, src.height)
        nodata = _nodata(src.nodata, src.dtypes[indexes[0] - 1])
        fill = fill_value if fill_value is not None else nodata
        fill_for_outside = fill if fill is not None else 0
        if boundless and not _fits(fill_for_outside, out_dtype):
            raise RasterDTypeError(
                f"{p}: fill value {fill_for_outside!r} does not fit dtype {out_dtype}"
            )
        try:
            arr = _read_window(
                src,
                indexes,
                win,
                boundless=boundless,
                fill=fill_for_outside,
                dtype=out_dtype,
                path=p,
            )
        except rasterio.errors.RasterioIOError as e:
            raise CorruptRasterError(f"{p}: failed reading pixels (corrupt data?): {e}") from e
        transform = src.window_transform(win)
        names = _band_names(src, indexes)
    return GeoTensor(as_jax_array(arr, copy=False), transform, crs, fill, names)


def _nodata(value: float | None, dtype: str) -> float | int | None:
    """GDAL reports nodata as a float; give integer rasters an int (``0``, not ``0.0``)."""
    if value is None or math.isnan(value) or not np.issubdtype(np.dtype(dtype), np.integer):
        return value
    return int(value) if float(value).is_integer() else value


def _fits(value: Any, dtype: np.dtype) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return np.issubdtype(dtype, np.floating)
    return bool(in_dtype_range(value, dtype.name))


def iter_blocks(
    path: PathLike,
    *,
    block_shape: tuple[int, int] | None = None,
    bands: int | str | Sequence[int | str] | None = None,
    halo: int = 0,
    fill_value: float | int | None = None,
    dtype: Any = None,
) -> Iterator[tuple[Window, GeoTensor]]:
    """Read a raster block by block, for files larger than memory.

    Blocks tile the raster in row-major order; the last row/column of blocks is truncated at the
    edge, so every pixel is in exactly one block's core. Peak memory is one block (plus halo).
    The default block shape is the file's internal tiling scaled up to about 1024x1024 pixels, so
    each read touches whole tiles.

    **Arguments:**

    - `path`: the raster.
    - `block_shape`: ``(rows, cols)`` of each block's core.
    - `bands`: as in :func:`read`.
    - `halo`: extra pixels read on every side (boundless, filled with `fill_value` past the
      edges), for neighbourhood operators that need context.
    - `fill_value`, `dtype`: as in :func:`read`.

    **Yields:** ``(window, block)``: the core window in raster pixels (without halo) and the
    GeoTensor of the window grown by `halo` (its transform locates it exactly).
    """
    p = os.fspath(path)
    if halo < 0:
        raise WindowError(f"{p}: halo must be >= 0, got {halo}")
    with _open(p) as src:
        indexes = _resolve_bands(src, bands, p)
        out_dtype = _out_dtype(dtype, src, indexes, p)
        if block_shape is None:
            bh, bw = src.block_shapes[0]
            bh = bh * max(1, 1024 // max(bh, 1)) if bh < src.height else src.height
            bw = bw * max(1, 1024 // max(bw, 1)) if bw < src.width else src.width
            block_shape = (bh, bw)
        bh, bw = (int(v) for v in block_shape)
        if bh <= 0 or bw <= 0:
            raise WindowError(f"{p}: block_shape must be positive, got {block_shape}")
        nodata = _nodata(src.nodata, src.dtypes[indexes[0] - 1])
        fill = fill_value if fill_value is not None else nodata
        crs = _crs_string(src.crs)
        names = _band_names(src, indexes)
        for r0 in range(0, src.height, bh):
            for c0 in range(0, src.width, bw):
                core = Window(c0, r0, min(bw, src.width - c0), min(bh, src.height - r0))
                grown = Window(c0 - halo, r0 - halo, core.width + 2 * halo, core.height + 2 * halo)
                arr = _read_window(
                    src,
                    indexes,
                    grown,
                    boundless=True,
                    fill=fill if fill is not None else 0,
                    dtype=out_dtype,
                    path=p,
                )
                gt = GeoTensor(
                    as_jax_array(arr, copy=False), src.window_transform(grown), crs, fill, names
                )
                yield core, gt


# ----------------------------------------------------------------------------- writing
def _check_writable(gt: GeoTensor, nodata: Any, path: str) -> tuple[np.ndarray, Any]:
    arr = np.asarray(gt.values)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ShapeError(
            f"{path}: can only write (band, H, W) or (H, W) GeoTensors, got shape {arr.shape}"
        )
    if not check_dtype(arr.dtype.name):
        hint = " (cast with gt.astype('uint8'))" if arr.dtype == np.bool_ else ""
        raise RasterDTypeError(f"{path}: GeoTIFF cannot store dtype {arr.dtype}{hint}")
    if nodata is not None and not _fits(nodata, arr.dtype):
        raise RasterDTypeError(f"{path}: nodata {nodata!r} is not representable in {arr.dtype}")
    return arr, nodata


@contextlib.contextmanager
def atomic_destination(path: str, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    Every georax raster writer goes through this, so a crash or an exception never leaves a
    half-written file under the final name, and an existing file survives a failed write. On
    failure the temporary file (and any GDAL ``.aux.xml`` side-car) is removed.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise RasterWriteError(f"{path}: directory {directory} does not exist")
    if not overwrite and os.path.exists(path):
        raise RasterWriteError(f"{path}: exists and overwrite=False")
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        if os.path.exists(tmp + ".aux.xml"):  # GDAL side-car metadata travels with the file
            os.replace(tmp + ".aux.xml", path + ".aux.xml")
        os.replace(tmp, path)
    except BaseException:
        for leftover in (tmp, tmp + ".aux.xml"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(leftover)
        raise


def _write(
    gt: GeoTensor,
    path: PathLike,
    *,
    driver: str,
    nodata: Any,
    band_names: Sequence[str] | None,
    overwrite: bool,
    options: dict[str, Any],
    overviews: Sequence[int] | None = None,
    overview_resampling: str = "average",
) -> str:
    gt = require_geotensor(gt, "georax.io.write")
    p = os.fspath(path)
    nodata = gt.fill_value if nodata is None else nodata
    arr, nodata = _check_writable(gt, nodata, p)
    names = tuple(band_names) if band_names is not None else gt.band_names
    if names is not None and len(names) != arr.shape[0]:
        raise ShapeError(f"{p}: {len(names)} band names for {arr.shape[0]} band(s)")
    try:
        resampling = Resampling[overview_resampling]
    except KeyError:
        raise RasterWriteError(
            f"{p}: unknown overview_resampling {overview_resampling!r}; one of "
            f"{[r.name for r in Resampling]}"
        ) from None
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
                if overviews:
                    dst.build_overviews(list(overviews), resampling)
                    dst.update_tags(ns="rio_overview", resampling=resampling.name)
        except Exception as e:  # rasterio's CPLE_* errors do not share a public base class
            if isinstance(e, GeoraxError):
                raise
            raise RasterWriteError(f"{p}: GDAL failed to write ({driver}): {e}") from e
    return p


def _check_options(path: str, compress: str | None, blocksize: int, min_block: int) -> None:
    """Refuse options GDAL would only warn about (and then silently ignore)."""
    known = {c.name.lower() for c in Compression}
    if compress is not None and compress.lower() not in known:
        raise RasterWriteError(f"{path}: unknown compress={compress!r}; one of {sorted(known)}")
    if (
        not isinstance(blocksize, int)
        or blocksize < min_block
        or blocksize & (blocksize - 1)
        or blocksize > 8192
    ):
        raise RasterWriteError(
            f"{path}: blocksize={blocksize!r} must be a power of two in [{min_block}, 8192]"
        )


def _predictor(predictor: bool, dtype: np.dtype, cog: bool) -> Any:
    if not predictor:
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
    nodata: float | int | None = None,
    band_names: Sequence[str] | None = None,
    overviews: Sequence[int] | None = None,
    overview_resampling: str = "average",
    overwrite: bool = True,
    **creation_options: Any,
) -> str:
    """Write a GeoTensor to a (tiled, compressed) GeoTIFF, atomically.

    **Arguments:**

    - `gt`: a ``(band, H, W)`` or ``(H, W)`` GeoTensor.
    - `path`: destination; written to a temporary file in the same directory, then renamed.
    - `compress`: GDAL compression (``"deflate"``, ``"lzw"``, ``"zstd"``, None).
    - `predictor`: horizontal (integers) / floating-point predictor for better compression.
    - `tiled`, `blocksize`: internal tiling (power-of-two tiles, >= 16).
    - `nodata`: nodata value (default ``gt.fill_value``); must fit the dtype.
    - `band_names`: band descriptions (default ``gt.band_names``).
    - `overviews`: decimation factors to build internal overviews for (e.g. ``[2, 4, 8]``).
    - `overview_resampling`: a :class:`rasterio.enums.Resampling` name.
    - `overwrite`: replace an existing file (default) or raise.
    - `creation_options`: further GDAL GTiff creation options (``BIGTIFF="YES"``...).

    **Returns:** the path written.

    **Raises:** ``RasterDTypeError`` (dtype/nodata the format cannot hold), ``RasterWriteError``.
    """
    dtype = np.dtype(require_geotensor(gt, "georax.io.write").dtype)
    if tiled:
        _check_options(os.fspath(path), compress, blocksize, 16)
    options = {
        "compress": compress,
        "predictor": _predictor(predictor and compress is not None, dtype, cog=False),
        "tiled": tiled,
        **({"blockxsize": blocksize, "blockysize": blocksize} if tiled else {}),
        **creation_options,
    }
    return _write(
        gt,
        path,
        driver="GTiff",
        nodata=nodata,
        band_names=band_names,
        overwrite=overwrite,
        options=options,
        overviews=overviews,
        overview_resampling=overview_resampling,
    )


def write_cog(
    gt: GeoTensor,
    path: PathLike,
    *,
    compress: str = "deflate",
    predictor: bool = True,
    blocksize: int = 512,
    nodata: float | int | None = None,
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

    - `gt`, `path`, `nodata`, `band_names`, `overwrite`: as in :func:`write`.
    - `compress`: ``"deflate"``, ``"lzw"``, ``"zstd"``, ``"webp"``, ``"none"``...
    - `predictor`: enable the predictor (``PREDICTOR=YES``).
    - `blocksize`: tile size (power of two, >= 128: GDAL's COG driver ignores smaller ones).
    - `overview_resampling`: resampling for overviews (``"average"``, ``"nearest"``, ``"mode"``
      for categorical bands...).
    - `overviews`: ``"AUTO"`` or ``"NONE"``.
    - `creation_options`: further COG creation options (``LEVEL=9``, ``NUM_THREADS="ALL_CPUS"``).

    **Returns:** the path written.
    """
    dtype = np.dtype(require_geotensor(gt, "georax.io.write_cog").dtype)
    _check_options(os.fspath(path), compress, blocksize, 128)
    try:
        Resampling[overview_resampling]
    except KeyError:
        raise RasterWriteError(
            f"{os.fspath(path)}: unknown overview_resampling {overview_resampling!r}"
        ) from None
    options = {
        "compress": compress,
        "predictor": _predictor(predictor and compress.lower() != "none", dtype, cog=True),
        "blocksize": blocksize,
        "overview_resampling": overview_resampling,
        "overviews": overviews,
        **creation_options,
    }
    return _write(
        gt,
        path,
        driver="COG",
        nodata=nodata,
        band_names=band_names,
        overwrite=overwrite,
        options=options,
    )
