"""Raster grids and CRS comparison: the static georeferencing shared by every layer above.

A :class:`Grid` is where a raster's pixels are (CRS, affine transform, shape). It lives here, in
the carrier layer, so that patching, resampling, catalogs and serving all speak one type.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np
from affine import Affine

from georax.core.errors import ConfigError, DataError, GeoraxError

__all__ = ["Grid", "MissingGeoreferenceError", "crs_equal", "grid_of"]


@functools.lru_cache(maxsize=256)
def _crs_equal_cached(a: str, b: str) -> bool:
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    parsed = []
    for text in (a, b):
        try:
            parsed.append(CRS.from_user_input(text))
        except CRSError as e:
            raise DataError(f"crs_equal: {text!r} is not a CRS pyproj can parse: {e}") from None
    return bool(parsed[0] == parsed[1])


def crs_equal(a: Any, b: Any) -> bool:
    """Whether two CRS descriptions denote the same CRS (``"EPSG:32630"`` equals its WKT).

    ``None`` (unknown CRS) equals only ``None``. Parsing goes through pyproj and is cached, so
    this is cheap to call at trace time.

    **Arguments:**

    - `a`, `b`: CRS strings (EPSG code, WKT, PROJ), pyproj/rasterio CRS objects, or None.

    **Returns:** True when both are None or both parse to equal CRSs.

    **Raises:** :class:`~georax.errors.DataError` naming a CRS that cannot be parsed.
    """
    if a is None or b is None:
        return a is None and b is None
    sa, sb = str(a), str(b)
    if sa == sb:
        return True
    return _crs_equal_cached(sa, sb)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


class MissingGeoreferenceError(GeoraxError, ValueError):
    """An input that must be placed on a grid has no CRS or no transform (e.g. a plain array)."""


class Grid(NamedTuple):
    """A raster grid: CRS, affine transform and shape — static, hashable, YAML-representable.

    A plain tuple ``(crs, (a, b, c, d, e, f), (height, width))`` underneath, so it is hashable
    (usable as static operator config) and writes to YAML as nested lists; :meth:`coerce` turns
    such lists back into a Grid.

    **Arguments:**

    - `crs`: CRS string (``"EPSG:32630"``, WKT, PROJ).
    - `transform`: the 6 affine coefficients ``(a, b, c, d, e, f)`` mapping
      ``(col, row) -> (x, y)``, as in :class:`affine.Affine` / rasterio.
    - `shape`: ``(height, width)`` in pixels.
    """

    crs: str
    transform: tuple[float, float, float, float, float, float]
    shape: tuple[int, int]

    @classmethod
    def coerce(cls, value: Any) -> Grid:
        """Build a Grid from a Grid, a 3-sequence ``(crs, transform, shape)`` or a mapping."""
        if isinstance(value, dict):
            value = (value["crs"], value["transform"], value["shape"])
        crs, transform, shape = value
        if isinstance(transform, Affine):
            transform = tuple(transform)[:6]
        transform, shape = tuple(transform), tuple(shape)
        numbers = all(_is_number(t) for t in transform)
        ints = all(isinstance(s, int | np.integer) and not isinstance(s, bool) for s in shape)
        if len(transform) != 6 or len(shape) != 2 or not numbers or not ints:
            problem = "needs 6 numeric transform coefficients and (height, width) as ints"
            raise ConfigError("Grid", None, value, problem)
        floats = tuple(float(t) for t in transform)
        return cls(str(crs), floats, (int(shape[0]), int(shape[1])))  # type: ignore[arg-type]

    @property
    def affine(self) -> Affine:
        """The transform as an :class:`affine.Affine`."""
        return Affine(*self.transform)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in CRS units (of the corner envelope)."""
        h, w = self.shape
        a, b, c, d, e, f = self.transform
        pts = ((0, 0), (w, 0), (0, h), (w, h))
        xs = [a * col + b * row + c for col, row in pts]
        ys = [d * col + e * row + f for col, row in pts]
        return min(xs), min(ys), max(xs), max(ys)

    @property
    def is_axis_aligned(self) -> bool:
        """True when the transform has no rotation/shear terms (``b == d == 0``)."""
        return self.transform[1] == 0.0 and self.transform[3] == 0.0


def grid_of(x: Any, *, what: str = "input") -> Grid:
    """The :class:`Grid` of a georeferenced carrier, refusing anything without georeferencing.

    **Arguments:**

    - `x`: a :class:`georax.GeoTensor` (anything with ``values``, ``transform`` and ``crs``).
    - `what`: how to name ``x`` in the error message.

    **Raises:** :class:`MissingGeoreferenceError` for plain arrays, a missing CRS or the identity
    transform (GeoTensor's default, i.e. "no transform given").
    """
    crs = getattr(x, "crs", None)
    transform = getattr(x, "transform", None)
    if transform is None or not hasattr(x, "values"):
        raise MissingGeoreferenceError(
            f"{what} is a {type(x).__name__}, not a georeferenced GeoTensor: resampling needs a "
            "CRS and a transform to know where its pixels are"
        )
    if crs is None:
        raise MissingGeoreferenceError(f"{what} has crs=None; set the CRS of the GeoTensor")
    if Affine(*tuple(transform)[:6]) == Affine.identity():
        raise MissingGeoreferenceError(
            f"{what} has the identity transform (no georeferencing); set the GeoTensor's transform"
        )
    shape = tuple(np.shape(x.values))
    if len(shape) < 2:
        raise MissingGeoreferenceError(f"{what} has shape {shape}; a raster needs (..., H, W)")
    return Grid.coerce((crs, transform, shape[-2:]))
