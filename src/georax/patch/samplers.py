"""Sampler axis: where chips are cut from the (padded) scene.

A sampler maps ``(scene shape, chip shape)`` to an ``(n, 2)`` integer array of chip top-left
``(row, col)`` positions in padded-scene coordinates. Regular and explicit samplers are static
(NumPy, known at trace time, so a regular grid also exposes its per-axis starts, which lets the
stitcher compute the normaliser separably); the random sampler draws positions from a ``key``
inside the compiled program.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from georax.core.errors import MissingKeyError
from georax.core.operator import Operator, as_tuple, static
from georax.patch.geometry import _is_int_pair, _pair, as_pair, regular_starts

Grid = tuple[tuple[int, ...], tuple[int, ...]]


class Sampler(Operator):
    """Abstract sampler. Subclasses implement :meth:`positions` (and :meth:`grid` if regular).

    Calling a sampler on ``(scene_shape, chip_shape)`` returns :meth:`positions`.
    """

    def positions(
        self, scene: tuple[int, int], chip: tuple[int, int], key: jax.Array | None = None
    ) -> Any:
        """``(n, 2)`` chip positions (row, col) in the padded scene of shape ``scene``."""
        raise NotImplementedError

    def grid(self, scene: tuple[int, int], chip: tuple[int, int]) -> Grid | None:
        """Per-axis starts when positions are their Cartesian product, else None."""
        return None

    def count(self, scene: tuple[int, int], chip: tuple[int, int]) -> int:
        """How many chips :meth:`positions` returns (static)."""
        raise NotImplementedError

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        scene, chip = x
        return self.positions(_pair(scene), _pair(chip), key)


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
        if not _is_int_pair(self.stride, 1):
            self.fail("stride", "must be a positive int or a pair of positive ints")

    def grid(self, scene: tuple[int, int], chip: tuple[int, int]) -> Grid:
        s = _pair(self.stride)
        rows = regular_starts(scene[0], chip[0], s[0])
        cols = regular_starts(scene[1], chip[1], s[1])
        return tuple(int(r) for r in rows), tuple(int(c) for c in cols)

    def positions(
        self, scene: tuple[int, int], chip: tuple[int, int], key: jax.Array | None = None
    ) -> np.ndarray:
        rows, cols = self.grid(scene, chip)
        rr, cc = np.meshgrid(np.asarray(rows), np.asarray(cols), indexing="ij")
        return np.stack([rr.ravel(), cc.ravel()], axis=1).astype(np.int32)

    def count(self, scene: tuple[int, int], chip: tuple[int, int]) -> int:
        rows, cols = self.grid(scene, chip)
        return len(rows) * len(cols)


class RandomPositions(Sampler):
    """``n`` chips at uniformly random positions, drawn from an explicit ``key``.

    Positions are traced (``jax.random.randint``), so the same compiled program samples new chips
    for every key. Pixels no chip covers are filled by the aggregation's ``fill`` when stitching.

    **Arguments:**

    - `n`: the number of chips.
    """

    requires_key: ClassVar[bool] = True
    n: int = static()

    def __check_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            self.fail("n", "must be a positive int")

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
        if (
            not isinstance(pts, tuple)
            or len(pts) == 0
            or not all(_is_int_pair(p, 0) and isinstance(p, tuple) for p in pts)
        ):
            self.fail("points", "needs one or more (row, col) pairs of non-negative ints")

    def positions(
        self, scene: tuple[int, int], chip: tuple[int, int], key: jax.Array | None = None
    ) -> np.ndarray:
        return np.asarray(self.points, dtype=np.int32).reshape(-1, 2)

    def count(self, scene: tuple[int, int], chip: tuple[int, int]) -> int:
        return len(self.points)
