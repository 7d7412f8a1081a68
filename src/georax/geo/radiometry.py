"""Radiometric operators: dtype, DN scaling, percentile clipping, dark-object subtraction,
sun-zenith correction, per-band normalisation.

Pure functions first (documented math, no config), then the thin operators. Percentiles use
:func:`georax.array.reductions.nanpercentile` — exact (NumPy "linear"), NaN-aware, no sort.

Per-band parameters (``scale``, ``offset``, ``mean``, ``std``) are array leaves: a scalar applies to
every band, a 1-D array of length ``band`` applies band by band (it is broadcast against
``(..., band, H, W)``). Percentiles (``pmin``/``pmax``, ``percentile``) are leaves too: the exact
percentile takes them as array operands, so they can be tuned or ``vmap``-ed without recompiling.
Parameters are checked for sense (finite, in range) whenever their value is known; a parameter
traced through ``vmap``/``jit`` is checked by nobody, as in any JAX code.

The arithmetic here is real: complex input is refused with a
:class:`~georax.errors.DataError` instead of being cast (which would drop the imaginary part).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Num

from georax.array.missing import nan_safe_grad
from georax.array.reductions import nanpercentile
from georax.array.validate import concrete, is_finite_value, real_float
from georax.core.carrier import map_values, values_of
from georax.core.errors import DataError, ShapeError
from georax.core.operator import Operator, as_tuple, leaf, optional_leaf, static
from georax.geo._bands import (
    check_bands,
    check_finite_leaf,
    drop_band,
    map_bands,
    require_real_input,
    take_band,
)
from georax.geo._precheck import with_bands

if TYPE_CHECKING:
    from georax.core.sandbox import Limits

__all__ = [
    "DNToReflectance",
    "DarkObjectSubtraction",
    "Normalize",
    "PercentileClip",
    "ScaleOffset",
    "TOAToBOA",
    "ToFloat32",
    "dark_object_subtraction",
    "normalize",
    "percentile_clip",
    "scale_offset",
    "sun_zenith_correction",
]


def _per_band(p: ArrayLike, ndim: int) -> Array:
    """Broadcast a scalar or per-band 1-D parameter against ``(..., band, H, W)``."""
    p = jnp.asarray(p)
    if p.ndim == 1:
        return p.reshape((-1, 1, 1))
    return p


def _check_per_band(op: Operator, x: Any, *fields: str, n_bands: int | None = None) -> None:
    """Refuse per-band parameters whose length does not match the input's band axis.

    Checked at trace time (shapes are static), so a mismatch is a typed error naming the field
    instead of a broadcasting ``TypeError`` from deep inside JAX, and a 1-D per-band parameter
    never silently invents a band axis on an ``(H, W)`` input.
    """
    shape = jnp.shape(values_of(x))
    for f in fields:
        p = getattr(op, f)
        if p is None or jnp.ndim(p) != 1:
            continue
        bands = n_bands if n_bands is not None else (shape[-3] if len(shape) >= 3 else None)
        if bands != jnp.shape(p)[0]:
            raise ShapeError(
                f"{type(op).__name__}.{f} has {jnp.shape(p)[0]} per-band values but the input "
                f"{'has ' + str(bands) + ' bands' if bands is not None else 'has no band axis'} "
                f"(shape {shape}); drop or add bands first (e.g. MaskClouds drops the QA band)"
            )


# ------------------------------------------------------------------------------------------------
# Pure functions
# ------------------------------------------------------------------------------------------------


@nan_safe_grad
def scale_offset(
    x: Num[Array, "*batch band H W"], scale: ArrayLike, offset: ArrayLike
) -> Float[Array, "*batch band H W"]:
    """``x * scale + offset`` in float (e.g. Sentinel-2 L1C DN -> reflectance: scale 1e-4)."""
    x = real_float(x, "scale_offset")
    return x * _per_band(scale, x.ndim) + _per_band(offset, x.ndim)


def percentile_clip(
    x: Float[Array, "*batch band H W"],
    pmin: ArrayLike,
    pmax: ArrayLike,
    axis: int | Sequence[int] | None = (-2, -1),
    rescale: bool = False,
) -> Float[Array, "*batch band H W"]:
    """Clip ``x`` to its ``[pmin, pmax]`` percentiles over ``axis`` (NaN ignored, kept).

    With ``rescale`` the clipped range is mapped linearly to [0, 1] (a contrast stretch). An
    empty input comes back empty (its percentiles are NaN, and there is nothing to clip).
    """
    x = real_float(x, "percentile_clip")
    q = jnp.stack([jnp.asarray(pmin, x.dtype), jnp.asarray(pmax, x.dtype)])
    lo, hi = nanpercentile(x, q, axis, keepdims=True)
    y = jnp.clip(x, lo, hi)
    if rescale:
        y = (y - lo) / jnp.where(hi > lo, hi - lo, 1)
    return y


def dark_object_subtraction(
    x: Float[Array, "*batch band H W"],
    percentile: float = 1.0,
    axis: int | Sequence[int] | None = (-2, -1),
    clip_negative: bool = False,
) -> Float[Array, "*batch band H W"]:
    """Subtract the dark-object value: ``x - nanpercentile(x, percentile, axis)``.

    The darkest pixels of a band (deep water, shadow) should reflect ~0; what they show is the
    additive atmospheric path radiance, which is removed band by band (``axis=(-2, -1)``). The
    percentile (rather than the minimum) makes it robust to noise and dead pixels.
    """
    x = real_float(x, "dark_object_subtraction")
    y = x - nanpercentile(x, percentile, axis, keepdims=True)
    return jnp.maximum(y, 0) if clip_negative else y


@nan_safe_grad
def sun_zenith_correction(
    x: Float[Array, "*batch band H W"],
    sun_zenith: ArrayLike,
    path_reflectance: ArrayLike = 0.0,
    degrees: bool = True,
) -> Float[Array, "*batch band H W"]:
    """First-order surface reflectance: ``(x - path_reflectance) / cos(sun_zenith)``.

    The top-of-atmosphere signal scales with the cosine of the solar zenith angle; dividing by it
    normalises scenes taken at different sun heights, and subtracting a path reflectance removes
    the additive haze term. This is the cosine ("COST"-style) correction, not a radiative-transfer
    model. ``sun_zenith`` may be a scalar, per-band, or a per-pixel ``(..., H, W)`` array; pixels
    whose sun is at or below the horizon (zenith >= 90 degrees) come out NaN (missing).
    """
    x = real_float(x, "sun_zenith_correction")
    sz = jnp.asarray(sun_zenith, x.dtype)
    # per-pixel angles (..., H, W) broadcast over bands; scalars / per-band vectors as usual
    sz = sz[..., None, :, :] if sz.ndim >= 2 else _per_band(sz, x.ndim)
    if degrees:
        sz = jnp.deg2rad(sz)
    cos = jnp.cos(sz)
    # sun at or below the horizon: no meaningful correction, the pixel becomes missing (NaN)
    return jnp.where(cos > 0, (x - _per_band(path_reflectance, x.ndim)) / cos, jnp.nan)


@nan_safe_grad
def normalize(
    x: Float[Array, "*batch band H W"], mean: ArrayLike, std: ArrayLike
) -> Float[Array, "*batch band H W"]:
    """``(x - mean) / std`` per band."""
    x = real_float(x, "normalize")
    return (x - _per_band(mean, x.ndim)) / _per_band(std, x.ndim)


# ------------------------------------------------------------------------------------------------
# Operators
# ------------------------------------------------------------------------------------------------


def _check_percentile(op: Operator, field: str) -> None:
    """A percentile leaf must be a scalar in [0, 100] (checked when its value is known)."""
    check_finite_leaf(op, field)
    p = concrete(getattr(op, field))
    if p is None:
        return
    if p.ndim != 0 or not 0 <= float(p) <= 100:
        op.fail(field, "must be a number in [0, 100]")


def _check_per_band_leaves(op: Operator, *fields: str) -> None:
    """Per-band leaves are scalars or 1-D, and finite."""
    for f in fields:
        if jnp.ndim(getattr(op, f)) > 1:
            op.fail(f, "must be a scalar or a 1-D per-band array")
    check_finite_leaf(op, *fields)


class ToFloat32(Operator):
    """Cast to float32 (integer DN become exact floats below 2**24); complex input is refused."""

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return map_values(lambda v: real_float(v, "ToFloat32").astype(jnp.float32), x)


def _scale_offset_call(op: ScaleOffset | DNToReflectance, x: Any) -> Any:
    require_real_input(op, x)
    _check_per_band(op, x, "scale", "offset")
    return map_values(lambda v: scale_offset(v, op.scale, op.offset), x)


class ScaleOffset(Operator):
    """``x * scale + offset`` (float32). ``scale``/``offset`` are leaves: scalar or per band.

    **Arguments:**

    - `scale`: multiplicative gain (scalar or one per band), finite.
    - `offset`: additive offset (scalar or one per band), finite.
    """

    scale: Array = leaf(1.0)
    offset: Array = leaf(0.0)

    def __check_init__(self) -> None:
        _check_per_band_leaves(self, "scale", "offset")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return _scale_offset_call(self, x)


class DNToReflectance(Operator):
    """Digital numbers to reflectance: ``DN * scale + offset`` (:class:`ScaleOffset` with
    sensor defaults).

    Defaults are Sentinel-2 L1C (``reflectance = DN / 10000``). For L2A processing baseline >= 04.00
    use ``offset=-0.1``; for Landsat C2 L2, ``scale=2.75e-5, offset=-0.2``.

    **Arguments:**

    - `scale`: multiplicative gain (scalar or one per band), finite.
    - `offset`: additive offset (scalar or one per band), finite.
    """

    scale: Array = leaf(1e-4)
    offset: Array = leaf(0.0)

    def __check_init__(self) -> None:
        _check_per_band_leaves(self, "scale", "offset")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return _scale_offset_call(self, x)


class PercentileClip(Operator):
    """Clip each band to its ``[pmin, pmax]`` percentiles (NaN-aware, exact).

    **Arguments:**

    - `pmin`, `pmax`: percentiles in [0, 100], ``pmin <= pmax`` (array leaves).
    - `axis`: axes the percentiles are taken over; ``(-2, -1)`` = per band (per image in a batch).
    - `rescale`: also map the clipped range to [0, 1].
    """

    pmin: Array = leaf(2.0)
    pmax: Array = leaf(98.0)
    axis: tuple[int, ...] | int | None = static((-2, -1), converter=as_tuple)
    rescale: bool = static(False)

    def __check_init__(self) -> None:
        _check_percentile(self, "pmin")
        _check_percentile(self, "pmax")
        lo, hi = concrete(self.pmin), concrete(self.pmax)
        if lo is not None and hi is not None and float(lo) > float(hi):
            self.fail("pmin", f"must be <= pmax ({float(hi):g})")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        require_real_input(self, x)
        return map_values(
            lambda v: percentile_clip(v, self.pmin, self.pmax, self.axis, self.rescale), x
        )


class DarkObjectSubtraction(Operator):
    """Subtract each band's dark-object value (its ``percentile``-th percentile).

    **Arguments:**

    - `percentile`: the dark-object percentile in [0, 100] (1 = the darkest 1%); an array leaf.
    - `axis`: axes the percentile is taken over (``(-2, -1)``: per band).
    - `clip_negative`: clamp the result at 0.
    """

    percentile: Array = leaf(1.0)
    axis: tuple[int, ...] | int | None = static((-2, -1), converter=as_tuple)
    clip_negative: bool = static(False)

    def __check_init__(self) -> None:
        _check_percentile(self, "percentile")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        require_real_input(self, x)
        return map_values(
            lambda v: dark_object_subtraction(v, self.percentile, self.axis, self.clip_negative),
            x,
        )


class TOAToBOA(Operator):
    """Sun-zenith (cosine) correction with an optional path-reflectance term.

    ``(x - path_reflectance) / cos(sun_zenith)``, the angle read from a band of the input
    (``sun_zenith_band``, per pixel; that band is dropped from the output) or given as a value
    (``sun_zenith``, a differentiable leaf — e.g. for retrieval). See
    :func:`sun_zenith_correction` for what this does and does not model.

    **Arguments:**

    - `sun_zenith_band`: index of a band holding the solar zenith angle, or None.
    - `sun_zenith`: the angle when no band is given (scalar or per band).
    - `path_reflectance`: additive haze term removed before the division (scalar or per band),
      finite.
    - `degrees`: angles are in degrees (else radians).
    """

    sun_zenith_band: int | None = static(None)
    sun_zenith: Array | None = optional_leaf()
    path_reflectance: Array = leaf(0.0)
    degrees: bool = static(True)

    def __check_init__(self) -> None:
        if (self.sun_zenith_band is None) == (self.sun_zenith is None):
            self.fail("sun_zenith_band", "give exactly one of `sun_zenith_band` or `sun_zenith`")
        _check_per_band_leaves(self, "path_reflectance")
        if not is_finite_value(self.sun_zenith):
            self.fail("sun_zenith", "must be a finite number of degrees (or radians)")
        # a traced angle is not checked: sun_zenith_correction masks such pixels instead
        z = concrete(self.sun_zenith)
        limit = 90.0 if self.degrees else float(np.pi / 2)
        if z is not None and np.any(~(np.abs(z) < limit)):
            self.fail("sun_zenith", f"must be below {limit:g} (sun above the horizon)")

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """The output loses the angle band when ``sun_zenith_band`` is set."""
        del limits
        if self.sun_zenith_band is None or len(shape) < 3:
            return shape
        return with_bands(shape, max(shape[-3] - 1, 0))

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        require_real_input(self, x)
        if self.sun_zenith_band is None:
            _check_per_band(self, x, "path_reflectance")
            if jnp.ndim(self.sun_zenith) == 1:
                _check_per_band(self, x, "sun_zenith")
            return map_values(
                lambda v: sun_zenith_correction(
                    v, self.sun_zenith, self.path_reflectance, self.degrees
                ),
                x,
            )
        b = self.sun_zenith_band
        check_bands(values_of(x), (b,), type(self).__name__)
        _check_per_band(self, x, "path_reflectance", n_bands=jnp.shape(values_of(x))[-3] - 1)

        def fn(v: Array) -> Array:
            return sun_zenith_correction(
                drop_band(v, b), take_band(v, b), self.path_reflectance, self.degrees
            )

        def names(old: tuple[str, ...] | None) -> tuple[str, ...] | None:
            if old is None:
                return None
            i = b % len(old)
            return old[:i] + old[i + 1 :]

        return map_bands(fn, x, names=names)


class Normalize(Operator):
    """Per-band standardisation ``(x - mean) / std``; ``mean``/``std`` are leaves.

    Build from data with :meth:`fit`.

    **Arguments:**

    - `mean`: per-band means (or a scalar), finite.
    - `std`: per-band standard deviations (or a scalar), finite and > 0.
    """

    mean: Array = leaf(0.0)
    std: Array = leaf(1.0)

    def __check_init__(self) -> None:
        _check_per_band_leaves(self, "mean", "std")
        if (
            jnp.shape(self.mean) != jnp.shape(self.std)
            and jnp.ndim(self.mean)
            and jnp.ndim(self.std)
        ):
            self.fail("std", f"shape {jnp.shape(self.std)} != mean shape {jnp.shape(self.mean)}")
        std = concrete(self.std)  # traced (built under a transform): not checked
        if std is not None and not bool(np.all(std > 0)):
            self.fail("std", "must be > 0")

    @classmethod
    def fit(cls, x: Any) -> Normalize:
        """Per-band NaN-ignoring mean and std of ``x`` (``(..., band, H, W)``); host-side.

        **Raises:** :class:`~georax.errors.ShapeError` without a band axis,
        :class:`~georax.errors.DataError` when a band has no finite pixel.
        """
        v = real_float(values_of(x), "Normalize.fit")
        if v.ndim < 3:
            raise ShapeError(f"Normalize.fit: expected (..., band, H, W), got shape {v.shape}")
        axes = tuple(a for a in range(v.ndim) if a != v.ndim - 3)
        finite = jnp.where(jnp.isfinite(v), v, jnp.nan)
        mean = jnp.nanmean(finite, axis=axes)
        empty = np.flatnonzero(~np.isfinite(np.asarray(mean)))
        if empty.size:
            raise DataError(
                f"Normalize.fit: band(s) {empty.tolist()} have no finite pixel; drop or fill "
                "them first"
            )
        std = jnp.nanstd(finite, axis=axes)
        return cls(mean=mean, std=jnp.where(std > 0, std, 1.0))

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        require_real_input(self, x)
        _check_per_band(self, x, "mean", "std")
        return map_values(lambda v: normalize(v, self.mean, self.std), x)
