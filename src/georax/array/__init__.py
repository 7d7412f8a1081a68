"""georax.array: carrier-neutral array operators (QC asserts, metrics, reductions).

``georax.array.qc`` holds the pass-through quality-control checks (the seeds' case 8).
"""

from georax.array import metrics, qc

__all__ = ["metrics", "qc"]
