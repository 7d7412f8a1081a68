"""SAR operators: decibel conversion and Lee speckle filtering.

Pure functions (``jnp`` in, ``jnp`` out, documented math, no config) come first; the Operator
classes at the bottom hold config and call them. Everything works on bands-first arrays
``(..., H, W)``: the filters act on the last two axes, every leading axis is a batch/band axis.

Boundary handling of the moving window follows :mod:`scipy.ndimage` naming, so the scipy
reference (``scipy.ndimage.uniform_filter``) can be matched exactly, borders included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from georax.array.missing import nan_safe_grad
from georax.array.validate import concrete, real_float
from georax.core.carrier import map_values
from georax.core.errors import ConfigError, ShapeError
from georax.core.operator import Operator, optional_leaf, static
from georax.geo._bands import check_finite_leaf, require_real_input
from georax.geo._precheck import refuse_extent, spatial_shape

if TYPE_CHECKING:
    from georax.core.sandbox import Limits

__all__ = [
    "PADDING_MODES",
    "Padding",
    "DBToLinear",
    "LeeSpeckle",
    "LinearToDB",
    "box_mean",
    "db_to_linear",
    "lee_filter",
    "linear_to_db",
    "scene_speckle_cv2",
]

#: Boundary handling of the moving window, by its scipy.ndimage name.
Padding = Literal["reflect", "mirror", "nearest", "wrap", "constant"]

#: :data:`Padding` names -> ``jnp.pad`` modes. scipy "reflect" repeats the edge sample
#: (d c b a | a b c d), which numpy calls "symmetric"; scipy "mirror" does not (d c b | a b c d),
#: numpy "reflect".
PADDING_MODES: dict[str, str] = {
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
    x = real_float(x, "linear_to_db")
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
    x = real_float(x, "db_to_linear")
    factor = 20.0 if amplitude else 10.0
    return jnp.power(jnp.asarray(10.0, x.dtype), x / factor)


def _box_sum_1d(x: Array, window_size: int, axis: int) -> Array:
    dims = [1] * x.ndim
    dims[axis] = window_size
    # The zero must be a concrete NumPy scalar: JAX recognises a windowed *sum* (which it can
    # differentiate) only from a known zero, and ``jnp.asarray(0)`` is a tracer under ``jit``.
    return jax.lax.reduce_window(
        x, np.zeros((), x.dtype), jax.lax.add, tuple(dims), (1,) * x.ndim, "VALID"
    )


def _pad_index(n: int, r: int, padding: str) -> np.ndarray:
    """Source index of each of the ``n + 2 r`` positions of an axis padded by ``r`` (host).

    Closed forms of the periodic extensions, so the cost does not depend on ``r / n``:
    "reflect" has period ``2n`` (edge repeated), "mirror" ``2n - 2``, "wrap" ``n``.
    """
    i = np.arange(-r, n + r)
    if padding == "reflect":
        m = np.mod(i, 2 * n)
        return np.where(m < n, m, 2 * n - 1 - m)
    if padding == "mirror":
        if n == 1:
            return np.zeros_like(i)
        m = np.mod(i, 2 * n - 2)
        return np.where(m < n, m, 2 * n - 2 - m)
    if padding == "wrap":
        return np.mod(i, n)
    return np.clip(i, 0, n - 1)  # nearest


def _pad_axis(x: Array, r: int, axis: int, padding: str) -> Array:
    """Pad one axis by ``r`` on both sides, with a trace cost independent of ``r``.

    ``jnp.pad`` builds reflect/mirror/wrap padding one copy of the axis at a time, in a Python
    loop at trace time, so padding a short axis by a long way (a 1000000001-pixel window on a
    512-pixel scene) never finishes tracing. When the pad fits in one copy (``r < n``, the usual
    case) ``jnp.pad`` is used (static slices, which fuse); otherwise one gather with a host-side
    index map of ``n + 2 r`` entries does it in one step.
    """
    n = x.shape[axis]
    if r == 0:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (r, r)
    if padding in ("constant", "nearest") or r < n:
        return jnp.pad(x, widths, mode=PADDING_MODES[padding])
    return jnp.take(x, jnp.asarray(_pad_index(n, r, padding), jnp.int32), axis=axis)


def _check_window(window_size: int, shape: tuple[int, ...], who: str) -> tuple[int, int]:
    """``(H, W)``, refusing arrays without two spatial axes and windows larger than the image."""
    h, w = spatial_shape(shape, who)
    if window_size > max(h, w):
        raise ShapeError(
            f"{who}: window_size={window_size} is larger than the {h}x{w} image (every window "
            "would average more reflected copies than image); use a window no larger than the "
            "image"
        )
    return h, w


def box_mean(
    x: Float[Array, "*batch H W"], window_size: int, *, padding: str = "reflect"
) -> Float[Array, "*batch H W"]:
    """Mean over a ``window_size x window_size`` neighbourhood of every pixel (a box filter).

    Equal to ``scipy.ndimage.uniform_filter(x, size=(1, ..., window_size, window_size),
    mode=padding)`` for odd windows: the image is padded by ``window_size // 2`` on each side
    following ``padding`` and then summed with two 1-D running windows (``lax.reduce_window``:
    rows, then columns), i.e. ``2 * window_size`` additions per pixel and no cumulative sums, so
    float32 keeps its precision on large scenes. Tracing costs the same whatever the window.

    **Arguments:**

    - `x`: floating array ``(..., H, W)``, filtered over its last two axes.
    - `window_size`: odd window size in pixels, at most ``max(H, W)``.
    - `padding`: boundary handling, scipy.ndimage names: ``"reflect"`` (edge sample repeated,
      scipy's default), ``"mirror"``, ``"nearest"``, ``"wrap"``, ``"constant"`` (zeros).

    **Returns:** the local means, same shape and dtype as ``x``.

    **Raises:** :class:`~georax.errors.ShapeError` for fewer than two axes or a window larger
    than the image; :class:`~georax.errors.ConfigError` for an unknown ``padding``.
    """
    if padding not in PADDING_MODES:
        raise ConfigError("box_mean", "padding", padding, f"must be one of {sorted(PADDING_MODES)}")
    _check_window(window_size, jnp.shape(x), "box_mean")
    r = window_size // 2
    xp = _pad_axis(_pad_axis(x, r, x.ndim - 2, padding), r, x.ndim - 1, padding)
    s = _box_sum_1d(_box_sum_1d(xp, window_size, x.ndim - 2), window_size, x.ndim - 1)
    return s / jnp.asarray(window_size * window_size, x.dtype)


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
    window_size: int,
    *,
    cu2: Float[Array, "*#batch #H #W"] | float | None = None,
    padding: str = "reflect",
) -> Float[Array, "*batch H W"]:
    """The classic Lee (1980/1981) minimum-mean-square-error speckle filter.

    Speckle is modelled as multiplicative noise, ``y = s * v`` with ``E[v] = 1`` and
    ``var(v) = Cu^2`` (``Cu^2 = 1/L`` for an ``L``-look intensity image). Over a
    ``window_size x window_size`` neighbourhood with local mean ``m`` and variance ``var_y``
    (both from :func:`box_mean`), the MMSE estimate of ``s`` is::

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
    - `window_size`: odd window size in pixels, at most ``max(H, W)``.
    - `cu2`: speckle noise variance ``Cu^2``, a scalar or an array broadcasting against
      ``x`` (e.g. per band ``(..., 1, 1)``). ``None`` estimates it from the scene with
      :func:`scene_speckle_cv2`.
    - `padding`: boundary handling of the window (see :func:`box_mean`).

    **Returns:** the filtered intensities, same shape; integer inputs become float32.

    **Raises:** as :func:`box_mean`; :class:`~georax.errors.DataError` for complex input (filter
    the intensity ``|s|**2`` of an SLC, not the SLC).
    """
    x = real_float(x, "lee_filter")
    _check_window(window_size, x.shape, "lee_filter")
    if cu2 is None:
        cu2 = scene_speckle_cv2(x)
    cu2 = jnp.asarray(cu2, x.dtype)
    mean = box_mean(x, window_size, padding=padding)
    mean_sq = box_mean(jnp.square(x), window_size, padding=padding)
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
class LinearToDB(Operator):
    """Linear backscatter to decibels, ``10 log10(x)`` (see :func:`linear_to_db`).

    **Arguments:**

    - `amplitude`: input is amplitude, so ``20 log10(x)``.
    - `floor_db`: optional lower clamp in dB (a finite array leaf: tunable without recompiling).
      ``None`` (default) keeps ``-inf`` for zeros.
    """

    amplitude: bool = static(default=False)
    floor_db: Array | None = optional_leaf()

    def __check_init__(self) -> None:
        check_finite_leaf(self, "floor_db")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        require_real_input(self, x)
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
        require_real_input(self, x)
        return map_values(lambda v: db_to_linear(v, amplitude=self.amplitude), x)


class LeeSpeckle(Operator):
    """Lee MMSE speckle filter over a ``window_size x window_size`` neighbourhood (see
    :func:`lee_filter`).

    Apply it to linear intensities, before :class:`LinearToDB`. On a
    :class:`~georax.patch.Chips` stack each chip is filtered on its own (its borders padded like
    a scene's).

    The noise variance ``Cu^2`` comes from the number of looks when ``looks`` is given
    (``Cu^2 = 1/looks``; Sentinel-1 IW GRDH has an equivalent number of looks of about 4.4), and
    otherwise from each band's coefficient of variation over the scene
    (:func:`scene_speckle_cv2`), which over-estimates it on textured scenes.

    **Arguments:**

    - `window_size`: odd window size in pixels (>= 3), at most the larger image side. Static:
      changes the program.
    - `looks`: equivalent number of looks (finite, > 0), an array leaf, or ``None`` to estimate
      the noise from the scene.
    - `padding`: boundary handling at the scene edges, scipy.ndimage names (``"reflect"``,
      ``"mirror"``, ``"nearest"``, ``"wrap"``, ``"constant"``).
    """

    window_size: int = static(default=7)
    looks: Array | None = optional_leaf()
    padding: Padding = static(default="reflect")

    def __check_init__(self) -> None:
        if self.window_size < 3 or self.window_size % 2 == 0:
            self.fail("window_size", "must be an odd integer >= 3")
        check_finite_leaf(self, "looks")
        looks = concrete(self.looks)
        if looks is not None and not bool(np.all(looks > 0)):
            self.fail("looks", "must be > 0 (or None to estimate the noise from the scene)")

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Refuse a window over ``limits.max_extent`` or larger than the image, untraced."""
        spatial_shape(shape, "LeeSpeckle")
        refuse_extent("LeeSpeckle", "window_size", self.window_size, limits)
        _check_window(self.window_size, shape, "LeeSpeckle")
        return shape

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        require_real_input(self, x)
        cu2 = None if self.looks is None else 1.0 / self.looks

        def fn(v: Array) -> Array:
            _check_window(self.window_size, jnp.shape(v), "LeeSpeckle")
            return lee_filter(v, self.window_size, cu2=cu2, padding=self.padding)

        return map_values(fn, x)
