"""Streaming patchwise processing: a COG in, a COG out, in strips, with bounded peak memory.

Host boundary (explicit): the driver loop below runs in Python. It reads strips of the input
with :func:`georax.io.read` (each read priced against the read budget, :mod:`georax.io.budget`)
and hands strips of the output to :func:`georax.io.strip_writer`, which stages them under
temporaries and commits the raster atomically at the end. Each strip is processed by the same
compiled, fused extract -> apply -> accumulate program as the in-memory
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
capped with ``gdal_cache_mb`` while streaming.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from georax.core.errors import ConfigError
from georax.io import info, read, strip_writer
from georax.io.budget import check_read_bytes, max_read_bytes
from georax.io.raster import RasterInfo
from georax.io.strips import StripWriter
from georax.patch.extract import source_index
from georax.patch.operators import Patchwise, chip_function, has_batch_loop
from georax.patch.samplers import RegularStride
from georax.patch.stitch import grid_normaliser, patchwise_accumulate

PathLike = str | os.PathLike[str]

__all__ = ["stream_patchwise"]


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Where every chip row group of the padded scene lies, and how rows are normalised."""

    scene: tuple[int, int]
    chip: tuple[int, int]
    mode: str
    weights: Any
    groups: list[tuple[int, ...]]  # chip row starts of each group, in padded rows
    cols: tuple[int, ...]  # chip column starts, in padded columns
    row_src: np.ndarray  # source row of each padded row (-1: constant padding)
    col_src: np.ndarray
    inv_rows: np.ndarray  # reciprocal weight sums per padded row / column
    inv_cols: np.ndarray
    top: int  # padding rows above the scene
    left: int

    def group_rows(self, gi: int) -> tuple[int, int]:
        """Padded rows ``[g0, g1)`` that group `gi`'s chips cover."""
        group = self.groups[gi]
        return group[0], group[-1] + self.chip[0]

    def final_end(self, gi: int) -> int:
        """First padded row a later group still adds to (rows above it are final)."""
        return self.groups[gi + 1][0] if gi + 1 < len(self.groups) else self.group_rows(gi)[1]


def _check_streamable(op: Patchwise, strip_rows: Any) -> str:
    p = op.patcher
    if not isinstance(p.sampler, RegularStride):
        raise ConfigError("stream_patchwise", "sampler", p.sampler, "streaming needs RegularStride")
    mode = p.aggregation.kind
    if mode == "by_index":
        raise ConfigError("stream_patchwise", "aggregation", mode, "ByIndex is not stitched")
    if isinstance(strip_rows, bool) or not isinstance(strip_rows, int) or strip_rows < 1:
        raise ConfigError("stream_patchwise", "strip_rows", strip_rows, "must be a positive int")
    return mode


def _plan(op: Patchwise, meta: RasterInfo, strip_rows: int, mode: str) -> _Plan:
    """Lay the regular grid on the whole padded scene and cut its chip rows into groups."""
    p = op.patcher
    scene = (meta.height, meta.width)
    pads = p.pads(scene)
    padded = p.padded_shape(scene)
    chip = p.chip
    rows_g, cols_g = p.sampler.offsets(padded, chip)
    weights = p.weights_1d()
    w1 = weights if mode == "overlap_add" else (np.ones(chip[0]), np.ones(chip[1]))
    inv_r, inv_c = grid_normaliser(padded, chip, (rows_g, cols_g), w1)
    stride = int(p.sampler.stride[0])
    # at least enough chip rows per group that the carried overlap (chip - stride rows) lies
    # inside the next group's final rows
    m = max(1, strip_rows // stride, -(-(chip[0] - stride) // stride))
    return _Plan(
        scene=scene,
        chip=chip,
        mode=mode,
        weights=weights,
        groups=[tuple(rows_g[i : i + m]) for i in range(0, len(rows_g), m)],
        cols=tuple(cols_g),
        row_src=source_index(scene[0], pads[0], p.padding),
        col_src=source_index(scene[1], pads[1], p.padding),
        inv_rows=inv_r,
        inv_cols=inv_c,
        top=pads[0][0],
        left=pads[1][0],
    )


def _group_runner(op: Patchwise, plan: _Plan) -> Callable[[np.ndarray, int], np.ndarray]:
    """``run(xs, gi)``: group `gi`'s un-normalised canvas, one compiled program per group shape."""
    chip_fn = chip_function(op.operator)
    max_unrolled = 0 if has_batch_loop(op.operator) else None
    compiled: dict[Any, Any] = {}

    def run(xs: np.ndarray, gi: int) -> np.ndarray:
        g0 = plan.groups[gi][0]
        rel_rows = tuple(r - g0 for r in plan.groups[gi])
        cache_key = (xs.shape, rel_rows)
        if cache_key not in compiled:
            rr, cc = np.meshgrid(np.asarray(rel_rows), np.asarray(plan.cols), indexing="ij")
            pos = np.stack([rr.ravel(), cc.ravel()], 1).astype(np.int32)

            def accumulate_group(x: jax.Array) -> jax.Array:
                canvas, _ = patchwise_accumulate(
                    x, chip_fn, pos, plan.chip, batch_size=op.batch_size, weights=plan.weights,
                    aggregation=plan.mode, need_norm=False, max_unrolled=max_unrolled,
                )  # fmt: skip
                return canvas

            compiled[cache_key] = jax.jit(accumulate_group)
        return np.asarray(compiled[cache_key](jnp.asarray(xs)))

    return run


def _read_rows(
    path: str,
    rows: np.ndarray,
    cols: np.ndarray,
    fill_value: float,
    dtype: Any,
    budget: int,
) -> np.ndarray:
    """Read the padded-scene rows `rows` (source indices, -1 = constant) as ``(C, r, Wp)``.

    The padded strip is priced against the read budget before the read, like the read itself.
    """
    real = rows[rows >= 0]
    lo, hi = int(real.min()), int(real.max()) + 1
    width = int(cols[cols >= 0].max()) + 1
    block = read(path, window=((lo, hi), (0, width)), dtype=dtype, max_bytes=budget)
    if np.array_equal(rows, np.arange(lo, hi)) and np.array_equal(cols, np.arange(width)):
        return np.asarray(block.values)
    padded = (block.shape[0], len(rows), len(cols))
    check_read_bytes(path, padded, block.dtype, budget, what="the padded strip")
    out = np.asarray(block.values)[:, np.clip(rows - lo, 0, None)][:, :, np.clip(cols, 0, None)]
    if (rows < 0).any() or (cols < 0).any():
        out[:, rows < 0] = fill_value
        out[:, :, cols < 0] = fill_value
    return out


def _finish_rows(
    canvas: np.ndarray, carry: np.ndarray | None, plan: _Plan, gi: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(done, carry)``: group `gi`'s final rows, normalised, and the rows carried onward."""
    g0, _ = plan.group_rows(gi)
    end = plan.final_end(gi) - g0
    k = 0 if carry is None else carry.shape[-2]
    if plan.mode == "max":
        done = np.array(canvas[..., :end, :])
        if k:
            done[..., :k, :] = np.maximum(done[..., :k, :], carry)
    else:  # (sum + carry) * inv == sum * inv + carry * inv, row by row
        scale = plan.inv_rows[g0 : g0 + end, None] * plan.inv_cols[None, :]
        done = canvas[..., :end, :] * scale
        if k:
            done[..., :k, :] += carry * scale[:k]
    return done, np.array(canvas[..., end:, :])


def _write_scene_rows(out: StripWriter, done: np.ndarray, plan: _Plan, gi: int) -> None:
    """Crop group `gi`'s final padded rows to the scene and write them (if any)."""
    g0, _ = plan.group_rows(gi)
    r_lo = max(g0, plan.top)
    r_hi = min(plan.final_end(gi), plan.top + plan.scene[0])
    if r_hi <= r_lo:
        return
    rows = done[..., r_lo - g0 : r_hi - g0, plan.left : plan.left + plan.scene[1]]
    out.write(rows.reshape(-1, r_hi - r_lo, plan.scene[1]), r_lo - plan.top)


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
    max_bytes: int | str | None = None,
) -> str:
    """Run a :class:`Patchwise` over a raster file too large for memory, strip by strip.

    **Arguments:**

    - `op`: the patchwise operator; its patcher must use a ``RegularStride`` sampler and a
      stitching aggregation (overlap-add, mean or max).
    - `src`: input GeoTIFF/COG path (read window by window).
    - `dst`: output path; a COG when ``cog=True`` (written as a tiled GeoTIFF in strips, its
      average-resampled overviews built in place, then copied to COG layout by GDAL block by
      block; see :func:`georax.io.strips.tiled_to_cog`), else a tiled GeoTIFF. Its directory
      must exist.
    - `strip_rows`: approximate output rows per strip (rounded to whole strides); bounds memory.
    - `dtype`: the dtype the input is read as.
    - `compress`, `blocksize`: output creation options.
    - `gdal_cache_mb`: GDAL block cache limit while streaming.
    - `max_bytes`: read budget for each strip, as in :func:`georax.io.read`.

    **Returns:** the output path. The output has the input's transform, CRS and fill value
    (nodata).

    **Raises:** ``ConfigError`` for an unstreamable patcher or bad `strip_rows`; the typed
    errors of :mod:`georax.io` for the input, the output and the read budget.
    """
    mode = _check_streamable(op, strip_rows)
    budget = max_read_bytes(max_bytes, "stream_patchwise")
    meta = info(src)
    plan = _plan(op, meta, strip_rows, mode)
    run_group = _group_runner(op, plan)
    with strip_writer(
        dst, width=meta.width, height=meta.height, crs=meta.crs, transform=meta.transform,
        fill_value=meta.fill_value, cog=cog, compress=compress, blocksize=blocksize,
        gdal_cache_mb=gdal_cache_mb,
    ) as out:  # fmt: skip
        carry: np.ndarray | None = None  # un-normalised rows from the previous group
        for gi in range(len(plan.groups)):
            g0, g1 = plan.group_rows(gi)
            xs = _read_rows(
                meta.path, plan.row_src[g0:g1], plan.col_src, op.patcher.fill_value, dtype, budget
            )
            canvas = run_group(xs, gi)
            del xs
            done, carry = _finish_rows(canvas, carry, plan, gi)
            del canvas
            _write_scene_rows(out, done, plan, gi)
    return out.path
