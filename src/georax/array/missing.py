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

import equinox as eqx
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
      pixel (elementwise maths, band combinations such as NDVI, per-band scales and offsets).
      Array arguments (positional or keyword) are differentiated; everything else (flags,
      Python numbers, strings) is passed through as a constant.

    **Returns:** a function with identical values whose JVP (and hence gradient) is zero at every
    NaN output entry and is computed elsewhere with input NaNs replaced by zeros, so gradients of
    a NaN-ignoring loss (``jnp.nanmean``...) with respect to parameters stay finite.

    Do not use it on functions that mix pixels (filters, resampling, percentiles): there a NaN
    input can legitimately influence a finite output and zeroing it would change the derivative.
    """

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        dynamic, static = eqx.partition((args, kwargs), eqx.is_array)

        def call(dyn: Any) -> Any:
            a, kw = eqx.combine(dyn, static)
            return fn(*a, **kw)

        @jax.custom_jvp
        def inner(dyn: Any) -> Any:
            return call(dyn)

        @inner.defjvp
        def inner_jvp(primals: tuple[Any], tangents: tuple[Any]) -> tuple[Any, Any]:
            (dyn,), (t_dyn,) = primals, tangents
            out = call(dyn)
            _, t_out = jax.jvp(call, (jax.tree_util.tree_map(_zero_nans, dyn),), (t_dyn,))
            t_out = jax.tree_util.tree_map(_zero_where_nan, out, t_out)
            return out, t_out

        return inner(dynamic)

    return wrapped  # type: ignore[return-value]


def _zero_where_nan(out: Any, tangent: Any) -> Any:
    if jnp.issubdtype(jnp.result_type(out), jnp.inexact):
        return jnp.where(jnp.isnan(out), jnp.zeros((), tangent.dtype), tangent)
    return tangent
