"""Input and parameter checks shared by the array and geo operators.

Two questions come up in every operator that does real-valued arithmetic:

- **Is the input real?** Casting a complex array to ``float32`` silently drops its imaginary
  part (JAX only warns), so a complex SAR SLC fed to a dB conversion or a percentile stretch
  would give plausible-looking nonsense. :func:`real_float` refuses complex (and non-numeric)
  input with a :class:`~georax.errors.DataError` naming the operator, and otherwise returns the
  values in a floating dtype.
- **Is a parameter's value known, and is it sane?** Array-leaf parameters (thresholds, gains,
  ranges) may be tracers -- an operator built inside ``jax.vmap`` over its parameters, or inside
  a ``jit`` -- and then nothing can be checked at construction. :func:`concrete` gives the value
  as NumPy when it is known and ``None`` when it is traced, so ``__check_init__`` checks exactly
  the values it can see and never forces a tracer.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from georax.core.errors import DataError

__all__ = ["concrete", "is_finite_value", "real_float", "require_real"]


def require_real(x: ArrayLike, who: str) -> Array:
    """``x`` as a JAX array, refusing complex and non-numeric dtypes.

    **Arguments:**

    - `x`: an array (integer, boolean or floating).
    - `who`: the operator or function name for the message.

    **Returns:** ``jnp.asarray(x)`` with its dtype unchanged.

    **Raises:** :class:`~georax.errors.DataError` for complex or non-numeric input.
    """
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise DataError(
            f"{who}: got complex values ({x.dtype}); its arithmetic is real, and casting would "
            "silently drop the imaginary part. Convert first, e.g. jnp.abs(x) ** 2 for SAR "
            "intensity or jnp.abs(x) for amplitude"
        )
    if not (jnp.issubdtype(x.dtype, jnp.number) or x.dtype == jnp.bool_):
        raise DataError(f"{who}: expected numeric values, got dtype {x.dtype}")
    return x


def real_float(x: ArrayLike, who: str) -> Float[Array, "*shape"]:
    """``x`` in a floating dtype: floats pass through, integers and booleans become float32.

    **Arguments:**

    - `x`: an integer, boolean or floating array.
    - `who`: the operator or function name for the message.

    **Returns:** a floating array of the same shape.

    **Raises:** :class:`~georax.errors.DataError` for complex or non-numeric input (see
    :func:`require_real`).
    """
    x = require_real(x, who)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def concrete(value: Any) -> np.ndarray | None:
    """The numeric value of a parameter as NumPy, or ``None`` when it is unknown.

    **Arguments:**

    - `value`: a number, array or tracer.

    **Returns:** ``np.asarray(value)`` for a known number or numeric array; ``None`` for
    ``None``, for tracers (the value exists only at run time) and for anything that is not a
    number (which :func:`is_finite_value` refuses).
    """
    if value is None or isinstance(value, jax.core.Tracer):
        return None
    try:
        v = np.asarray(value)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None
    except ValueError:  # a ragged list
        return None
    return v if v.dtype.kind in "biuf" else None


def is_finite_value(value: Any) -> bool:
    """False when ``value`` is not a number, or is known (not traced) and holds NaN or inf."""
    if value is None or isinstance(value, jax.core.Tracer):
        return True
    v = concrete(value)
    if v is None:
        try:
            np.asarray(value)
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            return True  # traced
        except ValueError:
            return False
        return False  # strings, objects: not a number at all
    return bool(np.all(np.isfinite(v)))
