"""NaN-marked missing pixels must not poison gradients (georax.array.missing)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from georax.array.missing import nan_safe_grad


def _scaled_ndvi(v: jax.Array, scale: jax.Array) -> jax.Array:
    r = v * scale
    return (r[1] - r[0]) / (r[1] + r[0])


def test_plain_function_gives_nan_gradient_and_wrapped_one_does_not() -> None:
    v = jnp.array([[0.1, jnp.nan, 0.3], [0.5, 0.6, 0.2]])
    scale = jnp.array(2.0)
    loss = lambda f, s: jnp.nanmean(f(v, s))  # noqa: E731
    assert jnp.isnan(jax.grad(lambda s: loss(_scaled_ndvi, s))(scale))  # the problem
    g = jax.grad(lambda s: loss(nan_safe_grad(_scaled_ndvi), s))(scale)
    assert jnp.isfinite(g)
    # NDVI is scale-invariant, so the true derivative w.r.t. a common scale is exactly 0
    np.testing.assert_allclose(g, 0.0, atol=1e-6)


def test_values_unchanged_and_gradient_matches_on_clean_pixels() -> None:
    f = lambda v, g: v * g + 1.0  # noqa: E731
    safe = nan_safe_grad(f)
    v = jnp.array([1.0, jnp.nan, 3.0])
    gain = jnp.array(2.0)
    np.testing.assert_array_equal(safe(v, gain), f(v, gain))
    grad = jax.grad(lambda g: jnp.nansum(safe(v, g)))(gain)
    np.testing.assert_allclose(grad, 1.0 + 3.0)  # d/dg sum(v*g) over the valid pixels
    clean = jnp.array([1.0, 2.0, 3.0])
    check_grads(lambda g: safe(clean, g), (gain,), order=1, modes=["fwd", "rev"])


def test_works_under_jit_and_vmap_with_keyword_constants() -> None:
    def f(v: jax.Array, s: jax.Array, *, offset: float) -> jax.Array:
        return v * s + offset

    safe = nan_safe_grad(f)
    v = jnp.array([[1.0, jnp.nan], [2.0, 4.0]])
    grads = jax.jit(
        jax.vmap(jax.grad(lambda row, s: jnp.nansum(safe(row, s, offset=3.0)), 1), (0, None))
    )(v, jnp.array(1.5))
    np.testing.assert_allclose(grads, [1.0, 6.0])


def test_keyword_array_arguments_are_differentiated_too() -> None:
    def f(v: jax.Array, *, floor: jax.Array, amplitude: bool) -> jax.Array:
        return jnp.maximum(v, floor) * (2.0 if amplitude else 1.0)

    safe = nan_safe_grad(f)
    v = jnp.array([0.5, jnp.nan, 3.0])
    g = jax.grad(lambda fl: jnp.nansum(safe(v, floor=fl, amplitude=True)))(jnp.array(1.0))
    np.testing.assert_allclose(g, 2.0)  # only the 0.5 pixel sits on the floor
