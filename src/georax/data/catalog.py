"""A demo catalog: N small Sentinel-2-like COG scenes and a table describing them.

For the examples, tests and benchmarks of :mod:`georax.catalog` and :mod:`georax.run` (seed cases
2 and 12): :func:`write_demo_catalog` writes ``scenes/scene_000.tif ...`` (synthetic L1C scenes
from :func:`~georax.data.sentinel2_l1c`, each its own seed, laid side by side on a grid in UTM
30N, one day apart) and a catalog in the format asked for -- GeoParquet, CSV, a STAC
ItemCollection, or none (the folder of COGs is the catalog). Optionally a few scenes are
corrupted *after* the catalog is written (truncated to half their bytes: the header still opens,
the pixels do not), which is what a flaky upload looks like to a nightly job.

The table uses STAC column names (``id``, ``uri``, ``datetime``, ``proj:code``, ``proj:bbox``,
``proj:shape``, ``bands``) plus two properties, ``platform`` and ``cloud_cover`` (the fraction
of pixels with a QA60 cloud bit).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from rasterio.warp import transform_bounds

from georax.core.errors import ConfigError
from georax.data.synthetic import (
    DEFAULT_CRS,
    DEFAULT_ORIGIN,
    QA60_CIRRUS_BIT,
    QA60_OPAQUE_BIT,
    S2_BANDS,
    sentinel2_l1c,
)
from georax.io import write_cog

__all__ = ["CATALOG_FORMATS", "DemoCatalog", "write_demo_catalog"]

#: The catalog formats :func:`write_demo_catalog` can write.
CATALOG_FORMATS = ("parquet", "csv", "stac", "folder")
_FILES = {"parquet": "catalog.parquet", "csv": "catalog.csv", "stac": "catalog.json"}
_RESOLUTION = 10.0


class DemoCatalog(NamedTuple):
    """What :func:`write_demo_catalog` wrote.

    Attributes: ``root`` (the folder), ``catalog`` (the path to give
    :func:`georax.catalog.open_catalog`), ``scenes`` (every scene's path, in row order),
    ``corrupt`` (the paths of the corrupted scenes) and ``ids`` (row ids, in order).
    """

    root: str
    catalog: str
    scenes: tuple[str, ...]
    corrupt: tuple[str, ...]
    ids: tuple[str, ...]


def _check(field: str, value: Any, ok: bool, problem: str) -> None:
    if not ok:
        raise ConfigError("write_demo_catalog", field, value, problem)


def _corrupt_indices(corrupt: int | Sequence[int], n: int) -> list[int]:
    if isinstance(corrupt, int) and not isinstance(corrupt, bool):
        _check("corrupt", corrupt, 0 <= corrupt < n, f"must be in [0, n) with n={n}")
        # spread over the catalog, never the first row (examples show a good row first)
        return sorted({min(n - 1, round((j + 1) * n / (corrupt + 1))) for j in range(corrupt)})
    indices = sorted({int(i) for i in corrupt})
    _check("corrupt", corrupt, all(0 <= i < n for i in indices), f"indices must be in [0, {n})")
    return indices


def _atomic_write(path: str, write: Any) -> None:
    """Call ``write(tmp)`` then move ``tmp`` onto ``path`` (no half-written catalog)."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def _stac_items(rows: list[dict[str, Any]]) -> dict[str, Any]:
    import pystac  # catalog formats are imported only when a demo catalog is written
    import shapely

    items = []
    for r in rows:
        item = pystac.Item(
            id=r["id"],
            geometry=shapely.geometry.mapping(r["geometry"]),
            bbox=list(r["geometry"].bounds),
            datetime=dt.datetime.fromisoformat(r["datetime"]),
            properties={
                "platform": r["platform"],
                "eo:cloud_cover": 100 * r["cloud_cover"],
                "cloud_cover": r["cloud_cover"],
                "proj:code": r["proj:code"],
                "proj:bbox": list(r["proj:bbox"]),
                "proj:shape": list(r["proj:shape"]),
            },
        )
        asset = pystac.Asset(r["uri"], media_type=pystac.MediaType.COG, roles=["data"])
        asset.extra_fields["bands"] = [{"name": b} for b in r["bands"]]
        item.add_asset("data", asset)
        items.append(item.to_dict(include_self_link=False))
    return {"type": "FeatureCollection", "features": items}


def write_demo_catalog(
    directory: str | os.PathLike[str],
    n: int = 8,
    *,
    size: int | Sequence[int] = 64,
    bands: Sequence[str] = S2_BANDS,
    corrupt: int | Sequence[int] = 0,
    format: str = "parquet",
    seed: int = 0,
    start: str = "2024-06-01",
    cloud_cover: float = 0.15,
) -> DemoCatalog:
    """Write `n` synthetic COG scenes and a catalog of them into `directory`.

    **Arguments:**

    - `directory`: created if missing; scenes go to ``scenes/``.
    - `n`: number of scenes (rows).
    - `size`: pixels per side, or a sequence of sizes used in turn (mixed shapes, e.g. to
      exercise one compilation per shape).
    - `bands`: which of :data:`~georax.data.S2_BANDS` to write, in order (keep ``"QA60"`` last
      for the cloud-mask operators' default ``qa_band=-1``).
    - `corrupt`: how many scenes to corrupt (spread over the catalog, never the first), or
      their row indices.
    - `format`: one of :data:`CATALOG_FORMATS` (``"folder"`` writes no table: the folder of
      scenes is the catalog).
    - `seed`: scene ``i`` uses seed ``seed + i``.
    - `start`: the first scene's date; scene ``i`` is ``i`` days later (10:30 UTC).
    - `cloud_cover`: passed to :func:`~georax.data.sentinel2_l1c`.

    **Returns:** a :class:`DemoCatalog`.

    **Raises:** :class:`~georax.errors.ConfigError` naming the bad argument.
    """
    sizes, names, t0, bad = _checked_arguments(n, size, bands, corrupt, format, start)
    root = os.path.abspath(os.fspath(directory))
    scene_dir = os.path.join(root, "scenes")
    os.makedirs(scene_dir, exist_ok=True)
    columns = math.ceil(math.sqrt(n))
    step = max(sizes) * _RESOLUTION
    rows: list[dict[str, Any]] = []
    scenes: list[str] = []
    for i in range(n):
        origin = (
            DEFAULT_ORIGIN[0] + (i % columns) * step,
            DEFAULT_ORIGIN[1] - (i // columns) * step,
        )
        path, row = _write_scene(
            scene_dir, i, sizes[i % len(sizes)], names, origin, seed + i, cloud_cover, t0
        )
        scenes.append(path)
        rows.append(row)
    catalog = scene_dir if format == "folder" else _write_table(root, format, rows)

    for i in bad:  # after the catalog: its grid records stay right, the pixels are gone
        with open(scenes[i], "r+b") as f:
            f.truncate(os.path.getsize(scenes[i]) // 2)
    return DemoCatalog(
        root=root,
        catalog=catalog,
        scenes=tuple(scenes),
        corrupt=tuple(scenes[i] for i in bad),
        ids=tuple(r["id"] for r in rows),
    )


def _checked_arguments(
    n: int,
    size: int | Sequence[int],
    bands: Sequence[str],
    corrupt: int | Sequence[int],
    format: str,
    start: str,
) -> tuple[list[int], tuple[str, ...], dt.datetime, list[int]]:
    """:func:`write_demo_catalog`'s arguments checked: sizes, band names, first time, bad rows."""
    _check("n", n, isinstance(n, int) and not isinstance(n, bool) and n >= 1, "must be an int >= 1")
    sizes = [size] if isinstance(size, int) else list(size)
    _check(
        "size",
        size,
        bool(sizes) and all(isinstance(s, int) and 8 <= s <= 8192 for s in sizes),
        "must be an int in [8, 8192] or a sequence of such",
    )
    names = tuple(bands)
    _check(
        "bands",
        bands,
        bool(names) and set(names) <= set(S2_BANDS) and len(set(names)) == len(names),
        f"must be distinct names from {S2_BANDS}",
    )
    _check("format", format, format in CATALOG_FORMATS, f"must be one of {CATALOG_FORMATS}")
    try:
        t0 = dt.datetime.fromisoformat(start).replace(hour=10, minute=30, tzinfo=None)
    except ValueError:
        raise ConfigError("write_demo_catalog", "start", start, "is not an ISO date") from None
    return sizes, names, t0, _corrupt_indices(corrupt, n)


def _write_scene(
    scene_dir: str,
    i: int,
    size: int,
    names: tuple[str, ...],
    origin: tuple[float, float],
    seed: int,
    cloud_cover: float,
    t0: dt.datetime,
) -> tuple[str, dict[str, Any]]:
    """Write scene ``i`` as a COG; return its path and its catalog row."""
    # Shapely is imported here, not at module level: `import georax` stays fast.
    import shapely

    full = sentinel2_l1c(size, seed=seed, origin=origin, cloud_cover=cloud_cover)
    qa = np.asarray(full.values)[S2_BANDS.index("QA60")]
    cloud_bits = (1 << QA60_OPAQUE_BIT) | (1 << QA60_CIRRUS_BIT)
    gt = full[list(names)]
    name = f"scene_{i:03d}"
    path = write_cog(gt, os.path.join(scene_dir, f"{name}.tif"), blocksize=256)
    left, bottom, right, top = gt.bounds
    w, so, e, no = transform_bounds(DEFAULT_CRS, "EPSG:4326", left, bottom, right, top)
    row = {
        "id": name,
        "uri": f"scenes/{name}.tif",
        "geometry": shapely.box(w, so, e, no),
        "datetime": (t0 + dt.timedelta(days=i)).isoformat() + "Z",
        "platform": "sentinel-2a" if i % 2 == 0 else "sentinel-2b",
        "cloud_cover": round(float(np.mean((qa & cloud_bits) != 0)), 6),
        "proj:code": DEFAULT_CRS,
        "proj:bbox": [float(v) for v in (left, bottom, right, top)],
        "proj:shape": [size, size],
        "bands": list(names),
    }
    return path, row


def _write_table(root: str, format: str, rows: list[dict[str, Any]]) -> str:
    """Write the catalog table of ``rows`` in ``format`` (atomically); return its path."""
    # Table/STAC libraries are imported here, not at module level: `import georax` stays fast.
    import geopandas as gpd
    import pandas as pd

    catalog = os.path.join(root, _FILES[format])
    if format == "parquet":
        frame = gpd.GeoDataFrame(pd.DataFrame(rows), geometry="geometry", crs="EPSG:4326")
        _atomic_write(catalog, lambda tmp: frame.to_parquet(tmp, index=False))
    elif format == "csv":
        table = pd.DataFrame(
            [
                {
                    **r,
                    "geometry": r["geometry"].wkt,
                    "proj:bbox": json.dumps(r["proj:bbox"]),
                    "proj:shape": json.dumps(r["proj:shape"]),
                    "bands": json.dumps(r["bands"]),
                }
                for r in rows
            ]
        )
        _atomic_write(catalog, lambda tmp: table.to_csv(tmp, index=False))
    else:
        text = json.dumps(_stac_items(rows), indent=1)

        def write_json(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)

        _atomic_write(catalog, write_json)
    return catalog
