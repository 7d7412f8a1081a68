"""Streaming patchwise processing: a COG in, a COG out, in strips, with bounded peak memory.

Host boundary (explicit): the driver loop below runs in Python, reads strips of the input with
:func:`georax.io.raster.read` (rasterio windows) and writes strips of the output with rasterio
(georax.io writes whole GeoTensors; writing window by window is this module's job). Each strip is
processed by the same compiled, fused extract -> apply -> accumulate program as the in-memory
:class:`~georax.patch.Patchwise`.

How seams stay exact. The regular grid is laid out on the *whole* (padded) scene exactly as the
in-memory path does. Chip rows are processed in groups of ``m`` (``strip_rows // stride``): a group
reads the padded rows its chips cover, i.e. its strip plus a halo of ``chip - stride`` rows
shared with the next group, and returns the un-normalised weighted sum. Rows that no later chip
touches (those above the next group's first chip) are final: they are normalised with the global
separable weight sum and written. The rest (the ``chip - stride`` overlap rows) are carried to
the next group and added to its sum. Every chip is computed once, and the output equals the
in-memory result up to float summation order.

Peak memory is bounded by one group: about ``(strip_rows + chip) * W * bands * 4`` bytes for the
input strip and as much for its canvas, independent of the scene height; GDAL's block cache is
capped with ``GDAL_CACHEMAX`` while streaming.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.windows import Window

from georax.core.errors import ConfigError
from georax.io.raster import atomic_destination
from georax.patch.operators import Patchwise, _chip_fn
from georax.patch.samplers import RegularStride
from georax.patch.stitch import grid_normaliser, patchwise_accumulate

PathLike = str | os.PathLike[str]


def _source_index(n: int, pads: tuple[int, int], mode: str) -> np.ndarray:
    """For each padded index along an axis, the source index (-1 for constant padding)."""
    idx = np.arange(n)
    if pads == (0, 0):
        return idx
    if mode == "constant":
        return np.pad(idx, pads, mode="constant", constant_values=-1)
    if mode == "reflect" and n == 1:
        mode = "edge"
    return np.pad(idx, pads, mode=mode)


def _read_rows(
    path: str,
    rows: np.ndarray,
    cols: np.ndarray,
    pad_value: float,
    dtype: Any,
) -> np.ndarray:
    """Read the padded-scene rows ``rows`` (source indices, -1 = constant) as (C, r, Wp)."""
    from georax.io.raster import read

    real = rows[rows >= 0]
    lo, hi = int(real.min()), int(real.max()) + 1
    width = int(cols[cols >= 0].max()) + 1
    block = np.asarray(read(path, window=((lo, hi), (0, width)), dtype=dtype).values)
    if np.array_equal(rows, np.arange(lo, hi)) and np.array_equal(cols, np.arange(width)):
        return block
    out = block[:, np.clip(rows - lo, 0, None)][:, :, np.clip(cols, 0, None)]
    if (rows < 0).any() or (cols < 0).any():
        out[:, rows < 0] = pad_value
        out[:, :, cols < 0] = pad_value
    return out


def overview_factors(shape: tuple[int, int], blocksize: int) -> list[int]:
    """Overview decimation factors ``2, 4, ...`` until the largest overview side is
    ``<= blocksize`` (the COG driver's ``OVERVIEWS=AUTO`` rule); empty for small rasters."""
    out, f = [], 2
    while max(shape) > blocksize * (f // 2):
        out.append(f)
        f *= 2
    return out


def _tiled_to_cog(tiled: str, dst: str, *, compress: str, blocksize: int) -> None:
    """Turn the uncompressed tiled GeoTIFF written strip by strip into a COG at ``dst``.

    The overviews (average resampling) are first built *inside* the tiled file by the GTiff
    driver, level by level from the previous level, then GDAL's COG driver copies the file
    block by block, reusing them (``OVERVIEWS=FORCE_USE_EXISTING``). Both steps hold only GDAL's
    block cache. Why not let the COG driver build them (``OVERVIEWS=AUTO``): on a
    4 x 16384 x 16384 float32 scene its temporary ``.ovr.tmp`` file grew past 20 GB (for ~1.4 GB
    of overviews) and was still growing after three minutes.
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


def stream_patchwise(
    op: Patchwise,
    src: PathLike,
    dst: PathLike,
    *,
    strip_rows: int = 512,
    dtype: str = "float32",
    cog: bool = True,
    compress: str = "deflate",
    blocksize: int = 512,
    gdal_cache_mb: int = 128,
) -> str:
    """Run a :class:`Patchwise` over a raster file too large for memory, strip by strip.

    **Arguments:**

    - `op`: the patchwise operator; its patcher must use a ``RegularStride`` sampler and a
      stitching aggregation (overlap-add, mean or max).
    - `src`: input GeoTIFF/COG path (read window by window).
    - `dst`: output path; a COG when ``cog=True`` (written as a tiled GeoTIFF in strips, its
      average-resampled overviews built in place, then copied to COG layout by GDAL block by
      block; see :func:`_tiled_to_cog`), else a tiled GeoTIFF.
    - `strip_rows`: approximate output rows per strip (rounded to whole strides); bounds memory.
    - `dtype`: the dtype the input is read as.
    - `compress`, `blocksize`: output creation options.
    - `gdal_cache_mb`: GDAL block cache limit while streaming.

    **Returns:** the output path. The output has the input's transform, CRS and nodata.
    """
    from georax.io.raster import info

    p = op.patcher
    if not isinstance(p.sampler, RegularStride):
        raise ConfigError("stream_patchwise", "sampler", p.sampler, "streaming needs RegularStride")
    mode = p.aggregation.mode
    if mode == "by_index":
        raise ConfigError("stream_patchwise", "aggregation", mode, "ByIndex is not stitched")
    if isinstance(strip_rows, bool) or not isinstance(strip_rows, int) or strip_rows < 1:
        raise ConfigError("stream_patchwise", "strip_rows", strip_rows, "must be a positive int")
    src, dst = os.fspath(src), os.fspath(dst)
    meta = info(src)
    scene = (meta.height, meta.width)
    pads = p.pads(scene)
    padded = p.padded_shape(scene)
    chip = p.chip
    rows_g, cols_g = p.sampler.grid(padded, chip)
    weights = p.weights_1d()
    w1 = weights if mode == "overlap_add" else (np.ones(chip[0]), np.ones(chip[1]))
    inv_r, inv_c = grid_normaliser(padded, chip, (rows_g, cols_g), w1)
    row_src = _source_index(scene[0], pads[0], p.padding)
    col_src = _source_index(scene[1], pads[1], p.padding)
    top, left = pads[0][0], pads[1][0]
    stride = int(p.sampler.stride[0])
    # at least enough chip rows per group that the carried overlap (chip - stride rows) lies
    # inside the next group's final rows
    m = max(1, strip_rows // stride, -(-(chip[0] - stride) // stride))
    groups = [rows_g[i : i + m] for i in range(0, len(rows_g), m)]
    fn = _chip_fn(op.operator)
    compiled: dict[Any, Any] = {}

    def run_group(xs: np.ndarray, rel_rows: tuple[int, ...]) -> np.ndarray:
        cache_key = (xs.shape, rel_rows)
        if cache_key not in compiled:
            rr, cc = np.meshgrid(np.asarray(rel_rows), np.asarray(cols_g), indexing="ij")
            pos = np.stack([rr.ravel(), cc.ravel()], 1).astype(np.int32)

            def accumulate_group(x: jax.Array) -> jax.Array:
                canvas, _ = patchwise_accumulate(
                    x,
                    fn,
                    pos,
                    chip,
                    batch_size=op.batch_size,
                    weights=weights,
                    mode=mode,
                    need_norm=False,
                )
                return canvas

            compiled[cache_key] = jax.jit(accumulate_group)
        return np.asarray(compiled[cache_key](jnp.asarray(xs)))

    tmp_dir = tempfile.mkdtemp(prefix="georax-stream-", dir=os.path.dirname(os.path.abspath(dst)))
    try:
        # Everything lands under a temporary name first: a crash mid-stream (a failed read, a
        # full disk) never leaves a half-written raster at `dst` nor destroys the old one.
        with (
            atomic_destination(dst, overwrite=True) as staged,
            rasterio.Env(GDAL_CACHEMAX=int(gdal_cache_mb)),
        ):
            tiled = os.path.join(tmp_dir, "strips.tif") if cog else staged
            carry: np.ndarray | None = None  # un-normalised rows [g0, ...) from the last group
            dst_ds = None
            try:
                for gi, group in enumerate(groups):
                    g0, g1 = group[0], group[-1] + chip[0]
                    xs = _read_rows(src, row_src[g0:g1], col_src, p.pad_value, dtype)
                    canvas = run_group(xs, tuple(r - g0 for r in group))
                    del xs
                    final_end = groups[gi + 1][0] if gi + 1 < len(groups) else g1
                    k = 0 if carry is None else carry.shape[-2]
                    if mode == "max":
                        done = np.array(canvas[..., : final_end - g0, :])
                        if k:
                            done[..., :k, :] = np.maximum(done[..., :k, :], carry)
                    else:  # (sum + carry) * inv == sum * inv + carry * inv, row by row
                        scale = inv_r[g0:final_end, None] * inv_c[None, :]
                        done = canvas[..., : final_end - g0, :] * scale
                        if k:
                            done[..., :k, :] += carry * scale[:k]
                    carry = np.array(canvas[..., final_end - g0 :, :])
                    del canvas
                    # padded rows [g0, final_end) -> scene rows, cropped to the scene
                    r_lo, r_hi = max(g0, top), min(final_end, top + scene[0])
                    if r_hi <= r_lo:
                        continue
                    out = done[..., r_lo - g0 : r_hi - g0, left : left + scene[1]]
                    out = out.reshape(-1, r_hi - r_lo, scene[1])
                    if dst_ds is None:
                        dst_ds = rasterio.open(
                            tiled,
                            "w",
                            driver="GTiff",
                            width=scene[1],
                            height=scene[0],
                            count=out.shape[0],
                            dtype=out.dtype,
                            crs=meta.crs,
                            transform=meta.transform,
                            nodata=meta.nodata,
                            tiled=True,
                            blockxsize=blocksize,
                            blockysize=blocksize,
                            compress="none" if cog else compress,
                            BIGTIFF="IF_SAFER",
                        )
                    dst_ds.write(
                        np.ascontiguousarray(out),
                        window=Window(0, r_lo - top, scene[1], r_hi - r_lo),
                    )
            finally:
                if dst_ds is not None:
                    dst_ds.close()
            if cog:
                _tiled_to_cog(tiled, staged, compress=compress, blocksize=blocksize)
    finally:
        strips = os.path.join(tmp_dir, "strips.tif")
        if os.path.exists(strips):
            os.remove(strips)
        if os.path.isdir(tmp_dir):
            os.rmdir(tmp_dir)
    return dst
