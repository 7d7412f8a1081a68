"""The read budget: how many bytes one raster read may allocate.

A GeoTIFF header declares its size, and a few hundred kilobytes of sparse, deflated tiles can
declare a 100000 x 100000 raster: reading it whole would ask for tens of GiB (a decompression
bomb), and so would a boundless read of a huge window on a tiny file. Every read path of
:mod:`georax.io` (:func:`~georax.io.read`, :func:`~georax.io.iter_blocks`, the strips that
:func:`georax.patch.streaming.stream_patchwise` reads) computes what it would allocate from the
header and the request *before* allocating, and refuses with
:class:`~georax.io.errors.ReadBudgetExceededError` naming the file and the size when it exceeds
the budget. One internal block (tile or strip) of the file counts too: GDAL decompresses a whole
block to read any pixel of it.

The budget in force for a read is, first found wins:

1. the read's own ``max_bytes=`` argument;
2. the innermost :func:`read_budget` context (per thread / asyncio task, via
   :mod:`contextvars`);
3. the process-wide default, :data:`DEFAULT_MAX_READ_BYTES` (4 GiB) unless changed with
   :func:`set_default_read_budget`.

Sizes are byte counts or strings such as ``"512MiB"`` and ``"2GB"``.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from georax.core.budget import parse_bytes
from georax.core.errors import ConfigError
from georax.io.errors import ReadBudgetExceededError

__all__ = [
    "DEFAULT_MAX_READ_BYTES",
    "MAX_BANDS",
    "check_read_bytes",
    "max_read_bytes",
    "read_budget",
    "set_default_read_budget",
]

DEFAULT_MAX_READ_BYTES: int = 4 * 2**30
"""The shipped process-wide read budget: 4 GiB (a 13-band 10980 x 10980 uint16 Sentinel-2 scene
is 3.1 GB)."""

MAX_BANDS: int = 2048
"""The most bands georax opens a raster with. Imaging spectrometers have a few hundred bands;
GDAL's per-band bookkeeping costs grow with the square of the band count (a 1 x 1 GeoTIFF
declaring 65535 empty bands takes hours to read), so a header declaring more is refused at open,
before any pixel is read."""

_process_default: int = DEFAULT_MAX_READ_BYTES
_context_budget: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "georax_io_read_budget", default=None
)


def _as_budget(value: Any, who: str) -> int:
    """A positive byte count from an int or a size string, or a ConfigError naming `who`."""
    problem = "must be a positive byte count or a size like '2GiB'"
    if isinstance(value, bool) or not isinstance(value, int | float | str | np.integer):
        raise ConfigError(who, "max_bytes", value, problem)
    try:
        n = parse_bytes(int(value) if isinstance(value, np.integer) else value)
    except ConfigError:
        raise ConfigError(who, "max_bytes", value, problem) from None
    if n <= 0:
        raise ConfigError(who, "max_bytes", value, problem)
    return n


def set_default_read_budget(max_bytes: int | str) -> int:
    """Set the process-wide read budget (used where no argument or context sets one).

    **Arguments:**

    - `max_bytes`: the new default, bytes or a size string (``"16GiB"``).

    **Returns:** the previous default, so a caller can restore it.
    """
    global _process_default
    previous = _process_default
    _process_default = _as_budget(max_bytes, "georax.io.set_default_read_budget")
    return previous


@contextlib.contextmanager
def read_budget(max_bytes: int | str) -> Iterator[int]:
    """Within this block, reads that pass no ``max_bytes=`` use this budget.

    A service that accepts uploads wraps its handler in ``with gx.io.read_budget("256MiB"):``; a
    batch job that really reads 20 GB scenes raises it the same way. Contexts nest; the setting
    is local to the current thread or asyncio task.

    **Arguments:**

    - `max_bytes`: bytes or a size string.

    **Yields:** the budget in bytes.
    """
    n = _as_budget(max_bytes, "georax.io.read_budget")
    token = _context_budget.set(n)
    try:
        yield n
    finally:
        _context_budget.reset(token)


def max_read_bytes(max_bytes: int | str | None = None, who: str = "georax.io.read") -> int:
    """The budget in force: `max_bytes` if given, else the context's, else the default."""
    if max_bytes is not None:
        return _as_budget(max_bytes, who)
    context = _context_budget.get()
    return context if context is not None else _process_default


def check_read_bytes(
    path: str,
    shape: tuple[int, ...],
    dtype: Any,
    budget: int,
    *,
    what: str = "reading",
    extra_bytes: int = 0,
) -> int:
    """Refuse, before allocating, a read whose buffer would exceed the read budget.

    **Arguments:**

    - `path`: the raster (named in the error).
    - `shape`: the shape of the buffer the read would allocate.
    - `dtype`: its dtype.
    - `budget`: the budget in bytes (from :func:`max_read_bytes`, resolved once per call).
    - `what`: a description of the request for the message.
    - `extra_bytes`: further bytes the read allocates at the same time (a staging buffer).

    **Returns:** the bytes required (Python integers: no overflow whatever the header says).

    **Raises:** :class:`~georax.io.errors.ReadBudgetExceededError`.
    """
    required = math.prod(int(s) for s in shape) * np.dtype(dtype).itemsize + int(extra_bytes)
    if required > budget:
        dims = " x ".join(str(int(s)) for s in shape)
        raise ReadBudgetExceededError(
            path, required, budget, f"{what} ({dims}) {np.dtype(dtype).name}"
        )
    return required
