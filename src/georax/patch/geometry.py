"""Patch geometry: the chip shape, and the host-side grid arithmetic every sampler shares.

Positions are always the (row, col) of a chip's top-left pixel in the *padded* scene (see
:func:`pad_widths`); all of this is static shape arithmetic done in NumPy at trace time.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from georax.core.errors import ShapeError
from georax.core.operator import Operator, as_tuple, static


def _pair(value: Any) -> tuple[int, int]:
    """``7 -> (7, 7)``; ``(4, 5) -> (4, 5)``."""
    if isinstance(value, int | np.integer):
        return (int(value), int(value))
    value = tuple(value)
    return (int(value[0]), int(value[1]))


def as_pair(value: Any) -> Any:
    """Converter for static size fields: ``7 -> (7, 7)``, lists -> tuples, others unchanged.

    Normalising here means ``Rectangular(256) == Rectangular((256, 256))`` and YAML lists load
    back as equal tuples; invalid values are left for ``__check_init__`` to refuse by name.
    """
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return (int(value), int(value))
    return as_tuple(value)


def _is_int_pair(value: Any, minimum: int) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= minimum
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value)
    )


def regular_starts(length: int, chip: int, stride: int) -> np.ndarray:
    """Start offsets of a regular grid along one axis that covers ``[0, length)`` completely.

    Starts are ``0, stride, 2 stride, ...`` while a chip fits; if the last one does not reach
    the end, one more start is added at ``length - chip`` (clamped), so the last row/column of
    the scene is always covered. Requires ``length >= chip``.

    **Returns:** a sorted int64 array of unique starts.
    """
    if length < chip:
        raise ShapeError(f"axis length {length} is smaller than the chip size {chip}")
    starts = list(range(0, length - chip + 1, stride))
    if starts[-1] + chip < length:
        starts.append(length - chip)
    return np.asarray(starts, dtype=np.int64)


def pad_widths(
    scene: tuple[int, int], chip: tuple[int, int], margin: tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """How much to pad ``(top, bottom), (left, right)`` before sampling chips.

    A ``margin`` is added on every side (so border pixels sit inside chips, not on their tapered
    edges); a scene still smaller than the chip is padded further at the bottom/right so at least
    one full chip fits.
    """
    out = []
    for n, c, m in zip(scene, chip, margin, strict=True):
        out.append((m, max(m, c - n - m)))
    return out[0], out[1]


class Rectangular(Operator):
    """Geometry axis: rectangular chips of ``size = (rows, cols)`` pixels.

    Calling it on a scene returns the chip shape it would cut (a static tuple), which is what the
    sampler and stitcher consume.

    **Arguments:**

    - `size`: chip size, an int (square) or ``(rows, cols)``.
    """

    size: tuple[int, int] = static(converter=as_pair)

    def __check_init__(self) -> None:
        if not _is_int_pair(self.size, 1):
            self.fail("size", "must be a positive int or a pair of positive ints")

    @property
    def shape(self) -> tuple[int, int]:
        """The chip shape as ``(rows, cols)``."""
        return _pair(self.size)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> tuple[int, int]:
        return self.shape
