"""Seed case 5 -- one HTTP service hosting several named pipelines (FastAPI, `georax serve`).

A platform team registers pipelines in a services file; an operations team rolls out a new one by
adding an entry and restarting. This example writes such a file (three pipelines: two methane
band-ratio versions and an NDVI ETL), a Sentinel-2-like scene as a COG under the server's data
root, then starts the server exactly as a user would -- ``georax serve services.yaml --port N`` in
its own process -- and talks to it over HTTP:

- ``GET /pipelines``: name -> config hash (the registry describes itself);
- ``GET /pipelines/{name}``: the config, so clients need no out-of-band docs;
- ``POST /process/{name}`` with a GeoTIFF upload -> the output COG (hashes in the headers);
- ``POST /process/{name}?stats=true`` with ``{"path": ..., "bounds": ...}`` naming a file under
  the data root -> JSON statistics (and the COG written under the output root);
- ``GET /metrics``: no pipeline was compiled after start-up.

Every pipeline was loaded through the sandbox, priced against the memory and FLOP budget for its
declared input and compiled before the server said it was up.

Run: ``python examples/05_fastapi_multi_pipeline.py [--out-dir DIR]`` (default
``georax-out/05``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import httpx
import numpy as np
import yaml

import georax as gx
import georax.data as gd
from georax.serve import free_port, server_process

SCENE = 256


def methane(air_mass_factor: float, absorption: list[float]) -> dict:
    """A band-ratio methane pipeline: reflectance, then the B11/B12 enhancement (ppm*m).

    (No cloud mask in front: the single-pass method normalises by a scene-wide sum, which a
    masked -- NaN -- pixel would turn into NaN everywhere.)
    """
    return {
        "_target_": "georax.Sequential",
        "operators": [
            {"_target_": "georax.geo.radiometry.DNToReflectance"},
            {
                "_target_": "georax.geo.retrieval.operators.BandRatio",
                "absorption": absorption,
                "air_mass_factor": air_mass_factor,
                "swir1_band": 4,  # B11
                "swir2_band": 5,  # B12
            },
        ],
    }


NDVI_ETL = {
    "_target_": "georax.Sequential",
    "operators": [
        {"_target_": "georax.geo.cloud.MaskClouds", "qa_band": -1, "bits": [10, 11]},
        {"_target_": "georax.geo.radiometry.DNToReflectance"},
        {"_target_": "georax.geo.indices.NDVI", "red_band": 2, "nir_band": 3},
    ],
}


def write_services(out: Path) -> Path:
    """The data (a COG), and the services file naming three pipelines."""
    scene = gd.sentinel2_l1c(SCENE, seed=0)
    (out / "data").mkdir(parents=True, exist_ok=True)
    gx.io.write_cog(scene, out / "data" / "s2_l1c.tif")
    k = [float(v) for v in gd.plume_scene(8, sensor="sentinel2").absorption]
    inputs = [{"shape": [7, SCENE, SCENE], "fill_value": 0, "band_names": list(scene.band_names)}]
    services = {
        "server": {
            "output_root": "outputs",
            "data_roots": {"scenes": "data"},
            "memory_budget": "256MiB",
            "flop_budget": 1e9,
            "pricing_seconds": 300,
        },
        "pipelines": {
            "methane_v3": {"config": methane(2.0, k), "inputs": inputs},
            "methane_v4": {"config": methane(2.3, k), "inputs": inputs},
            "ndvi_etl": {"config": NDVI_ETL, "inputs": inputs},
        },
    }
    path = out / "services.yaml"
    path.write_text(yaml.safe_dump(services, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("georax-out/05"))
    args = parser.parse_args()
    out = args.out_dir.resolve()
    services = write_services(out)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    print(f"starting: georax serve {services} --port {port}")
    command = ["-m", "georax.cli", "serve", str(services), "--port", str(port)]
    with (
        server_process(command, f"{base}/health", log=out / "server.log"),
        httpx.Client(base_url=base, timeout=120) as client,
    ):
        registry = client.get("/pipelines").json()
        print("\nGET /pipelines")
        for name, digest in registry.items():
            print(f"  {name:12s} config_hash={digest[:16]}")

        described = client.get("/pipelines/ndvi_etl").json()
        print("\nGET /pipelines/ndvi_etl ->", json.dumps(described["config"])[:120], "...")

        compiled_at_start = _compilations(client)
        scene_bytes = (out / "data" / "s2_l1c.tif").read_bytes()
        for name in registry:
            r = client.post(f"/process/{name}", files={"file": ("scene.tif", scene_bytes)})
            r.raise_for_status()
            target = out / f"{name}.tif"
            target.write_bytes(r.content)
            result = gx.io.read(target)
            print(
                f"\nPOST /process/{name} (upload) -> {r.headers['content-type']}, "
                f"{len(r.content)} bytes, config_hash={r.headers['x-georax-config-hash'][:16]}"
                f"\n  saved {target.name}: {result.shape} {result.dtype}, "
                f"nan-mean {float(np.nanmean(np.asarray(result.values))):.4g}"
            )
            assert r.headers["x-georax-config-hash"] == registry[name]

        compiled_after_uploads = _compilations(client)
        bounds = _inner_bounds(out / "data" / "s2_l1c.tif")
        r = client.post(
            "/process/ndvi_etl?stats=true",
            json={"path": "scenes/s2_l1c.tif", "bounds": bounds},
        )
        r.raise_for_status()
        stats = r.json()
        print(
            f"\nPOST /process/ndvi_etl?stats=true (path + bounds) -> output {stats['output']}, "
            f"shape {stats['shape']}\n  stats: {stats['stats'][0]}"
        )
        compiled_after = _compilations(client)
        print(
            f"\ncompilations by the uploads: {compiled_after_uploads - compiled_at_start:g} "
            "(their shape was declared: compiled before the server said it was up); by the "
            f"bounds request: {compiled_after - compiled_after_uploads:g} (a new 128 x 128 "
            "shape: priced, then compiled once)"
        )
    print(f"\noutputs in {out}")


def _compilations(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("georax_compilations_total{")
    )


def _inner_bounds(path: Path) -> list[float]:
    """The middle half of the scene, in its CRS."""
    left, bottom, right, top = gx.io.info(path).bounds
    dx, dy = (right - left) / 4, (top - bottom) / 4
    return [left + dx, bottom + dy, right - dx, top - dy]


if __name__ == "__main__":
    main()
