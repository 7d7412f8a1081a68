"""Missing data (NaN) under differentiation.

Geospatial pipelines mark missing pixels (clouds, nodata) with NaN, and NaN must keep flowing
forward: a masked pixel stays masked through radiometry and indices. Under ``jax.grad`` that
convention poisons everything. A reduction such as ``jnp.nanmean`` gives masked pixels a zero
cotangent, but every pixelwise step before it multiplies that zero by a NaN partial derivative
(``d(v * scale)/d scale = v = NaN``), and ``0 * NaN = NaN`` reaches every parameter.

:func:`nan_safe_grad` fixes this at the function boundary: where the output is NaN the derivative
is defined as zero, and the derivative elsewhere is taken at the input with NaNs replaced by zero
(those entries cannot affect a non-NaN output of a pixelwise function). The forward pass is
unchanged and costs nothing extra; only differentiated code pays for the masking.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

F = TypeVar("F", bound=Callable[..., Any])


def _zero_nans(a: Any) -> Any:
    if isinstance(a, jax.Array) and jnp.issubdtype(a.dtype, jnp.inexact):
        return jnp.where(jnp.isnan(a), jnp.zeros((), a.dtype), a)
    return a


def nan_safe_grad(fn: F) -> F:
    """Make NaN (missing) outputs of a pixelwise function carry zero derivative.

    **Arguments:**

    - `fn`: a function of arrays whose output entries depend only on input entries of the same
      pixel (elementwise maths, band combinations such as NDVI, per-band scales). Its first
      output must be an array; keyword arguments are passed through as constants.

    **Returns:** a function with identical values whose JVP (and hence gradient) is zero at every
    NaN output entry and is computed elsewhere with input NaNs replaced by zeros, so gradients of
    a NaN-ignoring loss (``jnp.nanmean``...) with respect to parameters stay finite.

    Do not use it on functions that mix pixels (filters, resampling): there a NaN input can
    legitimately influence a finite output and zeroing it would change the derivative.
    """

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        call = functools.partial(fn, **kwargs)

        @jax.custom_jvp
        def inner(*xs: Any) -> Any:
            return call(*xs)

        @inner.defjvp
        def inner_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[Any, Any]:
            out = call(*primals)
            safe = tuple(jax.tree_util.tree_map(_zero_nans, p) for p in primals)
            _, t_out = jax.jvp(call, safe, tangents)
            t_out = jax.tree_util.tree_map(
                lambda o, t: (
                    jnp.where(jnp.isnan(o), jnp.zeros((), t.dtype), t)
                    if jnp.issubdtype(o.dtype, jnp.inexact)
                    else t
                ),
                out,
                t_out,
            )
            return out, t_out

        return inner(*args)

    return wrapped  # type: ignore[return-value]
