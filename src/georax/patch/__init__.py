"""georax.patch: patch geometry, samplers, windows, aggregation; patchwise apply and stitch."""
