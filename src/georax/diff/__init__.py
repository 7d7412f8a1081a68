"""georax.diff: what changed between two pipelines, structurally and numerically (seed case 13).

- :func:`config_diff` -- aligned, structural diff of two pipelines' configs (operators added,
  removed, moved; fields changed; arrays by value; Graph wiring).
- :class:`AB` -- run both pipelines over the same inputs and report per-input metrics from
  :mod:`georax.array.metrics`, quantiles, the worst inputs, a bimodality flag, a histogram, and a
  gate for CI (:meth:`ABReport.check`).
"""

from georax.diff.ab import AB, ABReport, GateResult, bimodality_coefficient
from georax.diff.errors import ABMismatchError, DiffError, GateFailedError
from georax.diff.structure import Change, ConfigDiff, config_diff

__all__ = [
    "AB",
    "ABMismatchError",
    "ABReport",
    "Change",
    "ConfigDiff",
    "DiffError",
    "GateFailedError",
    "GateResult",
    "bimodality_coefficient",
    "config_diff",
]
