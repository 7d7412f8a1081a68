"""Shared set-up of the serve tests: a data root with COGs, and services files that use it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

import georax as gx
import georax.data as gd

SIZE = 128
NDVI = {
    "_target_": "georax.Sequential",
    "operators": [
        {"_target_": "georax.geo.radiometry.DNToReflectance"},
        {"_target_": "georax.geo.indices.NDVI", "red_band": 2, "nir_band": 3},
    ],
}
COLOR_NDVI = {
    "_target_": "georax.Sequential",
    "operators": [
        *NDVI["operators"],
        {"_target_": "georax.geo.viz.Colormap", "name": "viridis", "vmin": -1.0, "vmax": 1.0},
    ],
}
SAFE_YAML = """
_target_: georax.Sequential
operators:
  - {_target_: georax.geo.radiometry.DNToReflectance}
  - {_target_: georax.geo.indices.NDVI, red_band: 2, nir_band: 3}
"""


def write_data(root: Path, size: int = SIZE) -> dict[str, Path]:
    """COGs of the Sentinel-2-like scene under `root`/data: two worlds on two grids."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    other = gd.sentinel2_l1c(size, seed=1, origin=(420_000.0, 4_610_000.0))
    return {
        "s2": Path(gx.io.write_cog(gd.sentinel2_l1c(size, seed=0), data / "s2.tif")),
        "s2b": Path(gx.io.write_cog(other, data / "s2b.tif")),
    }


def services(root: Path, size: int = SIZE, **server: Any) -> dict[str, Any]:
    """A services mapping: pipeline ``ndvi``, layer ``ndvi`` (viridis), data root ``scenes``."""
    scene = gd.sentinel2_l1c(8)
    spec = {
        "server": {
            "output_root": str(root / "out"),
            "data_roots": {"scenes": str(root / "data")},
            "memory_budget": "256MiB",
            "flop_budget": 1e9,
            "pricing_seconds": 300,
            **server,
        },
        "pipelines": {
            "ndvi": {
                "config": copy.deepcopy(NDVI),
                "inputs": [
                    {
                        "shape": [7, size, size],
                        "fill_value": 0,
                        "band_names": list(scene.band_names),
                    }
                ],
            }
        },
        "layers": {
            "ndvi": {"source": "scenes/s2.tif", "pipeline": {"config": copy.deepcopy(COLOR_NDVI)}}
        },
        "base": str(root),
    }
    return spec


def write_services(root: Path, spec: dict[str, Any]) -> Path:
    """Write `spec` as ``services.yaml`` in `root` (``base`` dropped: the file's folder)."""
    spec = {k: v for k, v in spec.items() if k != "base"}
    path = root / "services.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
