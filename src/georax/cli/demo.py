"""``georax demo``: the main job on the bundled Sentinel-2-like scene.

cloud mask -> DN to reflectance -> dark-object subtraction -> NDVI -> colormap, as one Graph with
two named outputs (the NDVI field and its RGBA rendering), compiled once by XLA. The scene is
written to and read back from a COG, so the demo exercises the real I/O path; outputs are a COG,
a PNG and the pipeline's YAML in the output folder.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import georax as gx


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo",
        help="run the NDVI pipeline on the bundled sample scene (COG + PNG out)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--size", type=int, default=1024, help="scene height/width in pixels")
    p.add_argument("--seed", type=int, default=0, help="which synthetic world to generate")
    p.add_argument("--out", type=Path, default=Path("georax-out"), help="output folder")
    p.add_argument("--repeats", type=int, default=5, help="timed runs after compilation")
    p.set_defaults(func=run)


def build_pipeline() -> gx.Graph:
    """The demo pipeline: one Graph, outputs ``ndvi`` (float32) and ``rgba`` (uint8)."""
    from georax.geo.cloud import MaskClouds
    from georax.geo.indices import NDVI
    from georax.geo.radiometry import DarkObjectSubtraction, DNToReflectance
    from georax.geo.viz import Colormap

    scene = gx.Input("scene")
    ndvi = gx.Sequential(
        [
            MaskClouds.sentinel2(),  # QA60 bits 10/11 -> NaN, QA band dropped
            DNToReflectance(),  # DN / 10000
            DarkObjectSubtraction(percentile=1.0, clip_negative=True),
            NDVI(red_band=2, nir_band=3),  # B04, B08
        ]
    )(scene)
    rgba = Colormap(name="RdYlGn", vmin=-1.0, vmax=1.0)(ndvi)
    return gx.Graph(inputs={"scene": scene}, outputs={"ndvi": ndvi, "rgba": rgba})


def run(args: argparse.Namespace) -> int:
    """Generate the scene, run the compiled pipeline, write COG + PNG + YAML, print a report."""
    from georax.core.hashing import config_hash
    from georax.core.yaml_io import dumps_yaml
    from georax.data import sentinel2_l1c
    from georax.geo.viz import write_png
    from georax.io import read, write_cog

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    scene_path = write_cog(sentinel2_l1c(args.size, seed=args.seed), out / "scene_s2_l1c.tif")
    scene = read(scene_path)
    t_io = time.perf_counter() - t0
    print(f"scene   {scene_path}: {scene.shape} {scene.dtype}, {scene.crs}")
    print(f"        bands {scene.band_names}")

    pipe = build_pipeline()
    print(pipe.summary(scene=scene))
    digest = config_hash(pipe)
    (out / "pipeline.yaml").write_text(dumps_yaml(pipe))
    print(f"config hash  {digest}")

    t0 = time.perf_counter()
    compiled = jax.jit(pipe).lower(scene=scene).compile()
    t_compile = time.perf_counter() - t0
    times = []
    for _ in range(max(1, args.repeats)):
        t0 = time.perf_counter()
        result = jax.block_until_ready(compiled(scene=scene))
        times.append(time.perf_counter() - t0)

    ndvi, rgba = result["ndvi"], result["rgba"]
    ndvi_path = write_cog(ndvi, out / "ndvi.tif", fill_value=float("nan"), band_names=["NDVI"])
    png_path = write_png(out / "ndvi.png", rgba)
    valid = np.isfinite(np.asarray(ndvi.values))
    mean = float(jnp.nanmean(ndvi.values))
    print(f"cloud-masked {1 - valid.mean():.1%} of pixels; NDVI mean {mean:.3f}")
    print(f"wrote   {ndvi_path}\n        {png_path}\n        {out / 'pipeline.yaml'}")
    print(
        f"timings write+read scene {t_io * 1e3:.0f} ms, compile {t_compile * 1e3:.0f} ms, "
        f"run median {statistics.median(times) * 1e3:.1f} ms over {len(times)} runs "
        f"({scene.shape[-1]}x{scene.shape[-2]} px, {jax.default_backend()})"
    )
    return 0
