"""Patch operators that compose inside a pipeline and compile to one program.

Two ways to run an operator chip by chip:

- :class:`Patchwise` (patcher + inner operator + batch size): one fused, bounded-memory loop
  (cut a batch, run it vmapped, weight it, add it into the canvas); the chip stack never exists.
- The seeds' three-step shape, composable in a :class:`georax.Sequential`::

      Sequential([GridSampler(patcher), ApplyToChips(model, batch_size=8), Stitch()])

  :class:`GridSampler` turns a scene into a :class:`~georax.patch.Chips` carrier (chip stack +
  positions + scene metadata), :class:`ApplyToChips` maps an operator over the stack in vmapped
  batches, :class:`Stitch` puts it back. Between the steps the
  chips are an ordinary carrier: other operators can inspect or transform them (active learning
  scores them, ``Chips.transforms()`` gives each chip's georeferencing, and any georax operator
  maps over the whole stack: ``Sequential([GridSampler(p), NDVI(), Stitch()])``).

The inner operator sees each chip as a plain array ``(*band, h, w)`` (its georeferencing differs
per chip and is traced, so it cannot be a static GeoTensor transform; use ``Chips`` for that).

Pricing (:meth:`georax.Operator.precheck`): the containers price their patcher, count the batches
they unroll at trace time, and price their inner operator on one chip's shape with the trace-step
limit divided by that count, so nesting multiplies into one bounded total
(:mod:`georax.patch.pricing`). A container whose inner operator holds another batch loop does not
unroll its own (it is a ``scan``), so nested patching traces the innermost operator at most
:data:`~georax.patch.stitch.MAX_UNROLLED_BATCHES` times, not that number to the power of the depth.
"""

from __future__ import annotations

from typing import Any

import jax

from georax.core.carrier import values_of
from georax.core.errors import ShapeError
from georax.core.operator import Operator, static
from georax.core.sandbox import Limits
from georax.patch.aggregation import Aggregation, stitched_shape
from georax.patch.chips import Chips
from georax.patch.geometry import ChipsShape
from georax.patch.patcher import Patcher
from georax.patch.pricing import check_trace_steps, inner_limits
from georax.patch.stitch import ChipFn, map_chips, unrolled_batches

__all__ = [
    "ApplyToChips",
    "GridSampler",
    "Patchwise",
    "Stitch",
    "chip_function",
    "has_batch_loop",
]


def _check_batch(op: Operator) -> None:
    if op.batch_size < 1:  # type: ignore[attr-defined]
        op.fail("batch_size", "must be >= 1")


def chip_function(operator: Operator) -> ChipFn:
    """``fn(chip, key_or_None) -> array``: ``operator`` on one chip, as the batch loops call it."""

    def fn(chip: jax.Array, key: jax.Array | None) -> jax.Array:
        return values_of(operator(chip) if key is None else operator(chip, key=key))

    return fn


def has_batch_loop(operator: Operator) -> bool:
    """Whether ``operator`` is or contains a :class:`Patchwise` or :class:`ApplyToChips`."""
    loops = (Patchwise, ApplyToChips)
    leaves = jax.tree.leaves(operator, is_leaf=lambda m: isinstance(m, loops))
    return any(isinstance(leaf, loops) for leaf in leaves)


def _unroll_cap(operator: Operator) -> int | None:
    """0 (always a scan) when the inner operator has its own batch loop, else the default."""
    return 0 if has_batch_loop(operator) else None


def _price_batches(
    who: str, operator: Operator, batch_size: int, chips: tuple[int, ...], limits: Limits
) -> tuple[int, ...]:
    """Price a batch loop over ``chips = (n, *chip)``: its unrolled trace steps, then the inner
    operator on one chip with the trace-step limit divided by them. Returns the chip output."""
    n = int(chips[0])
    steps = unrolled_batches(n, batch_size, _unroll_cap(operator))
    what = f"{n} chips in batches of {batch_size} traced as {steps} unrolled batches"
    check_trace_steps(steps, limits, who, "batch_size", what)
    return tuple(operator.precheck(tuple(chips[1:]), inner_limits(limits, steps)))


class Patchwise(Operator):
    """Run ``operator`` chip by chip over a scene and stitch the results (fused, compiled).

    **Arguments:**

    - `patcher`: a :class:`Patcher` (geometry, sampler, window, aggregation, padding).
    - `operator`: any georax operator mapping a chip ``(*band, h, w)`` to ``(*band_out, h, w)``
      (a :class:`georax.ModelOp`, a Sequential of preprocessing + model, ...).
    - `batch_size`: chips run together under ``vmap``; bounds peak memory (one batch of the
      operator's intermediates is alive at a time). 8 is a good default on CPU: on the
      benchmark's conv net, 4 to 27 chips of 256 x 256 per batch run within a few percent of
      each other, while memory grows linearly with the batch.

    **Returns** (when called): the stitched scene, array or GeoTensor like the input (same
    transform); for ``ByIndex`` aggregation, a :class:`Chips` of per-chip outputs.
    """

    patcher: Patcher
    operator: Operator
    batch_size: int = static(default=8)

    def __check_init__(self) -> None:
        _check_batch(self)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        if isinstance(x, Chips):
            raise ShapeError("Patchwise takes a scene, got Chips; use ApplyToChips on chips")
        return self.patcher.apply(
            x,
            chip_function(self.operator),
            batch_size=self.batch_size,
            key=key,
            max_unrolled=_unroll_cap(self.operator),
        )

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Price the patcher on ``shape``, the batch loop, and the operator on one chip.

        **Returns:** ``(*band_out, H, W)``, or the per-chip outputs' shape for ``ByIndex``.
        """
        chips = self.patcher.precheck(shape, limits, who="Patchwise.patcher")
        out = _price_batches("Patchwise", self.operator, self.batch_size, chips, limits)
        if chips.kind == "by_index":
            return chips.with_chip(out)
        return (*out[:-2], *chips.scene)


class GridSampler(Operator):
    """Cut a scene (array or GeoTensor) into :class:`Chips` with ``patcher``.

    **Arguments:**

    - `patcher`: the :class:`Patcher`; its window and aggregation travel with the chips so that
      a later :class:`Stitch` knows how to put them back.
    """

    patcher: Patcher

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Chips:
        if isinstance(x, Chips):
            raise ShapeError("GridSampler takes a scene, got Chips (already sampled)")
        return self.patcher.extract(x, key=key)

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> ChipsShape:
        """Price the patcher on ``shape``; returns the chip stack's shape (see ChipsShape)."""
        return self.patcher.precheck(shape, limits, who="GridSampler.patcher")


class ApplyToChips(Operator):
    """Map ``operator`` over every chip of a :class:`Chips`, ``batch_size`` chips at a time.

    Batches run one after another, each vmapped (:func:`georax.patch.map_chips`: unrolled at
    trace time, or ``jax.lax.map(..., batch_size=...)`` past ``MAX_UNROLLED_BATCHES`` or when
    ``operator`` holds a batch loop itself), so memory is bounded by one batch of the operator's
    intermediates. Positions and metadata are kept.

    **Arguments:**

    - `operator`: applied to each chip ``(*band, h, w)``.
    - `batch_size`: chips per vmapped batch.
    """

    operator: Operator
    batch_size: int = static(default=8)

    def __check_init__(self) -> None:
        _check_batch(self)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Chips:
        if not isinstance(x, Chips):
            raise ShapeError(
                f"ApplyToChips expects Chips (from GridSampler), got {type(x).__name__}"
            )
        out = map_chips(
            chip_function(self.operator),
            x.values,
            batch_size=self.batch_size,
            key=key,
            max_unrolled=_unroll_cap(self.operator),
        )
        return x.replace(values=out)

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Price the batch loop over ``shape = (n, *band, h, w)`` and the operator on one chip."""
        if len(shape) < 3:
            raise ShapeError(
                f"ApplyToChips expects Chips (n, *band, h, w), got an input of shape {shape}"
            )
        out = _price_batches("ApplyToChips", self.operator, self.batch_size, shape, limits)
        if isinstance(shape, ChipsShape):
            return shape.with_chip(out)
        return (int(shape[0]), *out)


class Stitch(Operator):
    """Put :class:`Chips` back into a scene (array or GeoTensor, like the sampled scene).

    **Arguments:**

    - `aggregation`: how overlapping chips combine (``OverlapAdd``, ``Mean``, ``Max``,
      ``ByIndex``); None uses the patcher's. The weights are the patcher's window.
    """

    aggregation: Aggregation | None = None

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        if not isinstance(x, Chips):
            raise ShapeError(f"Stitch expects Chips (from GridSampler), got {type(x).__name__}")
        return x.stitch(self.aggregation)

    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Stitching gives back the scene the chips were cut from (see ChipsShape)."""
        kind = None if self.aggregation is None else self.aggregation.kind
        return stitched_shape(shape, kind, "Stitch")
