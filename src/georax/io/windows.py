"""Pixel windows of a read: from a window or from bounds, checked and snapped to whole pixels.

Everything a caller passes as a window or as bounds is checked here before any pixel is read:
numbers (not strings, not booleans), finite (no NaN, no infinity), start before stop (a
reversed window is named as such), not empty, and within a sane range. Failures are
:class:`~georax.io.errors.WindowError` (or :class:`~georax.io.errors.CRSMismatchError` for a
CRS that cannot be parsed or reprojected into), naming the file and the request.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import rasterio.crs
import rasterio.errors
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from georax.io.errors import CRSMismatchError, WindowError
from georax.tensor.geotensor import apply_transform
from georax.tensor.grid import crs_equal

__all__ = ["as_window", "check_crs", "grown_window", "window_from_bounds"]

# Pixel coordinates beyond this are not a raster anyone has; floats stay exact below it.
_MAX_PIXEL = 2**53
_EPS = 1e-6

WindowLike = Window | tuple[tuple[int, int], tuple[int, int]]


def _real(value: Any, what: str, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise WindowError(f"{path}: {what} must be a number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise WindowError(f"{path}: {what} must be finite, got {value!r}")
    if abs(x) > _MAX_PIXEL:
        raise WindowError(f"{path}: {what}={value!r} is out of range (|value| <= 2**53)")
    return x


def _snap(c0: float, r0: float, c1: float, r1: float, request: Any, path: str) -> Window:
    """Whole pixels covering ``[c0, c1) x [r0, r1)``, snapped outward."""
    if c1 < c0 or r1 < r0:
        raise WindowError(
            f"{path}: window {request!r} is reversed (rows {r0:g}->{r1:g}, cols {c0:g}->{c1:g}); "
            "give (start, stop) with start <= stop"
        )
    ic0, ir0 = math.floor(c0 + _EPS), math.floor(r0 + _EPS)
    ic1, ir1 = math.ceil(c1 - _EPS), math.ceil(r1 - _EPS)
    if ic1 <= ic0 or ir1 <= ir0:
        raise WindowError(f"{path}: window {request!r} is empty")
    return Window(ic0, ir0, ic1 - ic0, ir1 - ir0)


def as_window(window: Any, path: str) -> Window:
    """A rasterio Window of whole pixels from a Window or ``((r0, r1), (c0, c1))``.

    Fractional windows are snapped outward to whole pixels.

    **Raises:** :class:`~georax.io.errors.WindowError` for anything else, non-finite numbers, a
    reversed or empty window.
    """
    if isinstance(window, Window):
        c0 = _real(window.col_off, "window col_off", path)
        r0 = _real(window.row_off, "window row_off", path)
        c1 = c0 + _real(window.width, "window width", path)
        r1 = r0 + _real(window.height, "window height", path)
    else:
        try:
            (r0, r1), (c0, c1) = window
        except (TypeError, ValueError):
            raise WindowError(
                f"{path}: window must be a rasterio Window or ((row_start, row_stop), "
                f"(col_start, col_stop)), got {window!r}"
            ) from None
        r0, r1 = _real(r0, "window row_start", path), _real(r1, "window row_stop", path)
        c0, c1 = _real(c0, "window col_start", path), _real(c1, "window col_stop", path)
    return _snap(c0, r0, c1, r1, window, path)


def check_crs(crs: Any, path: str, what: str) -> Any:
    """Parse `crs` (string, EPSG int, rasterio/pyproj CRS) or raise a CRSMismatchError."""
    try:
        return rasterio.crs.CRS.from_user_input(crs)
    except (rasterio.errors.CRSError, TypeError, ValueError) as e:
        raise CRSMismatchError(f"{path}: {what} {crs!r} is not a CRS: {e}") from None


def _bounds(bounds: Any, path: str) -> tuple[float, float, float, float]:
    try:
        left, bottom, right, top = bounds
    except (TypeError, ValueError):
        raise WindowError(
            f"{path}: bounds must be (left, bottom, right, top), got {bounds!r}"
        ) from None
    names = ("left", "bottom", "right", "top")
    left, bottom, right, top = (
        _bounds_value(v, n, bounds, path)
        for v, n in zip((left, bottom, right, top), names, strict=True)
    )
    if right < left or top < bottom:
        raise WindowError(
            f"{path}: bounds {bounds!r} are reversed (need left <= right, bottom <= top)"
        )
    if right == left or top == bottom:
        raise WindowError(f"{path}: bounds {bounds!r} are empty (need left<right, bottom<top)")
    return left, bottom, right, top


def _bounds_value(value: Any, name: str, bounds: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise WindowError(f"{path}: bounds {name} must be a number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise WindowError(f"{path}: bounds {bounds!r} are not finite ({name}={value!r})")
    return x


def window_from_bounds(src: Any, bounds: Any, bounds_crs: Any, path: str) -> Window:
    """The smallest whole-pixel window of `src` covering `bounds` (reprojected if needed).

    **Arguments:**

    - `src`: an open rasterio dataset.
    - `bounds`: ``(left, bottom, right, top)``, finite, not reversed, not empty.
    - `bounds_crs`: the CRS of `bounds`, or None for the raster's.
    - `path`: the raster's path, for messages.

    **Raises:** :class:`~georax.io.errors.WindowError`,
    :class:`~georax.io.errors.CRSMismatchError`.
    """
    left, bottom, right, top = _bounds(bounds, path)
    if bounds_crs is not None:
        wanted = check_crs(bounds_crs, path, "bounds_crs")
        if src.crs is None:
            raise CRSMismatchError(
                f"{path}: raster has no CRS, cannot reproject bounds given in {bounds_crs}"
            )
        if not crs_equal(wanted.to_wkt(), src.crs.to_wkt()):
            try:
                projected = transform_bounds(
                    wanted, src.crs, left, bottom, right, top, densify_pts=21
                )
            except rasterio.errors.RasterioError as e:
                raise CRSMismatchError(
                    f"{path}: bounds {bounds!r} cannot be reprojected from {bounds_crs}: {e}"
                ) from None
            if not all(math.isfinite(v) for v in projected):
                raise WindowError(
                    f"{path}: bounds {bounds!r} in {bounds_crs} fall outside the domain of the "
                    f"raster's CRS (reprojected to {projected})"
                )
            left, bottom, right, top = projected
    inv = ~src.transform
    corners = [
        apply_transform(inv, x, y)
        for x, y in ((left, top), (right, top), (left, bottom), (right, bottom))
    ]
    cols = [_real(c, "bounds column", path) for c, _ in corners]
    rows = [_real(r, "bounds row", path) for _, r in corners]
    c0, r0 = math.floor(min(cols) + _EPS), math.floor(min(rows) + _EPS)
    c1, r1 = math.ceil(max(cols) - _EPS), math.ceil(max(rows) - _EPS)
    return Window(c0, r0, max(c1 - c0, 1), max(r1 - r0, 1))


def grown_window(core: Window, halo: int) -> Window:
    """`core` grown by `halo` pixels on every side."""
    return Window(
        core.col_off - halo, core.row_off - halo, core.width + 2 * halo, core.height + 2 * halo
    )
