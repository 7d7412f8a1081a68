"""GeoSlice: one request for pixels -- where, on which grid, when, which bands, from which file.

A slice is the unit a catalog hands to a loader, a pipeline runner or an orchestrator task. It is
a frozen value: validated once when built (an inconsistent slice is refused with a
:class:`~georax.catalog.errors.SliceError` naming the field), written as canonical JSON by
:meth:`GeoSlice.to_dict` (sorted keys, shortest round-tripping floats, CRS and times in one
normal form), and identified by :attr:`GeoSlice.hash`, the SHA-256 of that JSON -- the same
string in every process and on every machine with the same PROJ database, which is what makes
output names deterministic (retries overwrite instead of duplicating).

The grid is north-up: ``bounds`` and ``shape`` define the affine transform
``(xres, 0, left, 0, -yres, top)`` (:attr:`GeoSlice.transform`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from affine import Affine
from pyproj import CRS
from pyproj.exceptions import CRSError

from georax.catalog.errors import SliceError
from georax.core.hashing import canonical_json
from georax.core.sandbox import DEFAULT_LIMITS
from georax.tensor.grid import Grid

__all__ = ["MAX_SLICE_EXTENT", "GeoSlice", "canonical_crs", "canonical_time"]

#: Largest number of pixels along one axis of a slice (a sanity bound, not a memory budget:
#: :func:`georax.catalog.load_raster` has its own byte budget): the trusted
#: ``Limits.max_extent``, the same bound operators' configs get.
MAX_SLICE_EXTENT = DEFAULT_LIMITS.max_extent

_KEYS = ("bounds", "crs", "shape", "time", "bands", "uri", "id")
# A resolution that divides the bounds into a whole number of pixels up to this relative error.
_WHOLE_PIXELS_RTOL = 1e-6


@functools.lru_cache(maxsize=512)
def _canonical_crs_cached(text: str) -> str:
    try:
        crs = CRS.from_user_input(text)
    except CRSError as e:
        raise SliceError("crs", f"{text!r} is not a CRS pyproj understands: {e}") from None
    authority = crs.to_authority(min_confidence=100)
    if authority is not None:
        return f"{authority[0]}:{authority[1]}"
    return crs.to_wkt()


def canonical_crs(crs: Any) -> str:
    """One string per CRS: ``"AUTHORITY:CODE"`` when pyproj identifies it exactly, else WKT2.

    **Arguments:**

    - `crs`: an EPSG string, WKT, PROJ string, an EPSG integer, or a pyproj/rasterio CRS.

    **Returns:** the canonical string (``"EPSG:4326"`` for ``4326``, ``"epsg:4326"``, its WKT).

    **Raises:** :class:`~georax.catalog.errors.SliceError` (field ``crs``) if it does not parse.
    """
    if crs is None or isinstance(crs, bool):
        raise SliceError("crs", f"a CRS is required, got {crs!r}")
    if isinstance(crs, int):
        crs = f"EPSG:{crs}"
    text = crs if isinstance(crs, str) else getattr(crs, "to_wkt", lambda: str(crs))()
    if not isinstance(text, str) or not text.strip():
        raise SliceError("crs", f"a CRS is required, got {crs!r}")
    return _canonical_crs_cached(text.strip())


def _instant(value: Any, field: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        t = value
    elif isinstance(value, dt.date):
        t = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            t = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise SliceError(field, f"{value!r} is not an ISO 8601 date or time") from None
    elif hasattr(value, "to_pydatetime"):  # pandas.Timestamp
        t = value.to_pydatetime()
    else:
        raise SliceError(field, f"{value!r} is not a date, a datetime or an ISO 8601 string")
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC)


def _iso(t: dt.datetime) -> str:
    return t.replace(tzinfo=None).isoformat() + "Z"


def canonical_time(value: Any) -> tuple[str, str] | None:
    """A time interval in normal form: ``(start, end)`` ISO 8601 UTC strings ending in ``Z``.

    **Arguments:**

    - `value`: ``None``; one instant (a ``datetime``, ``date``, ISO string, pandas
      ``Timestamp``), read as the interval ``(t, t)``; or a pair ``(start, end)`` of those.
      Naive times are UTC.

    **Returns:** ``None`` or ``(start, end)`` with ``start <= end``.

    **Raises:** :class:`~georax.catalog.errors.SliceError` (field ``time``).
    """
    if value is None:
        return None
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise SliceError("time", f"needs (start, end), got {len(value)} values")
        start, end = _instant(value[0], "time"), _instant(value[1], "time")
    else:
        start = end = _instant(value, "time")
    if end < start:
        raise SliceError("time", f"end {_iso(end)} is before start {_iso(start)}")
    return _iso(start), _iso(end)


def _finite_float(v: Any, field: str) -> float:
    if isinstance(v, bool) or not (isinstance(v, int | float) or hasattr(v, "__float__")):
        raise SliceError(field, f"{v!r} is not a number")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise SliceError(field, f"{v!r} is not a number") from None
    if not math.isfinite(f):
        raise SliceError(field, f"{v!r} is not finite")
    return f + 0.0  # -0.0 -> 0.0: one spelling per value in the canonical JSON


def _bounds(value: Any) -> tuple[float, float, float, float]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | tuple):
        try:
            value = tuple(value)
        except TypeError:
            raise SliceError("bounds", f"needs (left, bottom, right, top), got {value!r}") from None
    if len(value) != 4:
        raise SliceError("bounds", f"needs (left, bottom, right, top), got {value!r}")
    left, bottom, right, top = (_finite_float(v, "bounds") for v in value)
    if not (left < right and bottom < top):
        raise SliceError("bounds", f"{value!r} is empty or reversed (need left<right, bottom<top)")
    return left, bottom, right, top


def _pair(value: Any, field: str) -> tuple[Any, Any]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value, value
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise SliceError(
            field, f"needs (height, width) / (xres, yres) or one number, got {value!r}"
        )
    return value[0], value[1]


def _shape(value: Any) -> tuple[int, int]:
    h, w = _pair(value, "shape")
    out = []
    for v in (h, w):
        whole = isinstance(v, int | np.integer) or (isinstance(v, float) and v.is_integer())
        if isinstance(v, bool) or not whole:
            raise SliceError("shape", f"{value!r}: sizes must be whole numbers of pixels")
        if not 1 <= int(v) <= MAX_SLICE_EXTENT:
            raise SliceError("shape", f"{value!r}: each size must be in [1, {MAX_SLICE_EXTENT}]")
        out.append(int(v))
    return out[0], out[1]


def _shape_from_resolution(bounds: tuple[float, ...], resolution: Any) -> tuple[int, int]:
    xres, yres = (_finite_float(v, "resolution") for v in _pair(resolution, "resolution"))
    if xres <= 0 or yres <= 0:
        raise SliceError("resolution", f"{resolution!r} must be positive")
    left, bottom, right, top = bounds
    sizes = []
    for extent, res, axis in ((top - bottom, yres, "y"), (right - left, xres, "x")):
        n = extent / res
        if not 1 <= round(n) <= MAX_SLICE_EXTENT:
            raise SliceError(
                "resolution",
                f"{resolution!r} gives {n:.6g} pixels along {axis}; need 1..{MAX_SLICE_EXTENT}",
            )
        if abs(n - round(n)) > _WHOLE_PIXELS_RTOL * max(1.0, n):
            raise SliceError(
                "resolution",
                f"{res!r} does not divide the {axis} extent {extent!r} of bounds {bounds} into "
                "whole pixels",
            )
        sizes.append(round(n))
    return sizes[0], sizes[1]


def _bands(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise SliceError("bands", f"needs a sequence of band names, got {value!r}")
    names = tuple(value)
    if not names or any(not isinstance(n, str) or not n for n in names):
        raise SliceError("bands", f"{value!r}: band names must be non-empty strings")
    if len(set(names)) != len(names):
        raise SliceError("bands", f"{value!r}: band names repeat")
    return names


def _text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or "\x00" in value:
        raise SliceError(field, f"must be a non-empty string, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class GeoSlice:
    """Which pixels to load: bounds and grid in a CRS, a time interval, bands and a source.

    Build with the fields below, with :meth:`from_bounds` (which also takes a resolution
    instead of a shape) or with :meth:`from_dict`. Values are normalised (CRS to
    ``"EPSG:XXXX"`` or WKT, times to UTC ISO strings, sizes to ints), so two slices describing
    the same request are equal and hash alike.

    **Arguments:**

    - `bounds`: ``(left, bottom, right, top)`` in `crs` units, finite, non-empty.
    - `crs`: anything :func:`canonical_crs` accepts.
    - `shape`: ``(height, width)`` in pixels (one int for a square).
    - `time`: ``None``, one instant or ``(start, end)`` (see :func:`canonical_time`).
    - `bands`: band names to read (descriptions in the file), or ``None`` for every band.
    - `uri`: the raster to read (a path or a GDAL URL), or ``None`` for a slice of "whatever
      the catalog holds there" (:meth:`georax.catalog.Catalog.read_tile`).
    - `id`: an identifier (the catalog row's id), or ``None``.

    **Raises:** :class:`~georax.catalog.errors.SliceError` naming the field and the problem.
    """

    bounds: tuple[float, float, float, float]
    crs: str
    shape: tuple[int, int]
    time: tuple[str, str] | None = None
    bands: tuple[str, ...] | None = None
    uri: str | None = None
    id: str | None = None

    def __post_init__(self) -> None:
        set_ = functools.partial(object.__setattr__, self)
        set_("bounds", _bounds(self.bounds))
        set_("crs", canonical_crs(self.crs))
        set_("shape", _shape(self.shape))
        set_("time", canonical_time(self.time))
        set_("bands", _bands(self.bands))
        set_("uri", _text(self.uri, "uri"))
        set_("id", _text(self.id, "id"))

    @classmethod
    def from_bounds(
        cls,
        bounds: Sequence[float],
        crs: Any,
        *,
        shape: int | Sequence[int] | None = None,
        resolution: float | Sequence[float] | None = None,
        time: Any = None,
        bands: Sequence[str] | None = None,
        uri: str | None = None,
        id: str | None = None,
    ) -> GeoSlice:
        """A slice from its bounds and either a `shape` or a `resolution` ``(xres, yres)``.

        Given both, they must agree. A resolution must divide the bounds into whole pixels.
        """
        b = _bounds(bounds)
        if shape is None and resolution is None:
            raise SliceError("shape", "give a shape (height, width) or a resolution (xres, yres)")
        if resolution is not None:
            derived = _shape_from_resolution(b, resolution)
            if shape is not None and _shape(shape) != derived:
                raise SliceError(
                    "shape",
                    f"{shape!r} disagrees with resolution {resolution!r}, which gives {derived}",
                )
            shape = derived
        return cls(b, crs, shape, time, bands, uri, id)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GeoSlice:
        """Rebuild a slice from :meth:`to_dict` output (or JSON of it).

        ``resolution`` is accepted in place of (or with) ``shape``. Unknown keys are refused.
        """
        if not isinstance(data, Mapping):
            raise SliceError(None, f"from_dict needs a mapping, got {type(data).__name__}")
        keys = set(data)
        unknown = sorted(str(k) for k in keys - {*_KEYS, "resolution"})
        if unknown:
            raise SliceError(None, f"unknown keys {unknown}; a slice has {list(_KEYS)}")
        for required in ("bounds", "crs"):
            if required not in data:
                raise SliceError(required, "is missing")
        return cls.from_bounds(
            data["bounds"],
            data["crs"],
            shape=data.get("shape"),
            resolution=data.get("resolution"),
            time=data.get("time"),
            bands=data.get("bands"),
            uri=data.get("uri"),
            id=data.get("id"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The slice as JSON-ready data (lists, strings, numbers, None); see :meth:`to_json`."""
        return {
            "bounds": list(self.bounds),
            "crs": self.crs,
            "shape": list(self.shape),
            "time": list(self.time) if self.time is not None else None,
            "bands": list(self.bands) if self.bands is not None else None,
            "uri": self.uri,
            "id": self.id,
        }

    def to_json(self) -> str:
        """The canonical JSON text (sorted keys, no whitespace) that :attr:`hash` digests."""
        return canonical_json(self.to_dict())

    @property
    def hash(self) -> str:
        """SHA-256 (hex) of :meth:`to_json`: equal slices give equal hashes in any process."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel size ``(xres, yres)``, positive."""
        left, bottom, right, top = self.bounds
        return (right - left) / self.shape[1], (top - bottom) / self.shape[0]

    @property
    def transform(self) -> Affine:
        """The north-up affine transform of the slice's grid."""
        xres, yres = self.resolution
        return Affine(xres, 0.0, self.bounds[0], 0.0, -yres, self.bounds[3])

    @property
    def grid(self) -> Grid:
        """The slice's :class:`~georax.tensor.Grid` (CRS, transform, shape)."""
        return Grid.coerce((self.crs, self.transform, self.shape))

    @property
    def start(self) -> dt.datetime | None:
        """Start of the time interval (UTC), or ``None``."""
        return None if self.time is None else _instant(self.time[0], "time")

    @property
    def end(self) -> dt.datetime | None:
        """End of the time interval (UTC), or ``None``."""
        return None if self.time is None else _instant(self.time[1], "time")

    def replace(self, **changes: Any) -> GeoSlice:
        """A copy with some fields changed, validated like a new slice."""
        return dataclasses.replace(self, **changes)
