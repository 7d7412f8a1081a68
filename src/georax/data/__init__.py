"""georax.data: deterministic synthetic sample scenes shipped with the package.

Generated with NumPy from a seed (no data files): a Sentinel-2-like L1C scene with QA60 cloud
bits, a Sentinel-1-like VV/VH scene and a DEM of the same synthetic world on different grids
(:mod:`georax.data.synthetic`, with the recipe and the QA60 semantics), and methane plume scenes
with a known enhancement map on a documented synthetic CH4 spectrum (:mod:`georax.data.plume`).
"""

from georax.data.catalog import DemoCatalog, write_demo_catalog
from georax.data.plume import PlumeScene, SpectralLayout, plume_scene
from georax.data.synthetic import (
    DEFAULT_CRS,
    DEFAULT_ORIGIN,
    LANDCOVER_CLASSES,
    QA60_CIRRUS_BIT,
    QA60_OPAQUE_BIT,
    S1_BANDS,
    S1_SIGMA0,
    S2_BANDS,
    S2_REFLECTANCE,
    S2Truth,
    dem,
    fusion_scenes,
    landcover,
    sentinel1_grd,
    sentinel2_l1c,
    sentinel2_truth,
    write_sample_cogs,
)

__all__ = [
    "PlumeScene",
    "SpectralLayout",
    "DEFAULT_CRS",
    "DEFAULT_ORIGIN",
    "LANDCOVER_CLASSES",
    "QA60_CIRRUS_BIT",
    "QA60_OPAQUE_BIT",
    "S1_BANDS",
    "S1_SIGMA0",
    "S2_BANDS",
    "S2_REFLECTANCE",
    "DemoCatalog",
    "S2Truth",
    "dem",
    "fusion_scenes",
    "landcover",
    "plume_scene",
    "sentinel1_grd",
    "sentinel2_l1c",
    "sentinel2_truth",
    "write_demo_catalog",
    "write_sample_cogs",
]
