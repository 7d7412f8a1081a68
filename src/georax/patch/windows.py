"""Pure window functions for weighted overlap-add (NumPy profiles, one JAX product; no config).

Every window is sampled at *pixel centres*, ``t_i = (i + 0.5) / n`` for ``i = 0 .. n-1``, not at
the integer end points ``0`` and ``n - 1`` that :mod:`scipy.signal.windows` uses. Sampling at the
end points puts an exact zero on the first and last pixel of every chip (Hann, triangular, Tukey),
and a stitcher that normalises by the accumulated weight then divides ``0 / 0`` on the outer pixel
frame of the scene, where only one chip covers a pixel: the classic "zeros on the border" bug.
Sampled at pixel centres these windows are strictly positive; they are additionally floored at
``WINDOW_FLOOR`` (relative to their peak) so that a narrow Gaussian cannot underflow to zero either.
Hence every covered pixel has a strictly positive accumulated weight and normalised overlap-add of
an identity pipeline reconstructs the input to float32 round-off everywhere.

The windows are computed on the host (they depend only on static config: the chip size and the
window's parameters) and enter compiled programs as small 1-D constants. 2-D windows are separable
(outer products): compiled code forms them with :func:`separable` from the two 1-D vectors, and the
stitcher computes the normaliser of a regular grid in 1-D. :func:`window_2d` (a host array of
``h * w`` weights) is for inspection and plots only.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from georax.core.errors import ConfigError

WINDOW_FLOOR = 1e-6
"""Smallest window weight, relative to the peak: keeps every weight strictly positive."""

WINDOW_NAMES = ("boxcar", "hann", "triangular", "tukey", "gaussian")

Weights1D = tuple[np.ndarray, np.ndarray]
"""A separable window: float64 ``(rows (h,), cols (w,))`` weights."""


def _centres(n: int) -> np.ndarray:
    return (np.arange(n, dtype=np.float64) + 0.5) / n


def boxcar(n: int) -> Float[np.ndarray, " n"]:
    """All-ones window: plain (unweighted) overlap-add."""
    return np.ones(n, dtype=np.float64)


def hann(n: int) -> Float[np.ndarray, " n"]:
    """Hann window at pixel centres, ``sin(pi t)^2``; smallest value ``sin(pi / 2n)^2 > 0``."""
    return np.sin(np.pi * _centres(n)) ** 2


def triangular(n: int) -> Float[np.ndarray, " n"]:
    """Triangular (Bartlett) window at pixel centres, ``1 - |2t - 1|``; smallest value ``1/n``."""
    return 1.0 - np.abs(2.0 * _centres(n) - 1.0)


def tukey(n: int, alpha: float = 0.5) -> Float[np.ndarray, " n"]:
    """Tukey (tapered cosine) window: flat top, cosine tapers over ``alpha/2`` of each side.

    ``alpha = 0`` is the boxcar, ``alpha = 1`` the Hann window.
    """
    t = _centres(n)
    if alpha <= 0:
        return np.ones(n, dtype=np.float64)
    d = np.minimum(t, 1.0 - t)  # distance to the nearest edge, in chip units
    half = alpha / 2.0
    return np.where(d < half, 0.5 * (1.0 - np.cos(np.pi * d / half)), 1.0)


def gaussian(n: int, sigma: float = 0.125) -> Float[np.ndarray, " n"]:
    """Gaussian window centred on the chip with standard deviation ``sigma * n`` pixels.

    ``sigma = 0.125`` matches MONAI's default ``sigma_scale``.
    """
    t = _centres(n)
    return np.exp(-0.5 * ((t - 0.5) / sigma) ** 2)


def window_1d(name: str, n: int, param: float | None = None) -> Float[np.ndarray, " n"]:
    """A 1-D window of ``n`` strictly positive float64 weights, peak-normalised to 1.

    **Arguments:**

    - `name`: one of ``WINDOW_NAMES``.
    - `n`: the number of samples (chip size along one axis).
    - `param`: Tukey's ``alpha`` or Gaussian's ``sigma`` (fraction of ``n``); ignored otherwise.

    **Returns:** a NumPy array of shape ``(n,)`` with values in ``[WINDOW_FLOOR, 1]``.
    """
    if name == "boxcar":
        w = boxcar(n)
    elif name == "hann":
        w = hann(n)
    elif name == "triangular":
        w = triangular(n)
    elif name == "tukey":
        w = tukey(n, 0.5 if param is None else float(param))
    elif name == "gaussian":
        w = gaussian(n, 0.125 if param is None else float(param))
    else:
        raise ConfigError("window", "name", name, f"unknown window; expected one of {WINDOW_NAMES}")
    w = w / w.max()
    return np.maximum(w, WINDOW_FLOOR)


def window_2d(
    name: str, shape: tuple[int, int], param: float | None = None
) -> Float[np.ndarray, "h w"]:
    """The separable 2-D window ``outer(window_1d(h), window_1d(w))`` as float32."""
    h, w = shape
    return np.outer(window_1d(name, h, param), window_1d(name, w, param)).astype(np.float32)


def separable(
    rows: Float[np.ndarray, " h"], cols: Float[np.ndarray, " w"], dtype: Any
) -> Float[jax.Array, "h w"]:
    """``rows[:, None] * cols[None, :]`` as a JAX expression of two 1-D constants.

    Inside a compiled program this stays a broadcast product (XLA does not fold broadcasts into
    constants), so only ``h + w`` numbers are embedded in the program, not ``h * w``.
    """
    r = jnp.asarray(rows, dtype=dtype)
    c = jnp.asarray(cols, dtype=dtype)
    return r[:, None] * c[None, :]
