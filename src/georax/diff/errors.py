"""Errors of :mod:`georax.diff`."""

from __future__ import annotations

from georax.core.errors import GeoraxError

__all__ = ["ABMismatchError", "DiffError", "GateFailedError"]


class DiffError(GeoraxError, ValueError):
    """Base class: something cannot be diffed or compared (wrong argument, unloadable input)."""


class ABMismatchError(DiffError):
    """The two pipelines' outputs cannot be compared: different structure, shape or dtype kind.

    Attributes:
        input_id: the input on which they disagree (``None`` if found before running).
        problem: what differs.
    """

    def __init__(self, input_id: str | None, problem: str) -> None:
        self.input_id = input_id
        self.problem = problem
        where = f"input {input_id!r}: " if input_id is not None else ""
        super().__init__(f"A/B outputs do not match: {where}{problem}")


class GateFailedError(DiffError):
    """An A/B regression gate failed (raised by :meth:`GateResult.raise_if_failed`).

    Attributes:
        failures: one sentence per failed check.
    """

    def __init__(self, failures: tuple[str, ...]) -> None:
        self.failures = failures
        super().__init__("A/B gate failed: " + "; ".join(failures))
