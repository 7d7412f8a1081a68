"""Patch geometry: the chip shape, and the host-side grid arithmetic every sampler shares.

Positions are always the (row, col) of a chip's top-left pixel in the *padded* scene (see
:func:`pad_widths`); all of this is static shape arithmetic done in NumPy at trace time, in
vectorised form, so its cost is linear in the scene's side and never a Python loop over chips.

Two names for two different grids: :data:`ChipOffsets` is the per-axis chip starts of a regular
sampler (pixel offsets in the padded scene); :class:`georax.tensor.Grid` is a georeferenced
raster grid (CRS, transform, shape), which :attr:`georax.patch.Chips.grid` returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from jaxtyping import Int

from georax.core.errors import ShapeError
from georax.core.operator import Operator, as_tuple, static
from georax.patch.pricing import check_extent

if TYPE_CHECKING:
    from georax.core.sandbox import Limits

__all__ = [
    "ChipOffsets",
    "ChipsShape",
    "Rectangular",
    "as_pair",
    "is_int_pair",
    "pad_widths",
    "regular_count",
    "regular_starts",
    "to_pair",
]

ChipOffsets = tuple[tuple[int, ...], tuple[int, ...]]
"""Per-axis chip starts ``(rows, cols)`` of a regular grid in the padded scene; the chip
positions are their Cartesian product."""


class ChipsShape(tuple):
    """The shape of a chip stack ``(n, *band, h, w)`` that remembers where the chips came from.

    What :meth:`georax.Operator.precheck` returns for a :class:`~georax.patch.GridSampler`: an
    ordinary shape tuple (so containers treat it like any other), plus ``scene``, the ``(H, W)``
    of the scene, which a later :class:`~georax.patch.Stitch` gives back as ``(*band, H, W)``,
    and ``kind``, the patcher's aggregation kind (``"by_index"`` chips are not stitched).
    """

    scene: tuple[int, int]
    kind: str

    def __new__(
        cls, shape: tuple[int, ...], scene: tuple[int, int], kind: str = "overlap_add"
    ) -> ChipsShape:
        out = super().__new__(cls, (int(s) for s in shape))
        out.scene = (int(scene[0]), int(scene[1]))
        out.kind = str(kind)
        return out

    def __getnewargs__(self) -> tuple[tuple[int, ...], tuple[int, int], str]:  # type: ignore[override]
        return tuple(self), self.scene, self.kind

    def with_chip(self, chip_shape: tuple[int, ...]) -> ChipsShape:
        """The same chips with each chip's shape replaced (after an operator ran on them)."""
        return ChipsShape((self[0], *chip_shape), self.scene, self.kind)


def to_pair(value: Any) -> tuple[int, int]:
    """``7 -> (7, 7)``; ``(4, 5) -> (4, 5)`` (ints, for arithmetic on validated fields)."""
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


def is_int_pair(value: Any, minimum: int) -> bool:
    """Whether ``value`` is an int or a pair of ints, each ``>= minimum`` (bools refused)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= minimum
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value)
    )


def regular_count(length: int, chip: int, stride: int) -> int:
    """How many starts :func:`regular_starts` returns, by arithmetic alone (nothing allocated).

    Used to price a sampler before its positions exist.
    """
    if length < chip:
        raise ShapeError(f"axis length {length} is smaller than the chip size {chip}")
    k = (length - chip) // stride + 1
    return k + (1 if (k - 1) * stride + chip < length else 0)


def regular_starts(length: int, chip: int, stride: int) -> Int[np.ndarray, " k"]:
    """Start offsets of a regular grid along one axis that covers ``[0, length)`` completely.

    Starts are ``0, stride, 2 stride, ...`` while a chip fits; if the last one does not reach
    the end, one more start is added at ``length - chip``, so the last row/column of the scene is
    always covered. Requires ``length >= chip``.

    **Returns:** a sorted int64 array of unique starts (:func:`regular_count` of them).
    """
    k = (length - chip) // stride + 1 if length >= chip else 0
    n = regular_count(length, chip, stride)
    starts = np.arange(k, dtype=np.int64) * stride
    if n > k:
        starts = np.append(starts, np.int64(length - chip))
    return starts


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
        if min(self.size) < 1:
            self.fail("size", "must be a positive int or a pair of positive ints")

    @property
    def shape(self) -> tuple[int, int]:
        """The chip shape as ``(rows, cols)``."""
        return to_pair(self.size)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> tuple[int, int]:
        return self.shape

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Refuse a chip side over ``limits.max_extent``; the output is the 2-tuple chip shape."""
        for side in self.shape:
            check_extent(side, limits, "Rectangular", "size")
        return (2,)
