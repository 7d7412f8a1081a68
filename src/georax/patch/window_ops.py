"""Window axis: the per-pixel weight each chip contributes to a weighted overlap-add.

Thin config holders around :mod:`georax.patch.windows` (the pure functions). :class:`Window` is
abstract: a concrete window says which 1-D profile it is (:meth:`Window.profile`); the 2-D weight
is always the separable product of the row and column profiles, and is formed inside the compiled
program from the two 1-D vectors, never as a ``rows x cols`` host array (a chip of 8192 x 8192
would otherwise build 512 MiB of float64 weights on the host while a pipeline is only priced).
Calling a window on a chip stack multiplies every chip by the window.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from georax.core.carrier import map_values
from georax.core.operator import Operator, static
from georax.patch.pricing import scene_of
from georax.patch.windows import Weights1D, separable, window_1d

if TYPE_CHECKING:
    from georax.core.sandbox import Limits

__all__ = ["Boxcar", "Gaussian", "Hann", "Triangular", "Tukey", "Window"]


class Window(Operator):
    """Abstract window: a strictly positive, peak-1 weight over a chip, separable by axis.

    Subclasses implement :meth:`profile`; they are final.
    """

    @abc.abstractmethod
    def profile(self, n: int) -> Float[np.ndarray, " n"]:
        """The 1-D float64 weights of ``n`` pixels (see :func:`georax.patch.windows.window_1d`)."""

    def weights_1d(self, chip: tuple[int, int]) -> Weights1D:
        """The separable weights ``(rows, cols)`` of a ``chip = (h, w)`` chip, float64."""
        return self.profile(int(chip[0])), self.profile(int(chip[1]))

    def weights(self, chip: tuple[int, int]) -> Float[jax.Array, "h w"]:
        """The 2-D float32 weights ``rows[:, None] * cols[None, :]``, formed as a JAX array."""
        rows, cols = self.weights_1d(chip)
        return separable(rows, cols, jnp.float32)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        def apply(v: jax.Array) -> jax.Array:
            scene_of(jnp.shape(v), type(self).__name__)
            return v * separable(*self.weights_1d(v.shape[-2:]), v.dtype)

        return map_values(apply, x)

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """A window needs ``(..., H, W)``; its weights are two 1-D vectors, linear in the input."""
        scene_of(shape, type(self).__name__)
        return shape


class Boxcar(Window):
    """Flat window: every chip pixel weighs 1 (plain averaging of overlaps)."""

    def profile(self, n: int) -> Float[np.ndarray, " n"]:
        return window_1d("boxcar", n)


class Hann(Window):
    """Hann (raised cosine) window, sampled at pixel centres so its edge weights are > 0."""

    def profile(self, n: int) -> Float[np.ndarray, " n"]:
        return window_1d("hann", n)


class Triangular(Window):
    """Triangular (Bartlett) window, sampled at pixel centres."""

    def profile(self, n: int) -> Float[np.ndarray, " n"]:
        return window_1d("triangular", n)


class Tukey(Window):
    """Tukey (tapered cosine) window.

    **Arguments:**

    - `alpha`: fraction of the chip in the cosine tapers, in ``[0, 1]`` (0 boxcar, 1 Hann).
    """

    alpha: float = static(default=0.5)

    def __check_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            self.fail("alpha", "must be in [0, 1]")

    def profile(self, n: int) -> Float[np.ndarray, " n"]:
        return window_1d("tukey", n, float(self.alpha))


class Gaussian(Window):
    """Gaussian window centred on the chip.

    **Arguments:**

    - `sigma`: standard deviation as a fraction of the chip size (MONAI's ``sigma_scale``).
    """

    sigma: float = static(default=0.125)

    def __check_init__(self) -> None:
        if not self.sigma > 0:
            self.fail("sigma", "must be > 0")

    def profile(self, n: int) -> Float[np.ndarray, " n"]:
        return window_1d("gaussian", n, float(self.sigma))
