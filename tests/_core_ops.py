"""Small registered operators used by the core tests (kept out of conftest on purpose)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

import georax as gx
from georax.core import leaf, map_values, static

TRACES: list[str] = []  # appended to at trace time only: counts (re)compilations


class Gain(gx.Operator):
    """y = gain * x + bias; gain and bias are learnable leaves."""

    gain: jax.Array = leaf(2.0)
    bias: jax.Array = leaf(0.0)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return map_values(lambda v: v * self.gain + self.bias, x)


class Power(gx.Operator):
    """y = x ** exponent; the exponent is static config."""

    exponent: int = static(2)

    def __check_init__(self) -> None:
        if self.exponent < 0:
            self.fail("exponent", "must be >= 0")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        TRACES.append(f"Power({self.exponent})")
        return map_values(lambda v: v**self.exponent, x)


class AddNoise(gx.Operator):
    """Stochastic: adds N(0, scale^2) noise; needs an explicit key."""

    requires_key = True
    scale: float = static(1.0)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        assert key is not None
        return x + self.scale * jax.random.normal(key, jnp.shape(x))


class Add(gx.Operator):
    """Two-input operator: a + b."""

    def __call__(self, a: Any, b: Any, *, key: jax.Array | None = None) -> Any:
        return a + b
