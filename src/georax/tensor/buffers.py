"""Host <-> JAX buffer hand-off without copies where the memory layout allows it.

XLA's CPU client can adopt a NumPy buffer through DLPack when it is C-contiguous and 64-byte
aligned; otherwise :func:`jax.numpy.asarray` copies. This module allocates aligned buffers for the
readers (so a freshly read raster becomes a JAX array without a second copy) and converts arrays
that are already aligned. On GPU/TPU backends a host-to-device copy is unavoidable and we simply
use :func:`jax.numpy.asarray`.
"""

from __future__ import annotations

import weakref
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from georax.core.errors import DataError

_ALIGN = 64
# dtype kinds JAX cannot hold: object, unicode, bytes, datetime, timedelta
NON_NUMERIC_KINDS = frozenset("OUSMm")

__all__ = ["NON_NUMERIC_KINDS", "aligned_empty", "as_jax_array", "can_alias", "host_view"]

# Read-only NumPy views handed out by `host_view`, mapped back to the JAX array they view, so a
# round trip (GeoTensor -> xarray -> GeoTensor) can reuse the JAX buffer instead of copying it.
# Entries vanish when the view is garbage-collected.
_VIEWS: dict[int, tuple[weakref.ref[np.ndarray], jax.Array]] = {}


def host_view(values: jax.Array) -> np.ndarray:
    """A NumPy view of a JAX array (read-only, no copy on the CPU backend).

    The view is remembered so :func:`as_jax_array` can return the original JAX array for it
    (no copy back).
    """
    arr = np.asarray(values)
    if isinstance(values, jax.Array) and not arr.flags.writeable:
        key = id(arr)
        _VIEWS[key] = (weakref.ref(arr, lambda _r, k=key: _VIEWS.pop(k, None)), values)
    return arr


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised C-contiguous NumPy array whose data pointer is 64-byte aligned.

    **Arguments:**

    - `shape`: the array shape.
    - `dtype`: the NumPy dtype.

    **Returns:** a writable array; hand it to :func:`as_jax_array` for a zero-copy JAX view.
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + _ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % _ALIGN
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def can_alias(arr: np.ndarray) -> bool:
    """Whether :func:`as_jax_array` can adopt ``arr`` without copying on this backend."""
    return (
        jax.default_backend() == "cpu"
        and isinstance(arr, np.ndarray)
        and arr.flags.c_contiguous
        and arr.flags.writeable
        and arr.ctypes.data % _ALIGN == 0
        and arr.size > 0
        and jax.dtypes.canonicalize_dtype(arr.dtype) == arr.dtype
    )


def as_jax_array(arr: Any, *, copy: bool = True) -> jax.Array:
    """Convert ``arr`` to a JAX array, sharing its memory when ``copy=False`` and possible.

    With ``copy=False`` the result aliases ``arr`` (CPU backend, contiguous, 64-byte aligned,
    dtype JAX keeps): later in-place writes to ``arr`` show through the "immutable" JAX array, so
    only pass buffers the caller will not modify. Otherwise this is :func:`jax.numpy.asarray`.

    **Arguments:**

    - `arr`: a NumPy array (or anything :func:`jax.numpy.asarray` accepts).
    - `copy`: force a copy (the safe default).

    **Returns:** a :class:`jax.Array` with the same values (dtype canonicalised by JAX).

    **Raises:** :class:`~georax.errors.DataError` for non-numeric data (objects, strings, dates).
    """
    if isinstance(arr, jax.Array):
        return arr
    dtype = getattr(arr, "dtype", None)
    if dtype is not None and np.dtype(dtype).kind in NON_NUMERIC_KINDS:
        raise DataError(f"cannot make a JAX array of {np.dtype(dtype)} values: not numeric")
    entry = _VIEWS.get(id(arr)) if isinstance(arr, np.ndarray) else None
    if entry is not None and entry[0]() is arr:
        return entry[1]
    if not copy and isinstance(arr, np.ndarray) and can_alias(arr):
        try:
            return jnp.from_dlpack(arr)
        except (BufferError, TypeError, RuntimeError):  # pragma: no cover - platform specific
            pass
    if (
        isinstance(arr, np.ndarray)
        and jax.default_backend() == "cpu"
        and arr.size > 0
        and arr.dtype != np.bool_
        and jax.dtypes.canonicalize_dtype(arr.dtype) == arr.dtype
    ):
        # Exactly one memcpy into a buffer XLA can adopt (jnp.asarray of an unaligned array
        # was measured at ~2x the cost of a plain copy).
        buf = aligned_empty(arr.shape, arr.dtype)
        np.copyto(buf, arr)
        try:
            return jnp.from_dlpack(buf)
        except (BufferError, TypeError, RuntimeError):  # pragma: no cover - platform specific
            pass
    return jnp.asarray(arr)
