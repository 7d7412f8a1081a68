"""Aggregation axis: how overlapping chip outputs are combined into one scene.

- :class:`OverlapAdd`: normalised weighted overlap-add, ``sum_k w_k y_k / sum_k w_k`` with the
  patcher's window as ``w`` (exact reconstruction of an identity pipeline for every window).
- :class:`Mean`: the same with unit weights, whatever the window.
- :class:`Max`: pixelwise maximum over the chips covering a pixel.
- :class:`ByIndex`: no stitching; per-chip outputs are returned with their positions (active
  learning scores chips, it does not need a scene back).

Pixels that no chip covers (possible with random or explicit samplers) get ``fill``.
"""

from __future__ import annotations

from typing import Any

import jax

from georax.core.operator import Operator, static

AGGREGATION_MODES = ("overlap_add", "mean", "max", "by_index")


class Aggregation(Operator):
    """Abstract aggregation; ``mode`` names the accumulation the stitcher runs."""

    fill: float = static(default=0.0)

    def __check_init__(self) -> None:
        if isinstance(self.fill, bool) or not isinstance(self.fill, int | float):
            self.fail("fill", "must be a number")

    @property
    def mode(self) -> str:
        """One of :data:`AGGREGATION_MODES`."""
        raise NotImplementedError

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        from georax.patch.operators import Stitch

        return Stitch(self)(x)


class OverlapAdd(Aggregation):
    """Normalised weighted overlap-add with the patcher's window (the default)."""

    @property
    def mode(self) -> str:
        return "overlap_add"


class Mean(Aggregation):
    """Unweighted mean of the chips covering each pixel (the window is ignored)."""

    @property
    def mode(self) -> str:
        return "mean"


class Max(Aggregation):
    """Pixelwise maximum of the chips covering each pixel (the window is ignored)."""

    @property
    def mode(self) -> str:
        return "max"


class ByIndex(Aggregation):
    """Keep per-chip outputs (a :class:`~georax.patch.chips.Chips`) instead of stitching."""

    @property
    def mode(self) -> str:
        return "by_index"
