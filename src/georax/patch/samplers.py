"""Sampler axis: where chips are cut from the (padded) scene.

A sampler maps ``(scene shape, chip shape)`` to an ``(n, 2)`` integer array of chip top-left
``(row, col)`` positions in padded-scene coordinates. Regular and explicit samplers are static
(NumPy, known at trace time, so a regular grid also exposes its per-axis
:data:`~georax.patch.geometry.ChipOffsets`, which lets the stitcher compute the normaliser
separably); the random sampler draws positions from a ``key`` inside the compiled program.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from georax.core.errors import MissingKeyError, ShapeError
from georax.core.operator import Operator, as_tuple, static
from georax.patch.geometry import (
    ChipOffsets,
    as_pair,
    is_int_pair,
    regular_count,
    regular_starts,
    to_pair,
)

__all__ = ["ExplicitPositions", "RandomPositions", "RegularStride", "Sampler"]


def _shape_pair(value: Any) -> bool:
    return isinstance(value, tuple | list) and len(value) == 2 and is_int_pair(tuple(value), 1)


class Sampler(Operator):
    """Abstract sampler. Subclasses implement :meth:`positions` and :meth:`count` (and
    :meth:`offsets` if their positions form a regular grid); they are final.

    Calling a sampler on ``(scene_shape, chip_shape)`` returns :meth:`positions`.
    """

    @abc.abstractmethod
    def positions(
        self, scene: tuple[int, int], chip: tuple[int, int], key: jax.Array | None = None
    ) -> Any:
        """``(n, 2)`` chip positions (row, col) in the padded scene of shape ``scene``."""

    @abc.abstractmethod
    def count(self, scene: tuple[int, int], chip: tuple[int, int]) -> int:
        """How many chips :meth:`positions` returns (static, computed without building them)."""

    def offsets(self, scene: tuple[int, int], chip: tuple[int, int]) -> ChipOffsets | None:
        """Per-axis starts when positions are their Cartesian product, else None."""
        return None

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        pair = tuple(x) if isinstance(x, tuple | list) else None
        if pair is None or len(pair) != 2 or not all(_shape_pair(p) for p in pair):
            raise ShapeError(
                f"{type(self).__name__} takes (scene_shape, chip_shape), two (rows, cols) pairs "
                f"of positive ints, got {type(x).__name__}"
            )
        return self.positions(to_pair(pair[0]), to_pair(pair[1]), key)


class RegularStride(Sampler):
    """Regular grid with ``stride = (rows, cols)`` that always covers the last row and column.

    Starts are ``0, s, 2s, ...``; when the last chip would stop short of the scene edge one more
    chip is placed flush with it (start ``H - chip``), so scenes not divisible by the stride are
    covered with full chips and no pixel is missed. ``stride == chip`` tiles without overlap;
    ``stride < chip`` overlaps (blend with a tapered window).

    **Arguments:**

    - `stride`: an int or ``(rows, cols)``, each ``>= 1``.
    """

    stride: tuple[int, int] = static(converter=as_pair)

    def __check_init__(self) -> None:
        if min(self.stride) < 1:
            self.fail("stride", "must be a positive int or a pair of positive ints")

    def offsets(self, scene: tuple[int, int], chip: tuple[int, int]) -> ChipOffsets:
        s = to_pair(self.stride)
        rows = regular_starts(scene[0], chip[0], s[0])
        cols = regular_starts(scene[1], chip[1], s[1])
        return tuple(rows.tolist()), tuple(cols.tolist())

    def positions(
        self, scene: tuple[int, int], chip: tuple[int, int], key: jax.Array | None = None
    ) -> np.ndarray:
        rows, cols = self.offsets(scene, chip)
        rr, cc = np.meshgrid(np.asarray(rows), np.asarray(cols), indexing="ij")
        return np.stack([rr.ravel(), cc.ravel()], axis=1).astype(np.int32)

    def count(self, scene: tuple[int, int], chip: tuple[int, int]) -> int:
        s = to_pair(self.stride)
        return regular_count(scene[0], chip[0], s[0]) * regular_count(scene[1], chip[1], s[1])


class RandomPositions(Sampler):
    """``n`` chips at uniformly random positions, drawn from an explicit ``key``.

    Positions are traced (``jax.random.randint``), so the same compiled program samples new chips
    for every key. Pixels no chip covers are filled by the aggregation's ``fill_value`` when
    stitching.

    **Arguments:**

    - `n`: the number of chips.
    """

    requires_key: ClassVar[bool] = True
    n: int = static()

    def __check_init__(self) -> None:
        if self.n < 1:
            self.fail("n", "must be >= 1")

    def positions(
        self, scene: tuple[int, int], chip: tuple[int, int], key: jax.Array | None = None
    ) -> jax.Array:
        if key is None:
            raise MissingKeyError(
                "RandomPositions draws chip positions at random and needs an explicit `key=`"
            )
        hi = jnp.asarray([scene[0] - chip[0] + 1, scene[1] - chip[1] + 1], dtype=jnp.int32)
        return jax.random.randint(key, (self.n, 2), 0, hi, dtype=jnp.int32)

    def count(self, scene: tuple[int, int], chip: tuple[int, int]) -> int:
        return self.n


class ExplicitPositions(Sampler):
    """Chips at given ``(row, col)`` top-left positions, in *unpadded* scene pixels.

    Useful for active learning (score, then re-cut the chosen chips) and for tests. Positions are
    shifted by the patcher's padding, so ``(0, 0)`` is always the scene's first pixel.

    **Arguments:**

    - `points`: a sequence of ``(row, col)`` integer pairs.
    """

    points: tuple[tuple[int, int], ...] = static(converter=as_tuple)

    def __check_init__(self) -> None:
        pts = self.points
        if not pts or any(v < 0 for p in pts for v in p):
            self.fail("points", "needs one or more (row, col) pairs of non-negative ints")
        if any(v >= 2**31 for p in pts for v in p):
            self.fail("points", "coordinates must be below 2**31 (int32 chip positions)")

    def positions(
        self, scene: tuple[int, int], chip: tuple[int, int], key: jax.Array | None = None
    ) -> np.ndarray:
        return np.asarray(self.points, dtype=np.int32).reshape(-1, 2)

    def count(self, scene: tuple[int, int], chip: tuple[int, int]) -> int:
        return len(self.points)
