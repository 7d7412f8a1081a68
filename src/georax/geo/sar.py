"""SAR operators: decibel conversion and Lee speckle filtering.

Pure functions (``jnp`` in, ``jnp`` out, documented math, no config) come first; the Operator
classes at the bottom hold config and call them. Everything works on bands-first arrays
``(..., H, W)``: the filters act on the last two axes, every leading axis is a batch/band axis.

Boundary handling of the moving window follows :mod:`scipy.ndimage` naming, so the scipy
reference (``scipy.ndimage.uniform_filter``) can be matched exactly, borders included.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from georax.array.missing import nan_safe_grad
from georax.core.carrier import map_values
from georax.core.operator import Operator, static

__all__ = [
    "BOUNDARY_MODES",
    "DBToLinear",
    "LeeSpeckle",
    "LinearToDB",
    "box_mean",
    "db_to_linear",
    "lee_filter",
    "linear_to_db",
    "scene_speckle_cv2",
]

# scipy.ndimage mode name -> jnp.pad mode. scipy "reflect" repeats the edge sample (d c b a | a b
# c d), which numpy calls "symmetric"; scipy "mirror" does not (d c b | a b c d), numpy "reflect".
BOUNDARY_MODES: dict[str, str] = {
    "reflect": "symmetric",
    "mirror": "reflect",
    "nearest": "edge",
    "wrap": "wrap",
    "constant": "constant",
}


# --------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------
@nan_safe_grad
def linear_to_db(
    x: Float[Array, "*shape"], *, amplitude: bool = False, floor_db: float | Array | None = None
) -> Float[Array, "*shape"]:
    """Convert linear backscatter to decibels: ``10 log10(x)`` (``20 log10(x)`` for amplitude).

    **Arguments:**

    - `x`: linear power (sigma0/gamma0 intensity) or, with ``amplitude=True``, amplitude.
    - `amplitude`: the input is an amplitude (``|s|``), so the factor is 20 instead of 10.
    - `floor_db`: clamp the result below at this many dB. Zero backscatter (shadow, no-data
      zeros) gives ``-inf`` dB without a floor, which poisons any later mean; a floor keeps it
      finite. Negative inputs are not backscatter and give NaN either way.

    **Returns:** the values in dB, same shape, floating dtype.
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    factor = 20.0 if amplitude else 10.0
    db = factor * jnp.log10(x)
    if floor_db is not None:
        # where() keeps NaN for negative inputs (maximum would keep it too, but also turn the
        # gradient of clamped pixels into NaN through log10(0)).
        db = jnp.where(db < floor_db, jnp.asarray(floor_db, db.dtype), db)
    return db


@nan_safe_grad
def db_to_linear(x: Float[Array, "*shape"], *, amplitude: bool = False) -> Float[Array, "*shape"]:
    """Convert decibels back to linear: ``10**(x/10)`` (``10**(x/20)`` for amplitude).

    The exact inverse of :func:`linear_to_db` for positive inputs.

    **Arguments:**

    - `x`: values in dB.
    - `amplitude`: return an amplitude instead of a power.

    **Returns:** linear values, same shape, floating dtype.
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    factor = 20.0 if amplitude else 10.0
    return jnp.power(jnp.asarray(10.0, x.dtype), x / factor)


def _box_sum_1d(x: Array, window: int, axis: int) -> Array:
    dims = [1] * x.ndim
    dims[axis] = window
    return jax.lax.reduce_window(
        x, jnp.asarray(0, x.dtype), jax.lax.add, tuple(dims), (1,) * x.ndim, "VALID"
    )


def box_mean(
    x: Float[Array, "*batch H W"], window: int, *, mode: str = "reflect"
) -> Float[Array, "*batch H W"]:
    """Mean over a ``window x window`` neighbourhood of every pixel (a separable box filter).

    Equal to ``scipy.ndimage.uniform_filter(x, size=(1, ..., window, window), mode=mode)`` for odd
    windows: the image is padded by ``window // 2`` on each side following ``mode`` and then
    summed with two 1-D running windows (``lax.reduce_window``: rows, then columns), i.e.
    ``2 * window`` additions per pixel and no cumulative sums, so float32 keeps its precision on
    large scenes.

    **Arguments:**

    - `x`: floating array, filtered over its last two axes.
    - `window`: odd window size in pixels.
    - `mode`: boundary handling, scipy.ndimage names: ``"reflect"`` (edge sample repeated,
      scipy's default), ``"mirror"``, ``"nearest"``, ``"wrap"``, ``"constant"`` (zeros).

    **Returns:** the local means, same shape and dtype as ``x``.
    """
    r = window // 2
    pad = [(0, 0)] * (x.ndim - 2) + [(r, r), (r, r)]
    xp = jnp.pad(x, pad, mode=BOUNDARY_MODES[mode])
    s = _box_sum_1d(_box_sum_1d(xp, window, x.ndim - 2), window, x.ndim - 1)
    return s / jnp.asarray(window * window, x.dtype)


def scene_speckle_cv2(x: Float[Array, "*batch H W"]) -> Float[Array, "*batch 1 1"]:
    """Speckle noise estimate from the scene: its squared coefficient of variation per band.

    ``Cu^2 = var(x) / mean(x)^2`` over the finite pixels of each ``(H, W)`` image. For a fully
    developed speckle over a homogeneous area this is ``1/L`` (``L`` = number of looks); on a
    real, heterogeneous scene it over-estimates the noise (texture counts as noise), so the filter
    smooths more. Pass the product's equivalent number of looks instead when it is known.

    **Arguments:**

    - `x`: linear intensities, bands-first.

    **Returns:** ``Cu^2`` with the last two axes kept (size 1) for broadcasting.
    """
    mean = jnp.nanmean(x, axis=(-2, -1), keepdims=True)
    var = jnp.nanmean(jnp.square(x - mean), axis=(-2, -1), keepdims=True)
    return var / jnp.square(mean)


def lee_filter(
    x: Float[Array, "*batch H W"],
    window: int,
    *,
    cu2: Float[Array, "*#batch #H #W"] | float | None = None,
    mode: str = "reflect",
) -> Float[Array, "*batch H W"]:
    """The classic Lee (1980/1981) minimum-mean-square-error speckle filter.

    Speckle is modelled as multiplicative noise, ``y = s * v`` with ``E[v] = 1`` and
    ``var(v) = Cu^2`` (``Cu^2 = 1/L`` for an ``L``-look intensity image). Over a
    ``window x window`` neighbourhood with local mean ``m`` and variance ``var_y`` (both from
    :func:`box_mean`), the MMSE estimate of ``s`` is::

        var_s = (var_y - Cu^2 m^2) / (1 + Cu^2)       # signal variance
        w     = clip(var_s / var_y, 0, 1)             # = (1 - Cu^2/Ci^2) / (1 + Cu^2)
        s_hat = m + w (y - m)

    where ``Ci^2 = var_y / m^2`` is the local coefficient of variation. Homogeneous areas
    (``Ci <= Cu``) get ``w = 0``, the local mean; edges and point targets (``Ci >> Cu``) keep
    their value. A window of constant value (``var_y = 0``) returns the mean.

    NaN pixels (no-data) propagate to every output pixel whose window contains them; fill or mask
    them after filtering.

    **Arguments:**

    - `x`: linear intensities (not dB), filtered over the last two axes.
    - `window`: odd window size in pixels.
    - `cu2`: speckle noise variance ``Cu^2``, a scalar or an array broadcasting against
      ``x`` (e.g. per band ``(..., 1, 1)``). ``None`` estimates it from the scene with
      :func:`scene_speckle_cv2`.
    - `mode`: boundary handling of the window (see :func:`box_mean`).

    **Returns:** the filtered intensities, same shape; integer inputs become float32.
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    if cu2 is None:
        cu2 = scene_speckle_cv2(x)
    cu2 = jnp.asarray(cu2, x.dtype)
    mean = box_mean(x, window, mode=mode)
    mean_sq = box_mean(jnp.square(x), window, mode=mode)
    var_y = jnp.maximum(mean_sq - jnp.square(mean), 0.0)
    var_s = (var_y - cu2 * jnp.square(mean)) / (1.0 + cu2)
    # Double-where: keep the division finite where var_y == 0 so gradients stay finite too.
    positive = var_y > 0
    safe_var_y = jnp.where(positive, var_y, 1.0)
    w = jnp.where(positive, jnp.clip(var_s / safe_var_y, 0.0, 1.0), 0.0)
    return mean + w * (x - mean)


# --------------------------------------------------------------------------------------
# Operators
# --------------------------------------------------------------------------------------
def _optional_leaf(value: Any) -> Any:
    """Converter for an optional array parameter: None stays None, numbers become float32."""
    if value is None or isinstance(value, jax.Array | np.ndarray):
        return value
    return jnp.asarray(np.float32(value))


class LinearToDB(Operator):
    """Linear backscatter to decibels, ``10 log10(x)`` (see :func:`linear_to_db`).

    **Arguments:**

    - `amplitude`: input is amplitude, so ``20 log10(x)``.
    - `floor_db`: optional lower clamp in dB (an array leaf: tunable without recompiling).
      ``None`` (default) keeps ``-inf`` for zeros.
    """

    amplitude: bool = static(default=False)
    floor_db: Array | None = eqx.field(default=None, converter=_optional_leaf)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return map_values(
            lambda v: linear_to_db(v, amplitude=self.amplitude, floor_db=self.floor_db), x
        )


class DBToLinear(Operator):
    """Decibels to linear backscatter, ``10**(x/10)`` (see :func:`db_to_linear`).

    **Arguments:**

    - `amplitude`: return amplitude, so ``10**(x/20)``.
    """

    amplitude: bool = static(default=False)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return map_values(lambda v: db_to_linear(v, amplitude=self.amplitude), x)


class LeeSpeckle(Operator):
    """Lee MMSE speckle filter over a ``window x window`` neighbourhood (see :func:`lee_filter`).

    Apply it to linear intensities, before :class:`LinearToDB`.

    The noise variance ``Cu^2`` comes from the number of looks when ``looks`` is given
    (``Cu^2 = 1/looks``; Sentinel-1 IW GRDH has an equivalent number of looks of about 4.4), and
    otherwise from each band's coefficient of variation over the scene
    (:func:`scene_speckle_cv2`), which over-estimates it on textured scenes.

    **Arguments:**

    - `window`: odd window size in pixels (>= 3). Static: changes the program.
    - `looks`: equivalent number of looks (> 0), an array leaf, or ``None`` to estimate the
      noise from the scene.
    - `mode`: boundary handling at the scene edges, scipy.ndimage names (``"reflect"``,
      ``"mirror"``, ``"nearest"``, ``"wrap"``, ``"constant"``).
    """

    window: int = static(default=7)
    looks: Array | None = eqx.field(default=None, converter=_optional_leaf)
    mode: str = static(default="reflect")

    def __check_init__(self) -> None:
        if (
            not isinstance(self.window, int)
            or isinstance(self.window, bool)
            or self.window < 3
            or self.window % 2 == 0
        ):
            self.fail("window", "must be an odd integer >= 3")
        if self.mode not in BOUNDARY_MODES:
            self.fail("mode", f"must be one of {sorted(BOUNDARY_MODES)}")
        if (
            self.looks is not None
            and not isinstance(self.looks, jax.core.Tracer)
            and not bool(np.all(np.asarray(self.looks) > 0))
        ):
            self.fail("looks", "must be > 0 (or None to estimate the noise from the scene)")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        cu2 = None if self.looks is None else 1.0 / self.looks
        return map_values(lambda v: lee_filter(v, self.window, cu2=cu2, mode=self.mode), x)
