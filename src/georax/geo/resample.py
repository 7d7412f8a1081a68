"""Resampling rasters between grids: the pure functions behind :mod:`georax.geo.fusion`.

A :class:`Grid` (CRS, affine transform, shape) is static metadata, known at trace time. Resampling
from a source grid to a target grid therefore splits into

1. a **host step** (NumPy/pyproj, run once per pair of grids while tracing, cached): where does each
   target pixel centre fall in the source array, and which target pixels lie outside the source
   extent; and
2. a **device step** (``jax.numpy``, compiled, differentiable w.r.t. the pixel values): the
   interpolation itself.

Two device paths:

- same CRS, both grids north-up/axis-aligned, bilinear: :func:`jax.image.scale_and_translate`
  with a triangle kernel, separable and antialiased (when downsampling, the kernel is widened to
  the target pixel size, as GDAL's warper does);
- otherwise (different CRS, rotated grids): a per-pixel coordinate map computed with pyproj,
  then :func:`jax.scipy.ndimage.map_coordinates` (order 1). This is *point* bilinear
  interpolation: it matches GDAL when the target is as fine as or finer than the source, but is
  not antialiased, so when a different-CRS target is coarser than the source it aliases where
  GDAL would average (resample in the source CRS first, or choose the finer grid as target).
- nearest: a gather of the source pixel containing each target centre (both paths).

Missing data is NaN, in and out, with GDAL's rules: a target pixel is NaN when its centre falls
outside the source extent or in a NaN source pixel; otherwise interpolation is *normalised* —
values and a validity mask are interpolated with the same weights and divided — so a NaN source
pixel removes its weight instead of poisoning its neighbours (or, for the separable path, whole
rows). Pixel-centre conventions follow GDAL: pixel ``(col, row)`` has
its centre at ``transform * (col + 0.5, row + 0.5)``.
"""

from __future__ import annotations

import functools
import math
import typing
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from georax.array.validate import real_float
from georax.core.errors import ConfigError, GeoraxError, ShapeError
from georax.tensor.grid import Grid, crs_equal

__all__ = [
    "PLAN_BYTES_PER_PIXEL",
    "RESAMPLING_METHODS",
    "Resampling",
    "NoOverlapError",
    "resample",
    "source_pixel_coordinates",
]

#: How a value between source pixels is computed.
Resampling = Literal["bilinear", "nearest"]
RESAMPLING_METHODS: tuple[str, ...] = typing.get_args(Resampling)


class NoOverlapError(GeoraxError, ValueError):
    """A source raster does not cover a single pixel centre of the target grid."""


@functools.lru_cache(maxsize=64)
def _crs(crs: str) -> Any:
    import pyproj

    return pyproj.CRS.from_user_input(crs)


@functools.lru_cache(maxsize=16)
def _transformer(src_crs: str, dst_crs: str) -> Any:
    import pyproj

    return pyproj.Transformer.from_crs(_crs(dst_crs), _crs(src_crs), always_xy=True)


@functools.lru_cache(maxsize=8)
def source_pixel_coordinates(src: Grid, dst: Grid) -> np.ndarray:
    """Where each target pixel centre falls in the source array (host step, pyproj, cached).

    **Arguments:**

    - `src`: the source grid.
    - `dst`: the target grid.

    **Returns:** a read-only float64 array ``(2, H_dst, W_dst)`` of fractional *index* coordinates
    ``(row, col)`` into the source array: ``0`` is the centre of the first pixel, so the source
    extent spans ``[-0.5, n - 0.5]``. Points the projection cannot map are NaN.
    """
    h, w = dst.shape
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    a, b, c, d, e, f = dst.transform
    x = a * cols + b * rows + c
    y = d * cols + e * rows + f
    if not crs_equal(src.crs, dst.crs):
        with np.errstate(invalid="ignore"):
            x, y = _transformer(src.crs, dst.crs).transform(x, y)
        x = np.where(np.isfinite(x), x, np.nan)
        y = np.where(np.isfinite(y), y, np.nan)
    inv = ~src.affine
    src_col = inv.a * x + inv.b * y + inv.c - 0.5
    src_row = inv.d * x + inv.e * y + inv.f - 0.5
    out = np.stack([src_row, src_col])
    out.setflags(write=False)
    return out


def _inside(coords: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    with np.errstate(invalid="ignore"):
        return (
            (coords[0] >= -0.5)
            & (coords[0] <= h - 0.5)
            & (coords[1] >= -0.5)
            & (coords[1] <= w - 0.5)
        )


def _separable_params(
    src: Grid, dst: Grid
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """``(scale, translation)`` for rows and columns when dst is a scaled/shifted src, else None."""
    if not (src.is_axis_aligned and dst.is_axis_aligned and crs_equal(src.crs, dst.crs)):
        return None
    a_s, _, c_s, _, e_s, f_s = src.transform
    a_d, _, c_d, _, e_d, f_d = dst.transform
    # continuous pixel coordinates (edges at integers): dst = scale * src + translation
    col = (a_s / a_d, (c_s - c_d) / a_d)
    row = (e_s / e_d, (f_s - f_d) / e_d)
    if col[0] <= 0 or row[0] <= 0:
        return None
    return row, col


def _nearest_index(coord: np.ndarray, n: int) -> np.ndarray:
    """Index of the source pixel containing each (index-)coordinate: floor(coord + 0.5)."""
    return np.clip(np.floor(np.nan_to_num(coord, nan=0.0) + 0.5), 0, n - 1).astype(np.int32)


class _Plan(NamedTuple):
    """How to resample from one grid to another, decided on the host while tracing.

    ``inside``: which target pixels have their centre in the source extent; ``r_idx``/``c_idx``:
    the source pixel containing each target centre (nearest neighbour; broadcast against
    ``inside``); ``interp``: the bilinear interpolation (array on ``src`` -> array on ``dst``), or
    None for nearest.
    """

    inside: np.ndarray
    r_idx: np.ndarray
    c_idx: np.ndarray
    interp: Callable[[Array], Array] | None


def _separable_plan(
    src: Grid, dst: Grid, batch: tuple[int, ...], resampling: str, sep: tuple[Any, Any]
) -> _Plan:
    """Plan for a target that is a scaled and shifted copy of the source grid (same CRS)."""
    hs, ws = src.shape
    h, w = dst.shape
    (row_scale, row_shift), (col_scale, col_shift) = sep
    # index coordinates of the target pixel centres, one vector per axis
    rows = (np.arange(h) + 0.5 - row_shift) / row_scale - 0.5
    cols = (np.arange(w) + 0.5 - col_shift) / col_scale - 0.5
    inside = ((rows >= -0.5) & (rows <= hs - 0.5))[:, None] & ((cols >= -0.5) & (cols <= ws - 0.5))[
        None, :
    ]
    r_idx = _nearest_index(rows, hs)[:, None]
    c_idx = _nearest_index(cols, ws)[None, :]
    if resampling != "bilinear":
        return _Plan(inside, r_idx, c_idx, None)

    def interp(v: Array) -> Array:
        nd = v.ndim
        return jax.image.scale_and_translate(
            v,
            (*batch, h, w),
            (nd - 2, nd - 1),
            jnp.array([row_scale, col_scale], v.dtype),
            jnp.array([row_shift, col_shift], v.dtype),
            method="linear",
            antialias=True,
        )

    return _Plan(inside, r_idx, c_idx, interp)


def _coordinate_plan(src: Grid, dst: Grid, batch: tuple[int, ...], resampling: str) -> _Plan:
    """Plan through a per-pixel coordinate map (different CRS or rotated grids)."""
    hs, ws = src.shape
    h, w = dst.shape
    coords = source_pixel_coordinates(src, dst)
    inside = _inside(coords, src.shape)
    r_idx = _nearest_index(coords[0], hs)
    c_idx = _nearest_index(coords[1], ws)
    if resampling != "bilinear":
        return _Plan(inside, r_idx, c_idx, None)
    # clamp into the pixel-centre range: the outer half pixel takes the edge value (GDAL)
    safe = jnp.asarray(
        np.stack(
            [
                np.clip(np.nan_to_num(coords[0], nan=0.0), 0, hs - 1),
                np.clip(np.nan_to_num(coords[1], nan=0.0), 0, ws - 1),
            ]
        ).astype(np.float32)
    )

    def interp(v: Array) -> Array:
        flat = v.reshape((-1, hs, ws))
        out = jax.vmap(
            lambda img: jax.scipy.ndimage.map_coordinates(
                img, (safe[0], safe[1]), order=1, mode="nearest"
            )
        )(flat)
        return out.reshape((*batch, h, w))

    return _Plan(inside, r_idx, c_idx, interp)


def _apply_plan(values: Array, plan: _Plan) -> Array:
    """Resample with GDAL's missing-data rules: NaN outside, normalised weights inside."""
    # the source pixel containing each target centre (nearest neighbour)
    centre = values[..., jnp.asarray(plan.r_idx), jnp.asarray(plan.c_idx)]
    ok = jnp.asarray(plan.inside) & jnp.isfinite(centre)
    if plan.interp is None:
        return jnp.where(ok, centre, jnp.nan)
    valid = jnp.isfinite(values)
    num = plan.interp(jnp.where(valid, values, 0.0))
    den = plan.interp(valid.astype(values.dtype))
    ok = ok & (den > 0)
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), jnp.nan)


def resample(
    values: Float[Array, "*batch H W"],
    src: Grid,
    dst: Grid,
    *,
    resampling: str = "bilinear",
) -> Float[Array, "*batch h w"]:
    """Resample an array from grid ``src`` to grid ``dst`` (see the module docstring for the math).

    The grids are static (host) metadata; only ``values`` is traced, so this compiles, vmaps over
    leading axes and is differentiable with respect to ``values`` (bilinear).

    Missing data follows GDAL's warper, so results agree with ``rasterio.warp.reproject``: a
    target pixel is NaN when its centre is outside the source extent or the source pixel
    containing its centre is NaN; otherwise bilinear weights are renormalised over the valid
    (non-NaN) source pixels, so a NaN never spreads into valid neighbours.

    Values agree with ``rasterio.warp.reproject`` for same-CRS grids (anti-aliased when
    downsampling, as GDAL does) and for cross-CRS targets at equal or finer resolution. Cross-CRS
    *downsampling* uses plain bilinear interpolation without GDAL's widened kernel, so it aliases
    where GDAL would average; resample in the source CRS first if that matters.

    The work is in named steps: a plan (host: which source pixel feeds each target pixel, and
    the interpolation), decided by :func:`_separable_plan` or :func:`_coordinate_plan`, then
    :func:`_apply_plan` (device).

    **Arguments:**

    - `values`: real array on ``src`` (last two axes ``src.shape``); NaN marks missing data.
    - `src`: the grid of ``values``.
    - `dst`: the target grid.
    - `resampling`: ``"bilinear"`` or ``"nearest"``.

    **Returns:** the values on ``dst``, shape ``(*batch, *dst.shape)``.

    **Raises:** :class:`NoOverlapError` if no target pixel centre is inside the source extent;
    ``ConfigError`` for an unknown method, ``ShapeError`` for a shape that does not match ``src``,
    ``DataError`` for complex values (all georax errors, and ``ValueError``).
    """
    if resampling not in RESAMPLING_METHODS:
        raise ConfigError(
            "resample", "resampling", resampling, f"must be one of {RESAMPLING_METHODS}"
        )
    values = real_float(values, "resample")
    if tuple(values.shape[-2:]) != tuple(src.shape):
        raise ShapeError(f"values of shape {values.shape} do not match the source grid {src.shape}")
    if src.shape == dst.shape and src.transform == dst.transform and crs_equal(src.crs, dst.crs):
        return values
    batch = values.shape[:-2]
    sep = _separable_params(src, dst)
    if sep is not None:
        plan = _separable_plan(src, dst, batch, resampling, sep)
    else:
        plan = _coordinate_plan(src, dst, batch, resampling)
    if not plan.inside.any():
        raise NoOverlapError(
            f"the source grid (crs {src.crs!r}, bounds {_fmt(src.bounds)}) does not cover any "
            f"pixel of the target grid (crs {dst.crs!r}, bounds {_fmt(dst.bounds)})"
        )
    return _apply_plan(values, plan)


#: Upper bound of the host bytes the resampling plan of one target pixel takes while tracing
#: (the pyproj path: float64 pixel-centre grids, projected coordinates, source indices and
#: validity, float32 interpolation coordinates, and their temporaries; about 66 bytes measured,
#: doubled for pyproj's own buffers). Used by the fusion
#: operators' ``precheck`` to refuse a target grid before it is built.
PLAN_BYTES_PER_PIXEL = 128


def _fmt(bounds: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{b:.6g}" if math.isfinite(b) else str(b) for b in bounds) + ")"
