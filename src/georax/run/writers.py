"""Writers: where a row's result goes, atomically, with a digest the manifest can check.

A writer owns the run's output folder (``out_dir``; the manifest lives there too). In the
worker that ran a row, :meth:`Writer.write` stores the result and returns a :class:`RowOutput`
(file name, SHA-256, per-row statistics); after the run, in the driver, :meth:`Writer.finalize`
writes whatever summarises all rows.

- :class:`CogWriter`: one Cloud-Optimised GeoTIFF per row through :func:`georax.io.write_cog`
  (atomic: a temporary file renamed into place), plus, by default, ``stats.parquet``.
- :class:`StatsWriter`: no rasters; only the GeoParquet table of per-row statistics.

Writers are plain pickleable objects: they travel to process-pool and Dask workers.
"""

from __future__ import annotations

import abc
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from rasterio.warp import transform_bounds

from georax.catalog import GeoSlice
from georax.core.carrier import Carrier, values_of
from georax.io import write_cog
from georax.run.errors import RunError
from georax.run.files import atomic_write, sha256_file
from georax.tensor.geotensor import require_geotensor

__all__ = ["CogWriter", "RowOutput", "StatsWriter", "Writer", "row_stats"]


class RowOutput(NamedTuple):
    """What a writer produced for one row: ``output`` (file name in ``out_dir`` or None),
    ``digest`` (SHA-256 of the file or None), ``size`` (bytes or None), ``stats``."""

    output: str | None
    digest: str | None
    size: int | None
    stats: dict[str, Any]


def _json_float(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def row_stats(result: Any) -> dict[str, Any]:
    """Summary statistics of a row's result over its valid pixels (finite, not the fill value).

    **Returns:** ``{"mean", "std", "min", "max", "valid_fraction", "pixels", "bands"}`` as
    JSON-ready numbers (``None`` when no pixel is valid).
    """
    if not isinstance(result, Carrier) and not hasattr(result, "shape"):
        raise RunError(
            f"cannot summarise a {type(result).__name__}: the pipeline must return one array or "
            "GeoTensor per row"
        )
    values = np.asarray(values_of(result))
    valid = np.isfinite(values) if values.dtype.kind in "fc" else np.ones(values.shape, bool)
    fill = getattr(result, "fill_value", None)
    if fill is not None and not (isinstance(fill, float) and math.isnan(fill)):
        valid &= values != fill
    good = values[valid]  # one copy of the valid pixels, in their own dtype
    bands = int(values.shape[-3]) if values.ndim >= 3 else 1
    if good.size == 0:
        stats = dict.fromkeys(("mean", "std", "min", "max"))
    else:  # float64 accumulators, no float64 copy of the pixels
        stats = {
            "mean": _json_float(float(good.mean(dtype=np.float64))),
            "std": _json_float(float(good.std(dtype=np.float64))),
            "min": _json_float(float(good.min())),
            "max": _json_float(float(good.max())),
        }
    fraction = float(np.count_nonzero(valid) / valid.size) if valid.size else 0.0
    return {**stats, "valid_fraction": fraction, "pixels": int(values.size), "bands": bands}


def _footprint(slice_: GeoSlice) -> Any:
    w, s, e, n = transform_bounds(slice_.crs, "EPSG:4326", *slice_.bounds, densify_pts=21)
    return shapely.box(w, s, e, n)


class Writer(abc.ABC):
    """Base class of the row writers (see the module docstring).

    **Arguments:**

    - `out_dir`: the run's output folder (created by the run; holds the manifest too).
    - `stats_table`: file name of the GeoParquet table of per-row statistics written at the
      end of a run (None: no table).
    """

    #: Recorded in the manifest; a resumed run redoes rows written by another kind of writer.
    kind: str = "abstract"

    def __init__(self, out_dir: str | os.PathLike[str], *, stats_table: str | None) -> None:
        if stats_table is not None and (
            not isinstance(stats_table, str) or os.path.basename(stats_table) != stats_table
        ):
            raise RunError(f"stats_table={stats_table!r} must be a plain file name")
        try:
            self.out_dir = os.path.abspath(os.fspath(out_dir))
        except TypeError:
            raise RunError(f"out_dir must be a path, got {out_dir!r}") from None
        self.stats_table = stats_table

    @abc.abstractmethod
    def write(self, result: Any, name: str) -> RowOutput:
        """Store one row's result under the file stem `name` (runs in the worker)."""

    def path(self, output: str) -> str:
        """Absolute path of an output file name."""
        return os.path.join(self.out_dir, output)

    def verify(self, record: Mapping[str, Any]) -> bool:
        """Whether a manifest record's output is on disk with the recorded digest."""
        output = record.get("output")
        if output is None:
            return record.get("output_digest") is None
        path = self.path(output)
        if not os.path.isfile(path) or os.path.getsize(path) != record.get("output_bytes"):
            return False
        return sha256_file(path) == record.get("output_digest")

    @abc.abstractmethod
    def discard(self, name: str) -> None:
        """Remove a row's output (it failed: an older result must not pass for a new one)."""

    def finalize(self, rows: Sequence[tuple[GeoSlice, Mapping[str, Any]]]) -> list[str]:
        """Write the per-row statistics table from ``(slice, done record)`` pairs.

        **Returns:** the paths written.
        """
        if self.stats_table is None:
            return []
        table, footprints = [], []
        for slice_, rec in rows:
            footprints.append(_footprint(slice_))
            table.append(
                {
                    "id": rec["row"],
                    "start_datetime": pd.Timestamp(slice_.time[0]) if slice_.time else pd.NaT,
                    "end_datetime": pd.Timestamp(slice_.time[1]) if slice_.time else pd.NaT,
                    "output": rec.get("output"),
                    "output_digest": rec.get("output_digest"),
                    "input_digest": rec.get("input_digest"),
                    "pipeline_digest": rec.get("pipeline_digest"),
                    **{k: v for k, v in (rec.get("stats") or {}).items()},
                }
            )
        columns = ["id", "start_datetime", "end_datetime", "output", "output_digest"]
        frame = gpd.GeoDataFrame(
            pd.DataFrame(table) if table else pd.DataFrame(columns=columns),
            geometry=gpd.GeoSeries(footprints, crs="EPSG:4326"),
        )
        path = self.path(self.stats_table)
        atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
        return [path]


class CogWriter(Writer):
    """One Cloud-Optimised GeoTIFF per row, ``{out_dir}/{name}.tif``, plus the stats table.

    **Arguments:**

    - `out_dir`, `stats_table`: as in :class:`Writer` (default table ``stats.parquet``).
    - `**cog_options`: keywords of :func:`georax.io.write_cog` (``compress``, ``blocksize``,
      ``overview_resampling``...).
    """

    kind = "cog"

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        *,
        stats_table: str | None = "stats.parquet",
        **cog_options: Any,
    ) -> None:
        super().__init__(out_dir, stats_table=stats_table)
        self.cog_options = dict(cog_options)

    def write(self, result: Any, name: str) -> RowOutput:
        gt = require_geotensor(result, "CogWriter")
        stats = row_stats(gt)
        output = f"{name}.tif"
        path = self.path(output)
        write_cog(gt, path, **self.cog_options)
        return RowOutput(output, sha256_file(path), os.path.getsize(path), stats)

    def discard(self, name: str) -> None:
        path = self.path(f"{name}.tif")
        if os.path.isfile(path):
            os.remove(path)


class StatsWriter(Writer):
    """No rasters: per-row statistics only, gathered into a GeoParquet table at the end.

    **Arguments:** as :class:`Writer` (default table ``stats.parquet``).
    """

    kind = "stats"

    def __init__(
        self, out_dir: str | os.PathLike[str], *, stats_table: str = "stats.parquet"
    ) -> None:
        if stats_table is None:
            raise RunError("StatsWriter needs a stats_table file name")
        super().__init__(out_dir, stats_table=stats_table)

    def write(self, result: Any, name: str) -> RowOutput:
        return RowOutput(None, None, None, row_stats(result))

    def discard(self, name: str) -> None:
        return None  # nothing on disk per row
