"""Per-band summary statistics of a pipeline's output (the ``?stats=true`` answer)."""

from __future__ import annotations

from typing import Any

import numpy as np

from georax.tensor import GeoTensor

__all__ = ["band_stats"]


def band_stats(gt: GeoTensor) -> list[dict[str, Any]]:
    """Per band: the valid pixel count and, when there are any, min, max, mean and std.

    NaN, infinities and the GeoTensor's ``fill_value`` are not valid. Leading axes before the
    band axis (a batch) are folded into the band list.

    **Arguments:**

    - `gt`: the output raster.

    **Returns:** one dict per band: ``{"band", "valid", "min", "max", "mean", "std"}`` (the
    last four only when ``valid > 0``); ``band`` is the band's name or its index.
    """
    values = np.asarray(gt.values)
    values = values.reshape(-1, *values.shape[-2:])
    stats = []
    for i, band in enumerate(values):
        b = band.astype(np.float64)
        valid = np.isfinite(b)
        if gt.fill_value is not None:
            valid &= b != gt.fill_value
        v = b[valid]
        name = gt.band_names[i] if gt.band_names and i < len(gt.band_names) else str(i)
        entry: dict[str, Any] = {"band": name, "valid": int(v.size)}
        if v.size:
            entry.update(
                min=float(v.min()), max=float(v.max()), mean=float(v.mean()), std=float(v.std())
            )
        stats.append(entry)
    return stats
