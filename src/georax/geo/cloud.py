"""Cloud masking from bit-packed quality bands (Sentinel-2 QA60, Landsat QA_PIXEL).

Pure functions (:func:`qa_bit_mask`, :func:`apply_mask`) and the thin operators that call them:

- :class:`MaskFromQABits` — the mask alone: ``True`` where any of the given QA bits is set.
- :class:`ApplyMask` — holds a mask operator as a child (or names a mask band) and fills masked
  pixels (NaN by default).
- :class:`MaskClouds` — both in one step, with presets :meth:`MaskClouds.sentinel2` and
  :meth:`MaskClouds.landsat`.

**The QA band is dropped from the output** of :class:`ApplyMask` and :class:`MaskClouds` (set
``drop_qa=False`` to keep it): after masking, the remaining bands are reflectances only, so band
indices downstream (``NDVI(red=2, nir=3)``) count the same as in the sensor's band list and no index
ever mixes a bit-field into its arithmetic. With the Sentinel-2 convention (B02, B03, B04, B08, B11,
B12, QA60 last) the output is the six reflectance bands.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Num, Shaped

from georax.core.operator import Operator, as_tuple, static
from georax.geo._bands import check_bands, drop_band, map_bands, take_band, with_fill_value

__all__ = [
    "LANDSAT_QA_PIXEL_BITS",
    "SENTINEL2_QA60_BITS",
    "ApplyMask",
    "MaskClouds",
    "MaskFromQABits",
    "apply_mask",
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
    """
    qa = jnp.asarray(qa)
    if jnp.issubdtype(qa.dtype, jnp.floating):
        qa = jnp.where(jnp.isnan(qa), 0, qa).astype(jnp.uint32)
    else:
        qa = qa.astype(jnp.uint32)
    bitmask = 0
    for b in bits:
        bitmask |= 1 << int(b)
    return (qa & jnp.uint32(bitmask)) != 0


def apply_mask(
    x: Shaped[Array, "*batch band H W"],
    mask: Bool[Array, "*#batch #band H W"],
    fill: float = float("nan"),
) -> Shaped[Array, "*batch band H W"]:
    """Replace the pixels of ``x`` where ``mask`` is true by ``fill``.

    Integer data is promoted to float32 when ``fill`` is NaN (an integer cannot hold NaN);
    otherwise the dtype is kept. Differentiable in ``x`` (the gradient is zero at masked pixels).

    **Arguments:**

    - `x`: the bands.
    - `mask`: broadcastable to ``x``; ``True`` = masked (invalid).
    - `fill`: the value written at masked pixels.
    """
    x = jnp.asarray(x)
    if fill != fill and not jnp.issubdtype(x.dtype, jnp.floating):  # NaN fill
        x = x.astype(jnp.float32)
    return jnp.where(mask, jnp.asarray(fill, x.dtype), x)


def _nan_is_none(v: Any) -> Any:
    """Config converter: a NaN fill is stored as ``None``.

    NaN != NaN, so a NaN in static config would make an operator unequal to (and hash unlike) its
    own YAML round trip; ``None`` means "NaN" for every ``fill`` field here.
    """
    return None if isinstance(v, float) and v != v else v


def _fill_value(fill: float | None) -> float:
    return float("nan") if fill is None else fill


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
        if not isinstance(self.qa_band, int):
            self.fail("qa_band", "must be an int band index")
        if not self.bits or any(not isinstance(b, int) or not 0 <= b < 32 for b in self.bits):
            self.fail("bits", "must be a non-empty sequence of bit positions in [0, 32)")
        if not isinstance(self.dilate, int) or self.dilate < 0:
            self.fail("dilate", "must be an int >= 0")

    @property
    def source_band(self) -> int:
        """The band this mask is computed from (dropped by :class:`ApplyMask`)."""
        return self.qa_band

    def mask(self, values: Array) -> Bool[Array, "*batch 1 H W"]:
        """The mask of a plain array (used by :class:`ApplyMask`)."""
        check_bands(values, (self.qa_band,), type(self).__name__)
        m = qa_bit_mask(take_band(values, self.qa_band), self.bits)
        if self.dilate:
            w = 2 * self.dilate + 1
            dims = (1,) * (m.ndim - 2) + (w, w)
            m = jax.lax.reduce_window(m, False, jax.lax.bitwise_or, dims, (1,) * m.ndim, "SAME")
        return m[..., None, :, :]

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return map_bands(self.mask, x, names=lambda _: ("mask",))


class ApplyMask(Operator):
    """Fill masked pixels, with the mask from a child operator or from a band of the input.

    ``ApplyMask(MaskFromQABits(qa_band=-1, bits=[10, 11]))`` masks clouds; ``ApplyMask(
    mask_band=-1)`` masks wherever band ``-1`` is non-zero.

    **Arguments:**

    - `mask`: an operator mapping the input to a boolean mask broadcastable to the bands
      (``True`` = invalid), e.g. :class:`MaskFromQABits`. A pytree child: it is part of the
      pipeline and of its config.
    - `mask_band`: alternatively, the index of a band whose non-zero pixels are invalid.
    - `fill`: value written at masked pixels; ``None`` (default) or NaN means NaN (integer data
      then becomes float32).
    - `drop_qa`: drop the band the mask came from (``mask_band``, or the child's ``source_band``
      such as ``MaskFromQABits.qa_band``) from the output. Default ``True`` — see the module
      docstring.
    """

    mask: Operator | None = None
    mask_band: int | None = static(None)
    fill: float | None = static(None, converter=_nan_is_none)
    drop_qa: bool = static(True)

    def __check_init__(self) -> None:
        if (self.mask is None) == (self.mask_band is None):
            self.fail("mask", "give exactly one of `mask` (an operator) or `mask_band` (an int)")
        if self.mask is not None and not isinstance(self.mask, Operator):
            self.fail("mask", "must be a georax Operator producing a boolean mask")
        if self.mask_band is not None and not isinstance(self.mask_band, int):
            self.fail("mask_band", "must be an int band index")
        if self.fill is not None and not isinstance(self.fill, int | float):
            self.fail("fill", "must be a number, or None for NaN")

    def _source_band(self) -> int | None:
        if self.mask_band is not None:
            return self.mask_band
        return getattr(self.mask, "source_band", None)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        from georax.core.carrier import values_of

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
            return apply_mask(v, m, _fill_value(self.fill))

        names = _names_without(src) if src is not None else None
        return with_fill_value(map_bands(fn, x, names=names), _fill_value(self.fill))


class MaskClouds(Operator):
    """Mask cloudy pixels from a QA band in one step (the seeds' ``MaskClouds``).

    Equivalent to ``ApplyMask(MaskFromQABits(qa_band, bits), fill=fill, drop_qa=drop_qa)``.
    Presets: :meth:`sentinel2` (QA60 bits 10, 11) and :meth:`landsat` (QA_PIXEL bits 1-4).

    **Arguments:**

    - `qa_band`: index of the QA band (``-1``: last).
    - `bits`: QA bits marking a pixel invalid.
    - `fill`: value at masked pixels; ``None`` (default) or NaN = NaN (integers become float32).
    - `drop_qa`: drop the QA band from the output (default ``True``; see the module docstring).
    - `dilate`: grow the mask by this many pixels.
    """

    qa_band: int = static(-1)
    bits: tuple[int, ...] = static(SENTINEL2_QA60_BITS, converter=as_tuple)
    fill: float | None = static(None, converter=_nan_is_none)
    drop_qa: bool = static(True)
    dilate: int = static(0)

    def __check_init__(self) -> None:
        if not isinstance(self.qa_band, int):
            self.fail("qa_band", "must be an int band index")
        if not self.bits or any(not isinstance(b, int) or not 0 <= b < 32 for b in self.bits):
            self.fail("bits", "must be a non-empty sequence of bit positions in [0, 32)")
        if self.fill is not None and not isinstance(self.fill, int | float):
            self.fail("fill", "must be a number, or None for NaN")
        if not isinstance(self.dilate, int) or self.dilate < 0:
            self.fail("dilate", "must be an int >= 0")

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
            fill=self.fill,
            drop_qa=self.drop_qa,
        )

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return self._as_apply_mask()(x)
