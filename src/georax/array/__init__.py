"""georax.array: carrier-neutral array operators (QC asserts, metrics, reductions)."""
