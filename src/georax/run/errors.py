"""Errors of :mod:`georax.run`: failed rows, aborted runs, busy or inconsistent run folders."""

from __future__ import annotations

from typing import Any

from georax.core.errors import GeoraxError

__all__ = [
    "ExecutorError",
    "FailureRateExceededError",
    "ManifestError",
    "RowFailedError",
    "RunError",
    "RunLockedError",
]


class RunError(GeoraxError, RuntimeError):
    """Base class of the run errors (they pickle like every georax error, so they cross
    process boundaries)."""


class RowFailedError(RunError):
    """A row failed and the pipeline was built with ``on_row_error="raise"``.

    The failure is in the run manifest before this is raised. When the row ran in this process
    the original exception is chained as ``__cause__``.

    Attributes:
        row: the row id.
        error_type: the class name of the original exception.
        message: its message.
    """

    def __init__(self, row: str, error_type: str, message: str) -> None:
        self.row = row
        self.error_type = error_type
        self.message = message
        super().__init__(f"row {row!r} failed: {error_type}: {message}")


class FailureRateExceededError(RunError):
    """More rows failed than ``max_failure_rate`` allows; the run stopped early.

    Attributes:
        report: the :class:`~georax.run.RunReport` of the rows finished before stopping.
        max_failure_rate: the configured limit.
    """

    def __init__(self, report: Any, max_failure_rate: float) -> None:
        self.report = report
        self.max_failure_rate = max_failure_rate
        super().__init__(
            f"run aborted: {report.failed} of the catalog's {report.total} row(s) failed, so the "
            f"failure rate will exceed max_failure_rate={max_failure_rate:g} whatever the rest "
            f"do; first errors: {list(report.errors[:3])}"
        )


class RunLockedError(RunError):
    """Another live run holds the output folder."""


class ManifestError(RunError):
    """The run manifest cannot be read or does not belong to this kind of run."""


class ExecutorError(RunError):
    """The executor failed as a whole (cannot pickle the work, workers keep dying...)."""
