"""Writing a raster strip by strip, for outputs larger than memory, atomically.

:func:`strip_writer` is the write half of streaming (:mod:`georax.patch.streaming` reads strips
with :func:`georax.io.read` and writes them here): the caller hands over row strips
``(band, rows, W)`` in any order, and on leaving the ``with`` block the raster is committed
under its final name -- as a tiled GeoTIFF, or as a COG whose average-resampled overviews are
built from the finished strips. Until then everything lives under temporaries of
:func:`georax.io.files.atomic_destination`, so a failure or a crash mid-stream never leaves a
half-written raster at the destination nor destroys the old one.

Peak memory is one strip plus GDAL's block cache (``gdal_cache_mb``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Iterator
from typing import Any

import numpy as np
import rasterio
import rasterio.errors
import rasterio.shutil
from rasterio.dtypes import check_dtype
from rasterio.enums import Resampling
from rasterio.windows import Window

from georax.core.errors import GeoraxError, ShapeError
from georax.io.errors import RasterDTypeError, RasterWriteError
from georax.io.files import PathLike, as_path, atomic_destination
from georax.io.raster import check_creation_options, value_fits

__all__ = ["StripWriter", "overview_factors", "strip_writer", "tiled_to_cog"]


def overview_factors(shape: tuple[int, int], blocksize: int) -> list[int]:
    """Overview decimation factors ``2, 4, ...`` until the largest overview side is
    ``<= blocksize`` (the COG driver's ``OVERVIEWS=AUTO`` rule); empty for small rasters."""
    out, f = [], 2
    while max(shape) > blocksize * (f // 2):
        out.append(f)
        f *= 2
    return out


def tiled_to_cog(tiled: str, dst: str, *, compress: str, blocksize: int) -> None:
    """Turn an uncompressed tiled GeoTIFF into a COG at `dst`, holding only GDAL's block cache.

    The overviews (average resampling) are first built *inside* the tiled file by the GTiff
    driver, level by level from the previous level, then GDAL's COG driver copies the file
    block by block, reusing them (``OVERVIEWS=FORCE_USE_EXISTING``). Why not let the COG driver
    build them (``OVERVIEWS=AUTO``): on a 4 x 16384 x 16384 float32 scene its temporary
    ``.ovr.tmp`` file grew past 20 GB (for ~1.4 GB of overviews) and was still growing after
    three minutes.
    """
    with rasterio.open(tiled) as d:
        factors = overview_factors((d.height, d.width), blocksize)
    if factors:
        with (
            rasterio.Env(GDAL_TIFF_OVR_BLOCKSIZE=int(blocksize)),
            rasterio.open(tiled, "r+") as d,
        ):
            d.build_overviews(factors, Resampling.average)
    rasterio.shutil.copy(
        tiled,
        dst,
        driver="COG",
        compress=compress,
        blocksize=blocksize,
        BIGTIFF="IF_SAFER",
        OVERVIEWS="FORCE_USE_EXISTING" if factors else "NONE",
    )


@dataclasses.dataclass
class StripWriter:
    """The object :func:`strip_writer` yields: call :meth:`write` once per strip.

    The file is created on the first :meth:`write`, with that strip's band count and dtype;
    later strips must match them.
    """

    path: str
    staged: str
    width: int
    height: int
    profile: dict[str, Any]
    cog: bool
    _dataset: Any = dataclasses.field(default=None, init=False, repr=False)
    _rows: list[tuple[int, int]] = dataclasses.field(default_factory=list, init=False, repr=False)

    def write(self, rows: np.ndarray, row_off: int) -> None:
        """Write a strip ``(band, r, W)`` (or ``(r, W)``) at raster rows ``[row_off, row_off + r)``.

        **Raises:** :class:`~georax.errors.ShapeError` for a strip of the wrong width, band
        count or dtype, or rows outside the raster; ``RasterWriteError`` when GDAL fails.
        """
        rows = np.asarray(rows)
        if rows.ndim == 2:
            rows = rows[None]
        if rows.ndim != 3 or rows.shape[2] != self.width:
            raise ShapeError(
                f"{self.path}: a strip must be (band, rows, {self.width}), got {rows.shape}"
            )
        if isinstance(row_off, bool) or not isinstance(row_off, int | np.integer):
            raise ShapeError(f"{self.path}: row_off must be an integer, got {row_off!r}")
        r0, r1 = int(row_off), int(row_off) + rows.shape[1]
        if r0 < 0 or r1 > self.height:
            raise ShapeError(f"{self.path}: rows [{r0}, {r1}) are outside 0..{self.height}")
        if self._dataset is None:
            self._open(rows.shape[0], rows.dtype)
        elif (rows.shape[0], rows.dtype.name) != (self._dataset.count, self._dataset.dtypes[0]):
            raise ShapeError(
                f"{self.path}: strip has {rows.shape[0]} band(s) of {rows.dtype}; earlier strips "
                f"had {self._dataset.count} of {self._dataset.dtypes[0]}"
            )
        try:
            self._dataset.write(
                np.ascontiguousarray(rows), window=Window(0, r0, self.width, r1 - r0)
            )
        except rasterio.errors.RasterioError as e:
            raise RasterWriteError(
                f"{self.path}: GDAL failed to write rows [{r0}, {r1}): {e}"
            ) from e
        self._rows.append((r0, r1))

    def _open(self, count: int, dtype: np.dtype) -> None:
        if not check_dtype(dtype.name):
            raise RasterDTypeError(f"{self.path}: GDAL rasters cannot store dtype {dtype}")
        fill_value = self.profile.get("nodata")
        if fill_value is not None and not value_fits(fill_value, dtype):
            raise RasterWriteError(f"{self.path}: fill_value {fill_value!r} does not fit {dtype}")
        if self.cog:  # the staging file is uncompressed: make sure the disk can hold it
            need = self.width * self.height * count * dtype.itemsize * 4 // 3
            free = shutil.disk_usage(os.path.dirname(self.staged)).free
            if need > free:
                raise RasterWriteError(
                    f"{self.path}: staging the COG needs about {need} bytes on disk, "
                    f"{free} are free"
                )
        try:
            self._dataset = rasterio.open(
                self.staged, "w", count=count, dtype=dtype.name, **self.profile
            )
        except rasterio.errors.RasterioError as e:
            raise RasterWriteError(f"{self.path}: GDAL cannot create the raster: {e}") from e

    def close(self) -> None:
        """Close the staged file (idempotent)."""
        if self._dataset is not None:
            self._dataset.close()

    def missing_rows(self) -> list[tuple[int, int]]:
        """Row ranges not written yet, ``[(start, stop), ...]``."""
        gaps, done = [], 0
        for r0, r1 in sorted(self._rows):
            if r0 > done:
                gaps.append((done, r0))
            done = max(done, r1)
        if done < self.height:
            gaps.append((done, self.height))
        return gaps


@contextlib.contextmanager
def strip_writer(
    path: PathLike,
    *,
    width: int,
    height: int,
    crs: Any,
    transform: Any,
    fill_value: float | int | None = None,
    cog: bool = True,
    compress: str | None = "deflate",
    blocksize: int = 512,
    gdal_cache_mb: int = 128,
    overwrite: bool = True,
) -> Iterator[StripWriter]:
    """Open a raster of ``height x width`` to be written strip by strip; commit it on exit.

    Every row must have been written when the block ends, otherwise nothing is committed and
    :class:`~georax.io.errors.RasterWriteError` names the missing rows. GDAL's block cache is
    capped at `gdal_cache_mb` inside the block (reads made there included).

    **Arguments:**

    - `path`: the destination.
    - `width`, `height`: the raster size in pixels.
    - `crs`, `transform`: georeferencing of the output.
    - `fill_value`: the output's nodata value.
    - `cog`: write a Cloud-Optimised GeoTIFF (strips staged uncompressed, overviews built
      from them, then copied to COG layout; see :func:`tiled_to_cog`), else a tiled, compressed
      GeoTIFF written in place of the temporary.
    - `compress`, `blocksize`: output creation options.
    - `gdal_cache_mb`: GDAL block cache limit while the block runs.
    - `overwrite`: replace an existing file (default) or refuse.

    **Yields:** a :class:`StripWriter`.
    """
    p = as_path(path, RasterWriteError, "georax.io.strip_writer")
    check_creation_options(p, compress, blocksize, 16)
    compress = "none" if compress is None else compress
    for name, value in (("width", width), ("height", height), ("gdal_cache_mb", gdal_cache_mb)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise RasterWriteError(f"{p}: {name} must be a positive integer, got {value!r}")
    profile = {
        "driver": "GTiff",
        "width": int(width),
        "height": int(height),
        "crs": crs,
        "transform": transform,
        "nodata": fill_value,
        "tiled": True,
        "blockxsize": blocksize,
        "blockysize": blocksize,
        "compress": "none" if cog else compress,
        "BIGTIFF": "IF_SAFER",
    }
    with (
        atomic_destination(p, overwrite) as staged,
        rasterio.Env(GDAL_CACHEMAX=int(gdal_cache_mb)),
    ):
        tiled = staged + ".strips.tif" if cog else staged
        writer = StripWriter(p, tiled, int(width), int(height), profile, cog)
        try:
            yield writer
        finally:
            writer.close()
        missing = writer.missing_rows()
        if missing:
            raise RasterWriteError(f"{p}: rows {missing} were never written; nothing committed")
        if cog:
            try:
                tiled_to_cog(tiled, staged, compress=compress, blocksize=blocksize)
            except Exception as e:  # rasterio's CPLE_* errors do not share a public base class
                if isinstance(e, GeoraxError):
                    raise
                raise RasterWriteError(f"{p}: GDAL failed to write the COG: {e}") from e
