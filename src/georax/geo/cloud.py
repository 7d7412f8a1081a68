"""Cloud masking from bit-packed quality bands (Sentinel-2 QA60, Landsat QA_PIXEL).

Pure functions (:func:`qa_bit_mask`, :func:`apply_mask`) and the thin operators that call them:

- :class:`MaskFromQABits` — the mask alone: ``True`` where any of the given QA bits is set.
- :class:`ApplyMask` — holds a mask operator as a child (or names a mask band) and fills masked
  pixels (NaN by default).
- :class:`MaskClouds` — both in one step, with presets :meth:`MaskClouds.sentinel2` and
  :meth:`MaskClouds.landsat`.

**The QA band is dropped from the output** of :class:`ApplyMask` and :class:`MaskClouds` (set
``drop_qa=False`` to keep it): after masking, the remaining bands are reflectances only, so band
indices downstream (``NDVI(red_band=2, nir_band=3)``) count the same as in the sensor's band list
and no index ever mixes a bit-field into its arithmetic. With the Sentinel-2 convention (B02, B03,
B04, B08, B11, B12, QA60 last) the output is the six reflectance bands.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Num, Shaped

from georax.array.validate import require_real
from georax.core.carrier import values_of
from georax.core.operator import Operator, as_tuple, static
from georax.geo._bands import (
    check_bands,
    drop_band,
    map_bands,
    take_band,
    with_fill_value,
)
from georax.geo._precheck import refuse_extent, spatial_shape, with_bands

if TYPE_CHECKING:
    from georax.core.sandbox import Limits

__all__ = [
    "LANDSAT_QA_PIXEL_BITS",
    "SENTINEL2_QA60_BITS",
    "ApplyMask",
    "MaskClouds",
    "MaskFromQABits",
    "apply_mask",
    "dilate_mask",
    "qa_bit_mask",
]

#: Sentinel-2 L1C/L2A QA60: bit 10 opaque cloud, bit 11 cirrus.
SENTINEL2_QA60_BITS: tuple[int, ...] = (10, 11)
#: Landsat Collection 2 QA_PIXEL: bit 1 dilated cloud, 2 cirrus, 3 cloud, 4 cloud shadow.
LANDSAT_QA_PIXEL_BITS: tuple[int, ...] = (1, 2, 3, 4)


def qa_bit_mask(qa: Num[Array, "*batch H W"], bits: Sequence[int]) -> Bool[Array, "*batch H W"]:
    """``True`` where any of ``bits`` is set in the quality band ``qa``.

    Float QA bands (e.g. after :class:`~georax.geo.radiometry.ToFloat32`) are read as integers;
    NaN counts as "no bits set".

    **Arguments:**

    - `qa`: the bit-packed quality band, integer or integer-valued float.
    - `bits`: bit positions (0 = least significant).

    **Returns:** a boolean mask of the same shape.

    **Raises:** :class:`~georax.errors.DataError` for a complex QA band (bits of what?).
    """
    qa = require_real(qa, "qa_bit_mask")
    if jnp.issubdtype(qa.dtype, jnp.floating):
        qa = jnp.where(jnp.isnan(qa), 0, qa).astype(jnp.uint32)
    else:
        qa = qa.astype(jnp.uint32)
    bitmask = 0
    for b in bits:
        bitmask |= 1 << int(b)
    return (qa & jnp.uint32(bitmask)) != 0


def dilate_mask(mask: Bool[Array, "*batch H W"], radius: int) -> Bool[Array, "*batch H W"]:
    """Grow a mask by ``radius`` pixels: a ``(2 radius + 1)`` square max-filter.

    The square filter is separable (rows, then columns), so it costs ``2 (2 radius + 1)``
    comparisons per pixel instead of ``(2 radius + 1)**2``. A radius beyond the image changes
    nothing (every window already covers the whole image), so it is clamped to the image size:
    cost and memory never grow with the configured value, only with the image.

    **Arguments:**

    - `mask`: boolean, dilated over its last two axes.
    - `radius`: pixels to grow by (>= 0).

    **Returns:** the dilated mask, same shape.
    """
    if radius <= 0:
        return mask
    for axis in (-2, -1):
        n = mask.shape[axis]
        w = 2 * min(radius, max(n - 1, 0)) + 1
        if w == 1:
            continue
        dims = [1] * mask.ndim
        dims[axis] = w
        mask = jax.lax.reduce_window(
            mask, False, jax.lax.bitwise_or, tuple(dims), (1,) * mask.ndim, "SAME"
        )
    return mask


def apply_mask(
    x: Shaped[Array, "*batch band H W"],
    mask: Bool[Array, "*#batch #band H W"],
    fill_value: float = float("nan"),
) -> Shaped[Array, "*batch band H W"]:
    """Replace the pixels of ``x`` where ``mask`` is true by ``fill_value``.

    Integer (and boolean) data is promoted to float32 when its dtype cannot hold ``fill_value``
    (NaN, a fraction, or an integer out of range such as -1 for ``uint16``); otherwise the dtype
    is kept (complex data stays complex: a complex NaN marks it missing). Differentiable in ``x``
    (the gradient is zero at masked pixels).

    **Arguments:**

    - `x`: the bands.
    - `mask`: broadcastable to ``x``; ``True`` = masked (invalid).
    - `fill_value`: the value written at masked pixels.
    """
    x = jnp.asarray(x)
    if not _holds(x.dtype, fill_value):
        x = x.astype(jnp.float32)
    return jnp.where(mask, jnp.asarray(fill_value, x.dtype), x)


def _holds(dtype: Any, value: float) -> bool:
    """Whether ``dtype`` represents ``value`` exactly (floats hold any number, NaN included)."""
    if jnp.issubdtype(dtype, jnp.inexact):
        return True
    if not jnp.issubdtype(dtype, jnp.integer) or not float(value).is_integer():
        return False
    info = jnp.iinfo(dtype)
    return info.min <= value <= info.max


def _nan_is_none(v: Any) -> Any:
    """Config converter: a NaN ``fill_value`` is stored as ``None``.

    NaN != NaN, so a NaN in static config would make an operator unequal to (and hash unlike) its
    own YAML round trip; ``None`` means "NaN" for every ``fill_value`` field here.
    """
    return None if isinstance(v, float) and v != v else v


def _fill(fill_value: float | None) -> float:
    return float("nan") if fill_value is None else fill_value


def _check_mask_fields(op: Operator) -> None:
    """The field checks MaskFromQABits and MaskClouds share."""
    bits = op.bits  # type: ignore[attr-defined]
    if not bits or any(not 0 <= b < 32 for b in bits):
        op.fail("bits", "must be a non-empty sequence of bit positions in [0, 32)")
    if op.dilate < 0:  # type: ignore[attr-defined]
        op.fail("dilate", "must be >= 0")


def _precheck_dilate(op: Operator, shape: tuple[int, ...], limits: Limits) -> None:
    spatial_shape(shape, type(op).__name__, min_ndim=3)
    refuse_extent(type(op).__name__, "dilate", 2 * op.dilate + 1, limits)  # type: ignore[attr-defined]


def _names_without(index: int) -> Any:
    def names(old: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if old is None:
            return None
        i = index % len(old)
        return old[:i] + old[i + 1 :]

    return names


class MaskFromQABits(Operator):
    """The cloud mask from a bit-packed QA band: ``True`` where any of ``bits`` is set.

    Returns a boolean ``(..., 1, H, W)`` raster (band name ``"mask"``), which broadcasts against
    the bands; a GeoTensor stays a GeoTensor.

    **Arguments:**

    - `qa_band`: index of the QA band along the band axis (``-1``: last).
    - `bits`: bit positions that mark a pixel invalid.
    - `dilate`: grow the mask by this many pixels (square, max-filter); 0 = none.
    """

    qa_band: int = static(-1)
    bits: tuple[int, ...] = static(SENTINEL2_QA60_BITS, converter=as_tuple)
    dilate: int = static(0)

    def __check_init__(self) -> None:
        _check_mask_fields(self)

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Refuse a dilation window over ``limits.max_extent``; the output has one band."""
        _precheck_dilate(self, shape, limits)
        return with_bands(shape, 1)

    @property
    def source_band(self) -> int:
        """The band this mask is computed from (dropped by :class:`ApplyMask`)."""
        return self.qa_band

    def mask(self, values: Array) -> Bool[Array, "*batch 1 H W"]:
        """The mask of a plain array (used by :class:`ApplyMask`)."""
        check_bands(require_real(values, type(self).__name__), (self.qa_band,), type(self).__name__)
        m = dilate_mask(qa_bit_mask(take_band(values, self.qa_band), self.bits), self.dilate)
        return m[..., None, :, :]

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return map_bands(self.mask, x, names=lambda _: ("mask",))


class ApplyMask(Operator):
    """Fill masked pixels, with the mask from a child operator or from a band of the input.

    ``ApplyMask(MaskFromQABits(qa_band=-1, bits=[10, 11]))`` masks clouds; ``ApplyMask(
    mask_band=-1)`` masks wherever band ``-1`` is non-zero. A carrier input (GeoTensor, Chips)
    comes back as the same carrier, with ``fill_value`` set to the value written.

    **Arguments:**

    - `mask`: an operator mapping the input to a boolean mask broadcastable to the bands
      (``True`` = invalid), e.g. :class:`MaskFromQABits`. A pytree child: it is part of the
      pipeline and of its config.
    - `mask_band`: alternatively, the index of a band whose non-zero pixels are invalid.
    - `fill_value`: value written at masked pixels; ``None`` (default) or NaN means NaN (integer
      data then becomes float32).
    - `drop_qa`: drop the band the mask came from (``mask_band``, or the child's ``source_band``
      such as ``MaskFromQABits.qa_band``) from the output. Default ``True`` — see the module
      docstring.
    """

    mask: Operator | None = None
    mask_band: int | None = static(None)
    fill_value: float | None = static(None, converter=_nan_is_none)
    drop_qa: bool = static(True)

    def __check_init__(self) -> None:
        if (self.mask is None) == (self.mask_band is None):
            self.fail("mask", "give exactly one of `mask` (an operator) or `mask_band` (an int)")

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Run the mask operator's own precheck; the output may lose the mask's source band."""
        spatial_shape(shape, type(self).__name__, min_ndim=3)
        if self.mask is not None:
            self.mask.precheck(shape, limits)
        dropped = self.drop_qa and self._source_band() is not None
        return with_bands(shape, shape[-3] - 1) if dropped else shape

    def _source_band(self) -> int | None:
        if self.mask_band is not None:
            return self.mask_band
        return getattr(self.mask, "source_band", None)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        values = values_of(x)
        if self.mask_band is not None:
            check_bands(values, (self.mask_band,), type(self).__name__)
            m = (take_band(values, self.mask_band) != 0)[..., None, :, :]
        else:
            m = values_of(self.mask(values, key=key)).astype(bool)
        src = self._source_band() if self.drop_qa else None

        def fn(v: Array) -> Array:
            if src is not None:
                v = drop_band(v, src)
            return apply_mask(v, m, _fill(self.fill_value))

        names = _names_without(src) if src is not None else None
        return with_fill_value(map_bands(fn, x, names=names), _fill(self.fill_value))


class MaskClouds(Operator):
    """Mask cloudy pixels from a QA band in one step (the seeds' ``MaskClouds``).

    Equivalent to ``ApplyMask(MaskFromQABits(qa_band, bits, dilate), fill_value=fill_value,
    drop_qa=drop_qa)``.
    Presets: :meth:`sentinel2` (QA60 bits 10, 11) and :meth:`landsat` (QA_PIXEL bits 1-4).

    **Arguments:**

    - `qa_band`: index of the QA band (``-1``: last).
    - `bits`: QA bits marking a pixel invalid.
    - `fill_value`: value at masked pixels; ``None`` (default) or NaN = NaN (integers become
      float32).
    - `drop_qa`: drop the QA band from the output (default ``True``; see the module docstring).
    - `dilate`: grow the mask by this many pixels.
    """

    qa_band: int = static(-1)
    bits: tuple[int, ...] = static(SENTINEL2_QA60_BITS, converter=as_tuple)
    fill_value: float | None = static(None, converter=_nan_is_none)
    drop_qa: bool = static(True)
    dilate: int = static(0)

    def __check_init__(self) -> None:
        _check_mask_fields(self)

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Refuse a dilation window over ``limits.max_extent``; the QA band may be dropped."""
        _precheck_dilate(self, shape, limits)
        return with_bands(shape, shape[-3] - 1) if self.drop_qa else shape

    @classmethod
    def sentinel2(cls, qa_band: int = -1, *, cirrus: bool = True, **kwargs: Any) -> MaskClouds:
        """Sentinel-2 QA60: opaque clouds (bit 10) and, unless ``cirrus=False``, cirrus (bit 11)."""
        bits = SENTINEL2_QA60_BITS if cirrus else (10,)
        return cls(qa_band=qa_band, bits=bits, **kwargs)

    @classmethod
    def landsat(cls, qa_band: int = -1, *, shadow: bool = True, **kwargs: Any) -> MaskClouds:
        """Landsat C2 QA_PIXEL: dilated cloud (1), cirrus (2), cloud (3), shadow (4, optional)."""
        bits = LANDSAT_QA_PIXEL_BITS if shadow else (1, 2, 3)
        return cls(qa_band=qa_band, bits=bits, **kwargs)

    def _as_apply_mask(self) -> ApplyMask:
        return ApplyMask(
            MaskFromQABits(self.qa_band, self.bits, self.dilate),
            fill_value=self.fill_value,
            drop_qa=self.drop_qa,
        )

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return self._as_apply_mask()(x)
