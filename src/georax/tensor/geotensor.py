"""GeoTensor: a georeferenced array carrier that works through jit, vmap and grad.

The pixels are the only leaf; the georeferencing (affine transform, CRS, nodata value, band
names) is static, hence known at trace time. Indexing a GeoTensor (``gt[..., 10:20, 5:50]``) and
the cropping helpers return a GeoTensor whose transform points at the new upper-left pixel, so
georeferencing survives slicing inside and outside ``jax.jit``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple

import jax
import numpy as np
from affine import Affine

from georax.core.carrier import Carrier
from georax.core.errors import ConfigError, DataError, GeoraxError, ShapeError
from georax.core.operator import static
from georax.tensor.buffers import NON_NUMERIC_KINDS, as_jax_array
from georax.tensor.grid import Grid, crs_equal, grid_of

__all__ = [
    "BoundingBox",
    "GeoTensor",
    "GeoTensorRequiredError",
    "apply_transform",
    "canonical_nan",
    "require_geotensor",
    "window_transform",
]


class GeoTensorRequiredError(GeoraxError, TypeError):
    """A geo-specific operation received something that is not a :class:`GeoTensor`."""


class BoundingBox(NamedTuple):
    """Bounds in CRS units, rasterio order: ``(left, bottom, right, top)``."""

    left: float
    bottom: float
    right: float
    top: float


_IDENTITY = Affine.identity()


def _is_real(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)


def _as_affine(transform: Any) -> Affine:
    """An invertible affine with finite coefficients, or a ConfigError naming `transform`."""
    if isinstance(transform, Affine):
        t = transform
    else:
        try:
            coefficients = tuple(transform)
        except TypeError:
            coefficients = ()
        if len(coefficients) not in (6, 9) or not all(map(_is_real, coefficients)):
            raise ConfigError(
                "GeoTensor", "transform", transform,
                "must be an affine.Affine or its 6 coefficients (a, b, c, d, e, f)",
            )  # fmt: skip
        t = Affine(*(float(c) for c in coefficients[:6]))
    if not all(math.isfinite(c) for c in t[:6]):
        raise ConfigError("GeoTensor", "transform", t, "coefficients must be finite")
    if t.is_degenerate:
        raise ConfigError("GeoTensor", "transform", t, "is degenerate (zero pixel area)")
    return t


def _as_values(values: Any) -> jax.Array:
    if isinstance(values, jax.Array | jax.ShapeDtypeStruct):
        return values
    try:
        return as_jax_array(values, copy=True)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            "GeoTensor", "values", type(values).__name__, f"is not an array of pixels: {e}"
        ) from None


def _as_crs(crs: Any) -> str | None:
    if crs is None or isinstance(crs, str):
        return crs
    to_string = getattr(crs, "to_string", None)  # rasterio / pyproj CRS: keep the short form
    if not callable(to_string):
        raise ConfigError(
            "GeoTensor", "crs", crs,
            "must be a CRS string such as 'EPSG:32630' or WKT, a rasterio/pyproj CRS, or None",
        )  # fmt: skip
    return str(to_string())


def _as_fill_value(fill_value: Any) -> float | int | None:
    if fill_value is None:
        return None
    if isinstance(fill_value, np.ndarray | jax.Array) and fill_value.ndim == 0:
        try:
            fill_value = fill_value.item()
        except jax.errors.ConcretizationTypeError:
            raise ConfigError(
                "GeoTensor", "fill_value", fill_value,
                "is static metadata: it must be a concrete number, not a traced value",
            ) from None  # fmt: skip
    if isinstance(fill_value, np.generic):
        fill_value = fill_value.item()
    if not _is_real(fill_value):
        raise ConfigError("GeoTensor", "fill_value", fill_value, "must be a real number or None")
    return canonical_nan(fill_value)


def canonical_nan(value: Any) -> Any:
    """``value``, with a float NaN replaced by the one object :data:`math.nan`.

    Static metadata is compared with ``==``, and ``nan != nan``: two carriers whose ``fill_value``
    is NaN would never be equal, so their tree structures would differ and a jitted function
    would see a new structure on every call. Python compares containers by identity first, so
    one shared NaN object compares equal to itself (and hashes alike).
    """
    if isinstance(value, float) and math.isnan(value):
        return math.nan
    return value


def _as_band_names(band_names: Any) -> tuple[str, ...] | None:
    if band_names is None:
        return None
    if isinstance(band_names, str):
        raise ConfigError(
            "GeoTensor", "band_names", band_names, "must be a sequence of names, not one string"
        )
    try:
        names = tuple(band_names)
    except TypeError:
        raise ConfigError(
            "GeoTensor", "band_names", band_names, "must be a sequence of strings"
        ) from None
    if not all(isinstance(n, str) for n in names):
        raise ConfigError("GeoTensor", "band_names", names, "must all be strings")
    return tuple(str(n) for n in names)


def apply_transform(transform: Affine, col: Any, row: Any) -> tuple[Any, Any]:
    """Map pixel ``(col, row)`` (scalars or arrays) to CRS ``(x, y)`` through ``transform``.

    Written out instead of ``transform * (col, row)`` (deprecated in affine 3) or
    ``transform @ (col, row)`` (absent in affine 2), so it works with both.
    """
    t = transform
    return t.a * col + t.b * row + t.c, t.d * col + t.e * row + t.f


def window_transform(
    transform: Affine, col_off: float, row_off: float, col_step: float = 1, row_step: float = 1
) -> Affine:
    """The transform of the sub-grid starting at ``(col_off, row_off)`` with the given strides."""
    t = transform
    x0, y0 = apply_transform(t, col_off, row_off)
    return Affine(t.a * col_step, t.b * row_step, x0, t.d * col_step, t.e * row_step, y0)


def require_geotensor(x: Any, who: str) -> GeoTensor:
    """Return ``x`` if it is a GeoTensor, else raise :class:`GeoTensorRequiredError`.

    Geo-specific operators call this so a plain array gets a clear, typed error instead of an
    ``AttributeError`` deep inside the operator.

    **Arguments:**

    - `x`: the input to check.
    - `who`: the caller's name, used in the message (e.g. ``"AssertCRSEquals"``).
    """
    if not isinstance(x, GeoTensor):
        raise GeoTensorRequiredError(
            f"{who} needs a georax.GeoTensor (it reads crs/transform/band_names), got "
            f"{type(x).__name__}; wrap the array with gx.GeoTensor(values, transform, crs)"
        )
    return x


def _spatial_slice(index: Any, size: int, axis: str) -> tuple[int, int, int]:
    """Resolve an index on a spatial axis to ``(start, stop, step)``; refuse non-slices."""
    if not isinstance(index, slice):
        raise ShapeError(
            f"GeoTensor indexing must keep the {axis} axis: got {index!r}; use a slice such "
            "as i:i+1, or index .values for a plain array"
        )
    try:
        start, stop, step = index.indices(size)
    except TypeError:
        raise ShapeError(f"GeoTensor {axis} slice {index!r} needs integer bounds") from None
    if step <= 0:
        raise ShapeError(f"GeoTensor {axis} slice step must be positive, got {step}")
    if len(range(start, stop, step)) == 0:
        raise ShapeError(f"GeoTensor {axis} slice {index!r} selects no pixels of {size}")
    return start, stop, step


class GeoTensor(Carrier):
    """A bands-first array ``(..., H, W)`` with its georeferencing.

    ``values`` is the only array leaf; ``transform`` (pixel -> CRS affine), ``crs``,
    ``fill_value`` and ``band_names`` are static, so a GeoTensor passes through ``jit``/``vmap``/
    ``grad`` like an array and its metadata is known at trace time.

    Indexing keeps the carrier: ``gt[1:3, 100:200, 50:150]`` selects bands 1-2 and a window, and
    the result's transform points at pixel (row 100, col 50) of the original (steps scale the
    pixel size). Band axes may also be indexed by band name (``gt["B04"]``, ``gt[["B04",
    "B08"]]``). The last two axes must be indexed with slices: a GeoTensor always has a grid.

    **Arguments:**

    - `values`: the pixels, bands-first, last two axes are rows (y) and columns (x). NumPy input
      is converted with :func:`jax.numpy.asarray` (so float64 becomes float32 unless x64 is on).
    - `transform`: an :class:`affine.Affine` (or its 6 coefficients) mapping (col, row) of a
      pixel's upper-left corner to CRS x/y.
    - `crs`: a CRS string (``"EPSG:32630"`` or WKT), or None when unknown.
    - `fill_value`: the nodata value, or None.
    - `band_names`: optional names, one per band (``values.shape[-3]``).
    """

    values: jax.Array
    transform: Affine = static()
    crs: str | None = static(default=None)
    fill_value: float | int | None = static(default=None)
    band_names: tuple[str, ...] | None = static(default=None)
    band_axis_ndim: ClassVar[int] = 3

    def __init__(
        self,
        values: Any,
        transform: Any = _IDENTITY,
        crs: Any = None,
        fill_value: float | int | None = None,
        band_names: Any = None,
    ) -> None:
        self.values = _as_values(values)
        self.transform = _as_affine(transform)
        self.crs = _as_crs(crs)
        self.fill_value = _as_fill_value(fill_value)
        self.band_names = _as_band_names(band_names)
        shape = tuple(self.values.shape)
        if len(shape) < 2:
            raise ShapeError(f"GeoTensor values need at least 2 axes (H, W), got shape {shape}")
        if self.band_names is not None and (len(shape) < 3 or shape[-3] != len(self.band_names)):
            raise ShapeError(
                f"GeoTensor band_names {self.band_names} do not match values shape {shape} "
                "(one name per band on axis -3)"
            )

    # ------------------------------------------------------------------ array-like metadata
    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of ``values``: ``(..., H, W)``."""
        return tuple(self.values.shape)

    @property
    def dtype(self) -> Any:
        """dtype of ``values``."""
        return self.values.dtype

    @property
    def ndim(self) -> int:
        """Number of axes of ``values``."""
        return len(self.values.shape)

    @property
    def height(self) -> int:
        """Number of rows (axis -2)."""
        return int(self.values.shape[-2])

    @property
    def width(self) -> int:
        """Number of columns (axis -1)."""
        return int(self.values.shape[-1])

    @property
    def count(self) -> int:
        """Number of bands (axis -3), 1 for a 2-D GeoTensor."""
        return int(self.values.shape[-3]) if self.ndim >= 3 else 1

    # ------------------------------------------------------------------ georeferencing
    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel size ``(xres, yres)`` in CRS units, both positive (rotation-aware)."""
        t = self.transform
        return (math.hypot(t.a, t.d), math.hypot(t.b, t.e))

    res = resolution

    @property
    def is_rectilinear(self) -> bool:
        """True when the transform has no rotation/shear (x depends on col only, y on row)."""
        return self.transform.b == 0 and self.transform.d == 0

    @property
    def bounds(self) -> BoundingBox:
        """Outer bounds of the grid ``(left, bottom, right, top)`` (pixel edges, not centres)."""
        t, h, w = self.transform, self.height, self.width
        xs, ys = zip(
            *(apply_transform(t, c, r) for c, r in ((0, 0), (w, 0), (0, h), (w, h))), strict=True
        )
        return BoundingBox(min(xs), min(ys), max(xs), max(ys))

    @property
    def x_coords(self) -> np.ndarray:
        """CRS x of each column's pixel centre (rectilinear transforms), float64 ``(W,)``."""
        self._require_rectilinear("x_coords")
        t = self.transform
        return t.c + t.a * (np.arange(self.width, dtype=np.float64) + 0.5)

    @property
    def y_coords(self) -> np.ndarray:
        """CRS y of each row's pixel centre (rectilinear transforms), float64 ``(H,)``."""
        self._require_rectilinear("y_coords")
        t = self.transform
        return t.f + t.e * (np.arange(self.height, dtype=np.float64) + 0.5)

    def xy(self, row: float, col: float, offset: str = "center") -> tuple[float, float]:
        """CRS coordinates of pixel ``(row, col)``: its centre, or ``"ul"`` corner."""
        if offset not in ("center", "ul"):
            raise ConfigError("GeoTensor.xy", "offset", offset, 'must be "center" or "ul"')
        for name, v in (("row", row), ("col", col)):
            if not _is_real(v) or not math.isfinite(v):
                raise ConfigError("GeoTensor.xy", name, v, "must be a finite number")
        d = 0.5 if offset == "center" else 0.0
        x, y = apply_transform(self.transform, col + d, row + d)
        return float(x), float(y)

    def index(self, x: float, y: float) -> tuple[int, int]:
        """``(row, col)`` of the pixel containing CRS point ``(x, y)`` (may be off-grid)."""
        for name, v in (("x", x), ("y", y)):
            if not _is_real(v) or not math.isfinite(v):
                raise DataError(f"GeoTensor.index: {name}={v!r} is not a finite coordinate")
        col, row = apply_transform(~self.transform, x, y)
        return math.floor(row), math.floor(col)

    @property
    def grid(self) -> Grid:
        """This raster's :class:`~georax.tensor.Grid` (CRS, transform, ``(H, W)``).

        **Raises:** :class:`~georax.tensor.MissingGeoreferenceError` without a CRS or transform.
        """
        return grid_of(self)

    def same_grid(self, other: GeoTensor) -> bool:
        """Whether ``other`` has the same transform, CRS and height/width (pixels align 1:1)."""
        other = require_geotensor(other, "GeoTensor.same_grid")
        return (
            self.transform.almost_equals(other.transform)
            and crs_equal(self.crs, other.crs)
            and self.shape[-2:] == other.shape[-2:]
        )

    def _require_rectilinear(self, what: str) -> None:
        if not self.is_rectilinear:
            raise ShapeError(f"GeoTensor.{what} needs an unrotated transform, got {self.transform}")

    # ------------------------------------------------------------------ slicing and cropping
    def _band_index(self, index: Any) -> Any:
        """Translate band names in a band-axis index into integers."""

        def one(i: Any) -> Any:
            if isinstance(i, str):
                if self.band_names is None or i not in self.band_names:
                    raise ShapeError(f"no band named {i!r}; band_names are {self.band_names}")
                return self.band_names.index(i)
            return i

        if isinstance(index, list | tuple):
            return [one(i) for i in index]
        return one(index)

    def _check_leading(self, index: Any, axis: int) -> None:
        """Refuse indices JAX would silently clamp (out of range) or misread (bool, float)."""
        size = self.shape[axis]
        if isinstance(index, slice) or index is Ellipsis:
            return
        if isinstance(index, bool | np.bool_):
            raise ShapeError(f"GeoTensor axis {axis}: boolean index {index!r} adds an axis")
        if isinstance(index, list | tuple | np.ndarray):
            items = np.asarray(index)
            if items.dtype == np.bool_ or items.size == 0:
                return
            if not np.issubdtype(items.dtype, np.integer):
                raise ShapeError(f"GeoTensor axis {axis}: index {index!r} is not integer")
            bad = items[(items < -size) | (items >= size)]
        elif isinstance(index, int | np.integer):
            bad = [index] if not -size <= int(index) < size else []
        elif isinstance(index, jax.Array):
            return  # possibly traced; JAX's own semantics apply
        else:
            raise ShapeError(f"GeoTensor axis {axis}: cannot index with {index!r}")
        if len(bad):
            raise ShapeError(
                f"GeoTensor axis {axis} index {list(np.asarray(bad).tolist())} out of range for "
                f"size {size}"
            )

    def __getitem__(self, index: Any) -> GeoTensor:
        if not isinstance(index, tuple):
            index = (index,)
        n_ellipsis = sum(i is Ellipsis for i in index)
        if n_ellipsis > 1:
            raise ShapeError("GeoTensor index may contain at most one Ellipsis")
        if any(i is None for i in index):
            raise ShapeError("GeoTensor indexing does not support None (new axes)")
        ndim = self.ndim
        if n_ellipsis:
            at = index.index(Ellipsis)
            fill = ndim - (len(index) - 1)
            index = (*index[:at], *([slice(None)] * fill), *index[at + 1 :])
        if len(index) > ndim:
            raise ShapeError(f"too many indices ({len(index)}) for GeoTensor of shape {self.shape}")
        index = (*index, *([slice(None)] * (ndim - len(index))))

        r0, _, rstep = _spatial_slice(index[-2], self.height, "row (y)")
        c0, _, cstep = _spatial_slice(index[-1], self.width, "column (x)")
        transform = window_transform(self.transform, c0, r0, cstep, rstep)

        names = self.band_names
        leading = list(index[:-2])
        if ndim >= 3:
            leading[-1] = self._band_index(leading[-1])
        for axis, i in enumerate(leading):
            self._check_leading(i, axis)
        if ndim >= 3:
            band = leading[-1]
            if names is not None:
                if isinstance(band, slice):
                    names = names[band]
                elif isinstance(band, list):
                    names = tuple(names[int(i)] for i in band)
                else:  # integer or array index: the band axis changes meaning or disappears
                    names = None
        try:
            values = self.values[(*leading, index[-2], index[-1])]
        except (TypeError, IndexError, ValueError) as e:
            raise ShapeError(f"GeoTensor of shape {self.shape}: bad index {index!r}: {e}") from None
        if names is not None and (values.ndim < 3 or values.shape[-3] != len(names)):
            names = None
        return self.replace(values=values, transform=transform, band_names=names)

    def crop(self, row_off: int, col_off: int, height: int, width: int) -> GeoTensor:
        """The window of ``height`` x ``width`` pixels starting at ``(row_off, col_off)``.

        The window must lie inside the grid (use :func:`georax.io.read` with ``boundless=True``
        to read past the edges of a file).
        """
        args = {"row_off": row_off, "col_off": col_off, "height": height, "width": width}
        for name, v in args.items():
            if isinstance(v, bool) or not isinstance(v, int | np.integer):
                raise ConfigError("GeoTensor.crop", name, v, "must be an integer")
        if (
            min(row_off, col_off) < 0
            or height <= 0
            or width <= 0
            or row_off + height > self.height
            or col_off + width > self.width
        ):
            raise ShapeError(
                f"crop window rows [{row_off}, {row_off + height}) x cols [{col_off}, "
                f"{col_off + width}) is not inside the {self.height}x{self.width} grid"
            )
        return self[..., row_off : row_off + height, col_off : col_off + width]

    def crop_bounds(self, bounds: tuple[float, float, float, float]) -> GeoTensor:
        """The smallest whole-pixel window covering ``(left, bottom, right, top)`` (same CRS).

        Partially covered edge pixels are included; the window is clipped to the grid. Bounds
        must be four finite numbers with ``left < right`` and ``bottom < top``; reversed bounds
        and an empty intersection raise :class:`~georax.errors.ShapeError`.
        """
        try:
            left, bottom, right, top = bounds
        except (TypeError, ValueError):
            raise ShapeError(f"bounds must be (left, bottom, right, top), got {bounds!r}") from None
        if not all(_is_real(v) and math.isfinite(v) for v in (left, bottom, right, top)):
            raise ShapeError(f"bounds {tuple(bounds)} must be four finite numbers")
        if right <= left or top <= bottom:
            raise ShapeError(
                f"bounds {tuple(bounds)} are reversed or empty (need left < right, bottom < top)"
            )
        inv = ~self.transform
        cols, rows = zip(
            *(
                apply_transform(inv, x, y)
                for x, y in ((left, top), (right, top), (left, bottom), (right, bottom))
            ),
            strict=True,
        )
        # clipped to just outside the grid first, so huge bounds cannot overflow the rounding
        rows_ = np.clip(np.asarray(rows, np.float64), -1.0, self.height + 1.0)
        cols_ = np.clip(np.asarray(cols, np.float64), -1.0, self.width + 1.0)
        if not (np.isfinite(rows_).all() and np.isfinite(cols_).all()):
            raise ShapeError(f"bounds {tuple(bounds)} do not map to pixels of {self.transform}")
        eps = 1e-9
        r0 = max(0, math.floor(rows_.min() + eps))
        r1 = min(self.height, math.ceil(rows_.max() - eps))
        c0 = max(0, math.floor(cols_.min() + eps))
        c1 = min(self.width, math.ceil(cols_.max() - eps))
        if r1 <= r0 or c1 <= c0:
            raise ShapeError(f"bounds {tuple(bounds)} do not intersect the grid {self.bounds}")
        return self[..., r0:r1, c0:c1]

    def select_bands(self, bands: Any) -> GeoTensor:
        """Keep the given bands (names or 0-based indices, in that order) on axis -3.

        A single name or index keeps the band axis (one band).
        """
        if self.ndim < 3:
            raise ShapeError(f"select_bands needs a band axis; shape is {self.shape}")
        if isinstance(bands, str | int | np.integer):
            bands = [bands]
        try:
            bands = list(bands)
        except TypeError:
            raise ShapeError(f"select_bands needs names or indices, got {bands!r}") from None
        return self[..., bands, :, :]

    def astype(self, dtype: Any) -> GeoTensor:
        """A copy with ``values`` cast to ``dtype`` (georeferencing kept)."""
        try:
            dt = np.dtype(dtype)
        except (TypeError, ValueError):
            raise ConfigError("GeoTensor.astype", "dtype", dtype, "is not a dtype") from None
        if dt.kind in NON_NUMERIC_KINDS:
            raise ConfigError("GeoTensor.astype", "dtype", dtype, "must be a numeric dtype")
        return self.replace(values=self.values.astype(dt))

    def to_numpy(self) -> np.ndarray:
        """``values`` as a NumPy array (no copy on CPU where JAX allows it)."""
        return np.asarray(self.values)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """The NumPy array protocol (NumPy 2 semantics for `copy`).

        ``copy=None``: a view of the JAX buffer when possible (read-only, CPU backend), a copy
        otherwise. ``copy=True``: always a fresh, writable copy. ``copy=False``: never a copy;
        raises :class:`~georax.errors.DataError` (a ``ValueError``, as NumPy expects) when one
        is needed (a dtype change, a device-to-host transfer).
        """
        if copy is None:  # also the only value NumPy 1.x passes
            return np.asarray(self.values, dtype=dtype)
        try:
            return np.asarray(self.values, dtype=dtype, copy=copy)
        except ValueError as e:
            raise DataError(
                f"GeoTensor of {self.dtype} on {self.values.devices()}: np.asarray(..., "
                f"dtype={dtype}, copy=False) needs a copy: {e}"
            ) from None
