"""Aggregation axis: how overlapping chip outputs are combined into one scene.

- :class:`OverlapAdd`: normalised weighted overlap-add, ``sum_k w_k y_k / sum_k w_k`` with the
  patcher's window as ``w`` (exact reconstruction of an identity pipeline for every window).
- :class:`Mean`: the same with unit weights, whatever the window.
- :class:`Max`: pixelwise maximum over the chips covering a pixel.
- :class:`ByIndex`: no stitching; per-chip outputs are returned with their positions (active
  learning scores chips, it does not need a scene back).

Pixels that no chip covers (possible with random or explicit samplers) get ``fill_value``.

Calling an aggregation on chips stitches them with it. What it stitches is any
:class:`ChipStack`, the abstract carrier :class:`georax.patch.Chips` implements; the abstract
type lives here so that this module does not depend on the chip carrier (which holds an
aggregation), and the two modules do not import each other.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

import jax

from georax.core.carrier import Carrier
from georax.core.errors import ShapeError
from georax.core.operator import Operator, static
from georax.patch.geometry import ChipsShape

if TYPE_CHECKING:
    from georax.core.sandbox import Limits

__all__ = [
    "AGGREGATION_KINDS",
    "Aggregation",
    "ByIndex",
    "ChipStack",
    "Max",
    "Mean",
    "OverlapAdd",
    "stitched_shape",
]

AGGREGATION_KINDS = ("overlap_add", "mean", "max", "by_index")


class ChipStack(Carrier):
    """Abstract carrier of chips that can be put back into their scene (see ``Chips``)."""

    @abc.abstractmethod
    def stitch(self, aggregation: Aggregation | None = None) -> Any:
        """The scene rebuilt from the chips with ``aggregation`` (default: the chips' own)."""


def stitched_shape(shape: tuple[int, ...], kind: str | None, who: str) -> tuple[int, ...]:
    """Upper bound of the output shape of stitching chips of ``shape`` (for ``precheck``).

    **Arguments:**

    - `shape`: the chip stack's ``(n, *band, h, w)``; a :class:`ChipsShape` (what a
      ``GridSampler``'s precheck returns) carries the scene's ``(H, W)``.
    - `kind`: the aggregation kind (None: the chips' own); ``"by_index"`` returns the chips
      unchanged.
    - `who`: the operator named in errors.

    **Raises:** :class:`ShapeError` when ``shape`` is not known to be chips: stitching a plain
    array is refused at run time as well.
    """
    if not isinstance(shape, ChipsShape):
        raise ShapeError(
            f"{who} stitches Chips (from a GridSampler); its input of shape {tuple(shape)} is "
            "not known to be chips"
        )
    if (shape.kind if kind is None else kind) == "by_index":
        return shape
    return (*shape[1:-2], *shape.scene)


class Aggregation(Operator):
    """Abstract aggregation; :attr:`kind` names the accumulation the stitcher runs.

    **Arguments:**

    - `fill_value`: the value of pixels no chip covers.
    """

    fill_value: float = static(default=0.0)

    @property
    @abc.abstractmethod
    def kind(self) -> str:
        """One of :data:`AGGREGATION_KINDS`."""

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        if not isinstance(x, ChipStack):
            raise ShapeError(
                f"{type(self).__name__} stitches Chips (from GridSampler), got {type(x).__name__}"
            )
        return x.stitch(self)

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Stitching chips gives back their scene; see :func:`stitched_shape`."""
        return stitched_shape(shape, self.kind, type(self).__name__)


class OverlapAdd(Aggregation):
    """Normalised weighted overlap-add with the patcher's window (the default)."""

    @property
    def kind(self) -> str:
        return "overlap_add"


class Mean(Aggregation):
    """Unweighted mean of the chips covering each pixel (the window is ignored)."""

    @property
    def kind(self) -> str:
        return "mean"


class Max(Aggregation):
    """Pixelwise maximum of the chips covering each pixel (the window is ignored)."""

    @property
    def kind(self) -> str:
        return "max"


class ByIndex(Aggregation):
    """Keep per-chip outputs (a :class:`~georax.patch.chips.Chips`) instead of stitching."""

    @property
    def kind(self) -> str:
        return "by_index"
