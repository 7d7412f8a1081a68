"""Visualisation: colormaps, true-colour composites, and a host-side PNG encoder.

- :class:`Colormap` maps one band to RGBA ``uint8`` through a 256-entry lookup table built **once**
  at construction from matplotlib's registry (a derived array leaf: it is not config — ``name``
  is — and it is rebuilt from ``name`` on load). NaN pixels become fully transparent. Values are
  binned exactly as ``matplotlib.colors.Normalize(vmin, vmax)`` + ``Colormap(..., bytes=True)``
  bin them (``floor(t * 256)``, clipped to the end colours).
- :class:`TrueColor` picks three bands, stretches them to [0, 1] (fixed range or per-band
  percentiles) with an optional gamma, and returns RGB(A) ``uint8``; NaN -> alpha 0.

Every number that only enters the arithmetic (``vmin``/``vmax``, percentiles, ``gamma``) is an
array leaf, so a rendering can be tuned without recompiling; values are refused when they make no
sense (an empty range, a gamma <= 0, NaN) whenever they are known. Complex input is refused.
- :func:`encode_png` / :func:`write_png` are the **host boundary**: they pull the array to NumPy and
  encode with Pillow; they do not run under ``jit``.

Outputs are bands-first like every georax raster: ``(..., 4, H, W)`` (or 3 without alpha).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, UInt8, UInt32

from georax.array.reductions import nanpercentile
from georax.array.validate import concrete, real_float, require_real
from georax.core.carrier import values_of
from georax.core.errors import ConfigError, DataError, ShapeError
from georax.core.operator import Operator, as_tuple, derived, leaf, optional_leaf, static
from georax.geo._bands import check_bands, check_finite_leaf, map_bands
from georax.geo._precheck import with_bands

if TYPE_CHECKING:
    from georax.core.sandbox import Limits

__all__ = [
    "Colormap",
    "TrueColor",
    "apply_lut",
    "colormap_lut",
    "encode_png",
    "stretch",
    "to_uint8",
    "write_png",
]

_RGBA = ("R", "G", "B", "A")


def colormap_lut(name: str, n: int = 256) -> np.ndarray:
    """The ``(n, 4)`` uint8 RGBA table of matplotlib colormap ``name`` (host-side, once)."""
    import matplotlib

    cmap = matplotlib.colormaps[name].resampled(n)
    return np.asarray(cmap(np.arange(n), bytes=True), dtype=np.uint8)


#: Bit offset of channel c (R, G, B, A) in a packed RGBA word.
_SHIFTS = np.array([0, 8, 16, 24], np.uint32)


def _packed_lut(lut: UInt8[ArrayLike, "n 4"], nan_rgba: Sequence[int]) -> UInt32[Array, " n+1"]:
    """``lut`` with ``nan_rgba`` appended as entry ``n``; each RGBA row packed into one uint32
    word (channel c in bits 8c..8c+7)."""
    table = jnp.concatenate(
        [jnp.asarray(lut, jnp.uint8), jnp.asarray(nan_rgba, jnp.uint8)[None, :]], axis=0
    )
    return jnp.bitwise_or.reduce(table.astype(jnp.uint32) << _SHIFTS, axis=-1)


def _apply_packed_lut(
    x: Float[Array, "*batch H W"], packed: UInt32[Array, " n+1"], vmin: ArrayLike, vmax: ArrayLike
) -> UInt8[Array, "*batch 4 H W"]:
    """:func:`apply_lut` with the table already packed by :func:`_packed_lut` (NaN colour last)."""
    x = real_float(x, "apply_lut").astype(jnp.float32)
    n = packed.shape[0] - 1
    t = (x - vmin) / (vmax - vmin)
    idx = jnp.clip(jnp.floor(jnp.nan_to_num(t, nan=0.0) * n), 0, n - 1).astype(jnp.int32)
    idx = jnp.where(jnp.isnan(x), n, idx)
    word = packed.at[idx].get(mode="promise_in_bounds")[..., None, :, :]
    # unpacking by shifts writes the (..., 4, H, W) planes in their natural layout; a bitcast to
    # (..., H, W, 4) + moveaxis gives a transposed buffer that XLA:CPU copies once more when the
    # image is one of several outputs (as under eqx.filter_jit, which adds a marker output)
    return ((word >> _SHIFTS[:, None, None]) & 0xFF).astype(jnp.uint8)


def apply_lut(
    x: Float[Array, "*batch H W"],
    lut: UInt8[Array, "n 4"],
    vmin: ArrayLike,
    vmax: ArrayLike,
    nan_rgba: Sequence[int] = (0, 0, 0, 0),
) -> UInt8[Array, "*batch 4 H W"]:
    """Colour ``x`` with ``lut``: ``t = (x - vmin) / (vmax - vmin)``, bin ``floor(t * n)``.

    Bins are clipped to ``[0, n - 1]`` (values outside the range take the end colours, as
    matplotlib does by default); NaN pixels get ``nan_rgba``.

    Implementation (speed, same numbers): the NaN colour is appended to the table as entry ``n``
    and each RGBA row is packed into one ``uint32``, so a pixel costs one gather of a 4-byte word
    (then four shifts write the four channel planes). On XLA:CPU this is ~4x faster than four
    per-channel ``uint8`` gathers plus a select for NaN.

    The packing is folded away when ``lut`` is a compile-time constant. When it is traced (a jit
    argument), XLA:CPU fuses the append and the packing into the gather and repeats them for
    *every pixel*; :class:`Colormap` therefore packs its table once, at construction.
    """
    return _apply_packed_lut(x, _packed_lut(lut, nan_rgba), vmin, vmax)


def stretch(
    x: Float[Array, "*batch band H W"], lo: ArrayLike, hi: ArrayLike, gamma: ArrayLike = 1.0
) -> Float[Array, "*batch band H W"]:
    """Linear stretch of ``[lo, hi]`` to ``[0, 1]`` (clipped), then ``** (1 / gamma)``."""
    t = jnp.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t ** (1.0 / gamma)


def to_uint8(t: Float[Array, ...]) -> UInt8[Array, ...]:
    """``[0, 1]`` floats to ``0..255`` (rounded; NaN -> 0)."""
    return jnp.round(jnp.nan_to_num(jnp.clip(t, 0.0, 1.0), nan=0.0) * 255).astype(jnp.uint8)


def _check_range(op: Operator, lo: str, hi: str) -> None:
    """Leaves ``lo < hi`` and finite, whenever both values are known (not traced)."""
    check_finite_leaf(op, lo, hi)
    a, b = concrete(getattr(op, lo)), concrete(getattr(op, hi))
    if a is not None and b is not None and not bool(np.all(a < b)):
        op.fail(hi, f"must be > {lo} (an empty range maps every pixel to one colour)")


def _is_rgba(rgba: Any) -> bool:
    """Whether ``rgba`` is 4 ints in [0, 255] (a list from YAML counts as well as a tuple)."""
    return (
        isinstance(rgba, tuple | list)
        and len(rgba) == 4
        and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in rgba)
    )


class Colormap(Operator):
    """One band to RGBA ``uint8`` through a matplotlib colormap; LUT built once.

    **Arguments:**

    - `name`: a matplotlib colormap name (``"viridis"``, ``"RdYlGn"``, ...).
    - `vmin`, `vmax`: the value range mapped onto the colormap (finite leaves, ``vmin < vmax``).
    - `nan_rgba`: colour of NaN pixels (transparent by default).

    The ``(256, 4)`` table ``lut`` is a derived leaf: built in ``__init__``, excluded from config.
    So is ``packed_lut``, the ``(257,)`` ``uint32`` table the gather reads (``lut`` plus the
    ``nan_rgba`` entry, one word per RGBA row). It is packed here, once, because when the operator
    is a jit *argument* (``eqx.filter_jit(lambda p, x: p(x))``, how a service swaps parameters
    without recompiling) XLA:CPU fuses in-graph packing into the gather and redoes it per pixel:
    that made the colormap step ~2x slower than with the operator captured as a constant.
    """

    name: str = static("viridis")
    vmin: Array = leaf(0.0)
    vmax: Array = leaf(1.0)
    nan_rgba: tuple[int, int, int, int] = static((0, 0, 0, 0), converter=as_tuple)
    lut: Array = derived()
    packed_lut: Array = derived()

    def __init__(
        self,
        name: str = "viridis",
        vmin: ArrayLike = 0.0,
        vmax: ArrayLike = 1.0,
        nan_rgba: Sequence[int] = (0, 0, 0, 0),
    ) -> None:
        import matplotlib

        if name not in matplotlib.colormaps:
            raise ConfigError("Colormap", "name", name, "is not a matplotlib colormap")
        self.name = name
        self.vmin = vmin
        self.vmax = vmax
        self.nan_rgba = nan_rgba
        self.lut = jnp.asarray(colormap_lut(name))
        # a malformed nan_rgba is refused by __check_init__ (ConfigError); pack a valid stand-in
        self.packed_lut = _packed_lut(self.lut, nan_rgba if _is_rgba(nan_rgba) else (0, 0, 0, 0))

    def __check_init__(self) -> None:
        if not _is_rgba(self.nan_rgba):
            self.fail("nan_rgba", "must be 4 ints in [0, 255]")
        _check_range(self, "vmin", "vmax")

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Four output bands (RGBA)."""
        del limits
        return with_bands(shape, 4)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        v = require_real(values_of(x), "Colormap")
        if jnp.ndim(v) < 2:
            raise ShapeError(f"Colormap: expected (..., 1, H, W) or (H, W), got shape {v.shape}")
        if jnp.ndim(v) >= 3 and jnp.shape(v)[-3] != 1:
            raise ShapeError(
                f"Colormap: expected one band (..., 1, H, W) or (H, W), got shape {jnp.shape(v)}"
            )

        def fn(a: Array) -> Array:
            a = a[..., 0, :, :] if a.ndim >= 3 else a
            return _apply_packed_lut(a, self.packed_lut, self.vmin, self.vmax)

        return map_bands(fn, x, names=lambda _: _RGBA)


class TrueColor(Operator):
    """RGB(A) ``uint8`` composite of three bands.

    **Arguments:**

    - `rgb_bands`: indices of the red, green and blue bands (Sentinel-2 layout: ``(2, 1, 0)``).
    - `vmin`, `vmax`: fixed reflectance range (finite leaves, ``vmin < vmax``); if None, per-band
      percentiles are used.
    - `pmin`, `pmax`: percentiles for the automatic range (leaves, ``0 <= pmin < pmax <= 100``;
      exact, NaN-aware).
    - `gamma`: display gamma (a finite leaf > 0), applied as ``t ** (1 / gamma)``.
    - `alpha`: add an alpha band, 0 where any of the three bands is NaN.
    """

    rgb_bands: tuple[int, int, int] = static((2, 1, 0), converter=as_tuple)
    vmin: Array | None = optional_leaf()
    vmax: Array | None = optional_leaf()
    pmin: Array = leaf(2.0)
    pmax: Array = leaf(98.0)
    gamma: Array = leaf(1.0)
    alpha: bool = static(True)

    def __check_init__(self) -> None:
        if (self.vmin is None) != (self.vmax is None):
            self.fail("vmin", "give both vmin and vmax, or neither (percentile stretch)")
        if self.vmin is not None:
            _check_range(self, "vmin", "vmax")
        _check_range(self, "pmin", "pmax")
        for f in ("pmin", "pmax"):
            p = concrete(getattr(self, f))
            if p is not None and not bool(np.all((p >= 0) & (p <= 100))):
                self.fail(f, "must be a percentile in [0, 100]")
        check_finite_leaf(self, "gamma")
        gamma = concrete(self.gamma)
        if gamma is not None and not bool(np.all(gamma > 0)):
            self.fail("gamma", "must be > 0 (the stretch is raised to 1 / gamma)")

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Three or four output bands."""
        del limits
        return with_bands(shape, 4 if self.alpha else 3)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        values = require_real(values_of(x), "TrueColor")
        check_bands(values, self.rgb_bands, "TrueColor")

        def fn(v: Array) -> Array:
            v = real_float(v, "TrueColor").astype(jnp.float32)
            rgb = jnp.take(v, jnp.asarray(self.rgb_bands), axis=-3)
            if self.vmin is None:
                q = jnp.stack([jnp.asarray(self.pmin, v.dtype), jnp.asarray(self.pmax, v.dtype)])
                lo, hi = nanpercentile(rgb, q, (-2, -1), keepdims=True)
                hi = jnp.where(hi > lo, hi, lo + 1)
            else:
                lo, hi = self.vmin, self.vmax
            out = to_uint8(stretch(rgb, lo, hi, self.gamma))
            if self.alpha:
                a = jnp.where(jnp.any(jnp.isnan(rgb), axis=-3, keepdims=True), 0, 255)
                out = jnp.concatenate([out, a.astype(jnp.uint8)], axis=-3)
            return out

        return map_bands(fn, x, names=lambda _: _RGBA if self.alpha else _RGBA[:3])


# ------------------------------------------------------------------------------------------------
# Host boundary: PNG encoding
# ------------------------------------------------------------------------------------------------


def encode_png(x: Any, *, compress_level: int = 6) -> bytes:
    """Encode a ``uint8`` image as PNG bytes (host-side, Pillow; not jit-able).

    **Arguments:**

    - `x`: an array or GeoTensor, bands-first ``(C, H, W)`` with C in {1, 3, 4} (grey, RGB,
      RGBA), or ``(H, W)``. Must be ``uint8`` (use :class:`Colormap` / :class:`TrueColor`).
    - `compress_level`: zlib level 0-9.

    **Returns:** the PNG file contents.
    """
    from PIL import Image

    a = np.asarray(jax.device_get(values_of(x)))
    if a.dtype != np.uint8:
        raise DataError(f"encode_png: expected uint8 pixels, got {a.dtype}")
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[0] not in (1, 3, 4):
        raise ShapeError(f"encode_png: expected (C, H, W) with C in 1, 3, 4; got shape {a.shape}")
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[a.shape[0]]
    hwc = np.ascontiguousarray(np.moveaxis(a, 0, -1))
    img = Image.fromarray(hwc[..., 0] if mode == "L" else hwc, mode=mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def write_png(path: str | os.PathLike[str], x: Any, **kwargs: Any) -> str:
    """:func:`encode_png` and write the bytes to ``path``; returns the path."""
    data = encode_png(x, **kwargs)
    with open(path, "wb") as f:
        f.write(data)
    return os.fspath(path)
