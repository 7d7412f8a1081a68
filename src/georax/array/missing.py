"""Missing data (NaN) under differentiation.

Geospatial pipelines mark missing pixels (clouds, nodata) with NaN, and NaN must keep flowing
forward: a masked pixel stays masked through radiometry and indices. Under ``jax.grad`` that
convention poisons everything. A reduction such as ``jnp.nanmean`` gives masked pixels a zero
cotangent, but every pixelwise step before it multiplies that zero by a NaN partial derivative
(``d(v * scale)/d scale = v = NaN``), and ``0 * NaN = NaN`` reaches every parameter.

:func:`nan_safe_grad` fixes this at the function boundary: where the output is NaN the derivative
is defined as zero. Internally the derivative is evaluated with the inputs of those pixels
replaced by finite stand-ins, so that no ``0 * NaN`` survives reverse mode; other pixels are
untouched, which is exact for a pixelwise function. The forward pass is
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


def nan_safe_grad(fn: F) -> F:
    """Make NaN (missing) outputs of a pixelwise function carry zero derivative.

    **Arguments:**

    - `fn`: a function of arrays whose output entries depend only on input entries of the same
      pixel (elementwise maths, band combinations such as NDVI, per-band scales and offsets).
      Array arguments (positional or keyword) are differentiated; everything else (flags,
      Python numbers, strings) is passed through as a constant.

    **Returns:** a function with identical values whose JVP (and hence gradient) is zero at every
    NaN output entry, so gradients of a NaN-ignoring loss (``jnp.nanmean``...) with respect to
    parameters stay finite. Elsewhere the derivative is the ordinary one.

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
            if not jnp.issubdtype(out.dtype, jnp.inexact):
                return out, jax.jvp(call, (dyn,), (t_dyn,))[1]
            missing = jnp.isnan(out)
            safe = _substitute_missing(dyn, missing)
            _, t_out = jax.jvp(call, (safe,), (t_dyn,))
            return out, jnp.where(missing, jnp.zeros((), t_out.dtype), t_out)

        return inner(dynamic)

    return wrapped  # type: ignore[return-value]


def _substitute_missing(dyn: Any, missing: jax.Array) -> Any:
    """Replace pixel-aligned inputs at missing output pixels by harmless, distinct values.

    The derivative there is discarded, but reverse mode still multiplies the (zero) cotangent by
    the Jacobian evaluated at these inputs, so it must be finite. The stand-ins lie in
    ``[0.3, 1.3)`` (fine for logs and roots) and are golden-ratio fractions that differ per input
    and per band, so sums and differences of them in a denominator are not zero. An input is
    pixel-aligned when the output mask broadcasts to its shape (a band stack ``(..., B, H, W)``
    for a ``(..., 1, H, W)`` index, or an equal shape); others (per-band scales, parameters) are
    left alone.
    """
    leaves, treedef = jax.tree_util.tree_flatten(dyn)
    out = []
    for k, leaf in enumerate(leaves):
        aligned = (
            jnp.issubdtype(leaf.dtype, jnp.inexact)
            and leaf.ndim >= missing.ndim
            and jnp.broadcast_shapes(missing.shape, leaf.shape) == leaf.shape
        )
        if aligned:
            bad = jnp.broadcast_to(missing, leaf.shape) | jnp.isnan(leaf)
            band = jax.lax.broadcasted_iota(leaf.dtype, leaf.shape, max(leaf.ndim - 3, 0))
            stand_in = 0.3 + jnp.mod((7 * k + 3 * band + 1) * 0.6180339887, 1.0)
            leaf = jnp.where(bad, stand_in.astype(leaf.dtype), leaf)
        out.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, out)
