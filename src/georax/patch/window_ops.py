"""Window axis: the per-pixel weight each chip contributes to a weighted overlap-add.

Thin config holders around :mod:`georax.patch.windows` (the pure functions). Calling a window on
a chip stack multiplies every chip by the window.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from georax.core.carrier import map_values
from georax.core.operator import Operator, static
from georax.patch.windows import window_2d


class Window(Operator):
    """Abstract window. Subclasses set ``kind`` (a name in :data:`WINDOW_NAMES`)."""

    def _param(self) -> float | None:
        return None

    @property
    def kind(self) -> str:
        """The window's name in :func:`georax.patch.windows.window_1d`."""
        raise NotImplementedError

    def weights(self, chip: tuple[int, int]) -> np.ndarray:
        """The float32 ``(rows, cols)`` weights, strictly positive, peak 1."""
        return window_2d(self.kind, (int(chip[0]), int(chip[1])), self._param())

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        def apply(v: jax.Array) -> jax.Array:
            return v * jnp.asarray(self.weights(v.shape[-2:]), dtype=v.dtype)

        return map_values(apply, x)


class Boxcar(Window):
    """Flat window: every chip pixel weighs 1 (plain averaging of overlaps)."""

    @property
    def kind(self) -> str:
        return "boxcar"


class Hann(Window):
    """Hann (raised cosine) window, sampled at pixel centres so its edge weights are > 0."""

    @property
    def kind(self) -> str:
        return "hann"


class Triangular(Window):
    """Triangular (Bartlett) window, sampled at pixel centres."""

    @property
    def kind(self) -> str:
        return "triangular"


class Tukey(Window):
    """Tukey (tapered cosine) window.

    **Arguments:**

    - `alpha`: fraction of the chip in the cosine tapers, in ``[0, 1]`` (0 boxcar, 1 Hann).
    """

    alpha: float = static(default=0.5)

    def __check_init__(self) -> None:
        if not isinstance(self.alpha, int | float) or not 0.0 <= self.alpha <= 1.0:
            self.fail("alpha", "must be a number in [0, 1]")

    def _param(self) -> float | None:
        return float(self.alpha)

    @property
    def kind(self) -> str:
        return "tukey"


class Gaussian(Window):
    """Gaussian window centred on the chip.

    **Arguments:**

    - `sigma`: standard deviation as a fraction of the chip size (MONAI's ``sigma_scale``).
    """

    sigma: float = static(default=0.125)

    def __check_init__(self) -> None:
        if not isinstance(self.sigma, int | float) or not self.sigma > 0:
            self.fail("sigma", "must be a positive number")

    def _param(self) -> float | None:
        return float(self.sigma)

    @property
    def kind(self) -> str:
        return "gaussian"
