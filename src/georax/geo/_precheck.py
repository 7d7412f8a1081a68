"""Shared pieces of the geo operators' :meth:`~georax.Operator.precheck` overrides (private).

``precheck`` runs before anything is traced, on an upper bound of the input shape, and refuses
configs whose trace time or host memory grows with a config value (a window, a chip, a target
grid). These helpers keep the refusals uniform: every message names ``Operator.field``, the value
and the limit it broke.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from georax.core.budget import BudgetExceededError
from georax.core.errors import ShapeError

if TYPE_CHECKING:
    from georax.core.sandbox import Limits


def spatial_shape(shape: tuple[int, ...], who: str, *, min_ndim: int = 2) -> tuple[int, int]:
    """``(H, W)`` of a bands-first shape, refusing shapes with fewer than ``min_ndim`` axes."""
    if len(shape) < min_ndim:
        layout = "(..., band, H, W)" if min_ndim >= 3 else "(..., H, W)"
        raise ShapeError(f"{who}: expected an array {layout}, got shape {tuple(shape)}")
    return int(shape[-2]), int(shape[-1])


def refuse_extent(who: str, field: str, extent: int, limits: Limits) -> None:
    """Refuse a config value that makes an operator cover more than ``limits.max_extent`` pixels.

    **Raises:** :class:`~georax.core.budget.BudgetExceededError` (``stage="precheck"``) naming
    ``who.field``; ``required`` and ``budget`` count pixels along one axis.
    """
    if extent > limits.max_extent:
        raise BudgetExceededError(
            extent,
            limits.max_extent,
            "precheck",
            f"{who}.{field} ({extent} pixels along one axis; limit max_extent)",
            unit="pixels",
        )


def refuse_host_bytes(who: str, field: str, nbytes: int, limits: Limits) -> None:
    """Refuse a host allocation, sized by a config value, above ``limits.max_host_bytes``.

    **Raises:** :class:`~georax.core.budget.BudgetExceededError` (``stage="precheck"``) naming
    ``who.field``; ``required`` and ``budget`` are bytes.
    """
    if nbytes > limits.max_host_bytes:
        raise BudgetExceededError(
            nbytes,
            limits.max_host_bytes,
            "precheck",
            f"{who}.{field} (host arrays built while tracing; limit max_host_bytes)",
        )


def with_bands(shape: tuple[int, ...], bands: int) -> tuple[int, ...]:
    """The shape of a bands-first output with ``bands`` bands (an ``(H, W)`` input gains one)."""
    if len(shape) < 3:
        return (bands, *shape[-2:])
    return (*shape[:-3], bands, *shape[-2:])
