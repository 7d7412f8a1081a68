"""Seed case 8 -- data validation / QC as operators, on the bundled Sentinel-2 sample scene.

The same pipeline that does the work runs the assertions: pass-through QC operators dropped into
the chain, compiled with it by ``jax.jit``. Where a failure stops the run (``"raise"``), only
warns (``"warn"``) or is skipped (``"off"``) is per-deployment policy, injected into the YAML at
load time with a ``${qc_policy}`` variable.

Run: ``python examples/08_qc_operators.py``
"""

from __future__ import annotations

import tempfile
import warnings

import jax
import jax.numpy as jnp

import georax as gx
import georax.data as gd
import georax.io as gio
from georax.array import qc
from georax.core.yaml_io import dumps_yaml, loads_yaml
from georax.geo import qa
from georax.geo.cloud import MaskClouds
from georax.geo.indices import NDVI
from georax.geo.radiometry import DNToReflectance

SPECTRAL = ("B02", "B03", "B04", "B08", "B11", "B12")


def qc_stack(policy: str = "raise") -> gx.Sequential:
    """The checkpoint reused along the chain (the seeds' three QC tiers)."""
    return gx.Sequential(
        [
            # carrier-agnostic (static: checked while tracing)
            qc.AssertShape((-1, -1, -1), on_fail=policy),
            qc.AssertHasAttribute("crs", on_fail=policy),
            # geo-specific (GeoTensor metadata)
            qa.AssertCRSEquals("EPSG:32630", on_fail=policy),
            qa.AssertResolutionWithin((9.5, 10.5), on_fail=policy),
            qa.AssertSchema(band_names=SPECTRAL, on_fail=policy),
            # array reductions (run inside the compiled program, report through the host)
            qc.AssertValidFraction(min_valid=0.5, on_fail=policy),
            qc.AssertValueRange(vmin=0, vmax=10_000, on_fail="warn"),
        ]
    )


def etl(policy: str = "raise") -> gx.Sequential:
    checkpoint = qc_stack(policy)
    return gx.Sequential(
        [
            MaskClouds(qa_band=-1, bits=[10, 11]),  # QA60 opaque + cirrus -> NaN, QA dropped
            checkpoint,  # halts on the first hard failure
            DNToReflectance(),  # DN / 10000
            checkpoint,  # post-correction sweep
            NDVI(red_band=2, nir_band=3),
        ]
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # The substrate: the sample scene as a COG, read back like any other GeoTIFF.
        path = gio.write_cog(gd.sentinel2_l1c(512, seed=0), f"{tmp}/s2_l1c.tif")
        scene = gio.read(path)
    print(
        f"scene {scene.shape} {scene.dtype} {scene.crs} res={scene.resolution}\n"
        f"bands={scene.band_names}"
    )

    pipeline = jax.jit(etl("raise"))

    print("\n1) good scene -- silent:")
    ndvi = jax.block_until_ready(pipeline(scene))
    print(
        f"   NDVI {ndvi.shape}, mean {float(jnp.nanmean(ndvi.values)):.3f}, transform kept: "
        f"{ndvi.transform == scene.transform}"
    )

    print("\n2) out-of-range DNs (a saturated stripe) -- warnings fire from compiled code:")
    stripe = scene.replace(values=scene.values.at[:6, 100:104, :].set(60_000))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        jax.block_until_ready(pipeline(stripe))
        jax.effects_barrier()
    for w in caught:
        print(f"   WARNING ({w.category.__name__}): {w.message}")

    print("\n3) 80 % cloud cover -- AssertValidFraction halts the run:")
    cloudy = gd.sentinel2_l1c(512, seed=0, cloud_cover=0.8)
    try:
        with qc.typed_qc_errors():
            jax.block_until_ready(pipeline(cloudy))
    except qc.QCError as e:
        print(f"   caught QCError from compiled code: {e}  (measured={e.measured})")

    print("\n4) wrong CRS -- static checks fail while tracing, before any pixel is touched:")
    try:
        pipeline(scene.replace(crs="EPSG:32631"))
    except qc.QCError as e:
        print(f"   caught: {e}")

    print("\n5) the policy is deployment config: one YAML, ${qc_policy} filled at load time:")
    template = dumps_yaml(etl("raise")).replace("on_fail: raise", "on_fail: '${qc_policy}'")
    notebook = loads_yaml(template, variables={"qc_policy": "warn"})
    production = loads_yaml(template, variables={"qc_policy": "raise"})
    print(
        f"   loaded production pipeline equals the one built in code: {production == etl('raise')}"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        jax.block_until_ready(jax.jit(notebook)(cloudy))
        jax.effects_barrier()
    print(f"   notebook policy on the cloudy scene: ran to the end, {len(caught)} warning(s):")
    for w in caught[:2]:
        print(f"     {w.message}")


if __name__ == "__main__":
    main()
