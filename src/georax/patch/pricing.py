"""Trace-free pricing of patch configs: the patch half of :meth:`georax.Operator.precheck`.

The sandboxed loader asks every operator, before anything is traced, whether its config is
affordable for an input shape. For patching, cost scales with config values in three ways, each
compared with one field of :class:`~georax.core.sandbox.Limits`:

- **extent** (``max_extent``): chip sides, strides, margins and the padding they add to a scene;
- **host bytes** (``max_host_bytes``): what is built on the host while tracing -- chip positions
  of static samplers (also baked into the program as constants), per-axis chip offsets, 1-D
  window weights, the separable normaliser and the index maps of reflect padding. All of these
  are linear in the scene's side or in the chip count (nothing is chip-squared any more: 2-D
  window weights are formed inside the program from the 1-D ones);
- **trace steps** (``max_trace_steps``): batches that a patch loop unrolls at trace time. A
  container traces its inner operator once per unrolled batch, so it hands the inner operator
  ``max_trace_steps // unrolled`` (:func:`inner_limits`): the product over nesting levels is what
  is bounded.

Refusals are :class:`~georax.core.budget.BudgetExceededError` (``stage="precheck"``) or, for an
input the config cannot work on at all, :class:`~georax.core.errors.ShapeError`; every message
names the operator and the field.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, NoReturn

from georax.core.budget import BudgetExceededError
from georax.core.errors import ShapeError

if TYPE_CHECKING:
    from georax.core.sandbox import Limits

__all__ = [
    "HOST_BYTES_PER_ITEM",
    "check_extent",
    "check_host_bytes",
    "check_trace_steps",
    "inner_limits",
    "refuse",
    "scene_of",
]

HOST_BYTES_PER_ITEM = 64
"""Host bytes charged per chip position, per chip offset and per padded/chip pixel along an axis.

An upper estimate of what the layout code holds at once for one item: int64 meshgrid and stack
temporaries plus the int32 copy baked into the program (about 40 bytes per chip), a Python int in
a tuple of offsets (about 36 bytes), a few float64/int64 temporaries per pixel of an axis."""


def refuse(required: int, limit: int, unit: str, detail: str) -> NoReturn:
    """Raise :class:`BudgetExceededError` at ``stage="precheck"`` with a message in ``unit``.

    **Arguments:**

    - `required`, `limit`: the cost and the limit it exceeds.
    - `unit`: ``"bytes"``, ``"pixels"`` or ``"trace steps"``.
    - `detail`: ``"<Operator>.<field>: <what>"``, naming where the cost comes from.
    """
    raise BudgetExceededError(required, limit, stage="precheck", detail=detail, unit=unit)


def check_extent(value: int, limits: Limits, who: str, field: str, what: str = "") -> None:
    """Refuse ``value`` pixels along one axis when it is over ``limits.max_extent``."""
    if value > limits.max_extent:
        refuse(value, limits.max_extent, "pixels", f"{who}.{field}{': ' + what if what else ''}")


def check_host_bytes(nbytes: int, limits: Limits, who: str, field: str, what: str) -> None:
    """Refuse ``nbytes`` of host memory over ``limits.max_host_bytes``."""
    if nbytes > limits.max_host_bytes:
        refuse(nbytes, limits.max_host_bytes, "bytes", f"{who}.{field}: {what}")


def check_trace_steps(steps: int, limits: Limits, who: str, field: str, what: str) -> None:
    """Refuse ``steps`` unrolled trace steps over ``limits.max_trace_steps``."""
    if steps > limits.max_trace_steps:
        refuse(steps, limits.max_trace_steps, "trace steps", f"{who}.{field}: {what}")


def inner_limits(limits: Limits, steps: int) -> Limits:
    """The limits an inner operator traced ``steps`` times gets: trace steps divided by ``steps``.

    Extent and host limits are unchanged (the inner operator's host constructions are built
    once per trace but freed between traces).
    """
    return dataclasses.replace(limits, max_trace_steps=limits.max_trace_steps // max(1, steps))


def scene_of(shape: tuple[int, ...], who: str) -> tuple[int, int]:
    """``(H, W)`` of a bands-first input shape, refusing fewer than 2 axes or an empty array.

    **Raises:** :class:`ShapeError` naming ``who`` and the shape.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise ShapeError(
            f"{who}: patching needs an array with at least 2 axes (..., H, W), got shape {shape}"
        )
    if math.prod(shape) == 0:
        raise ShapeError(f"{who}: cannot patch an empty array (shape {shape})")
    return shape[-2], shape[-1]
