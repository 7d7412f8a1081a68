"""Seed case 7 -- a tile server: z/x/y -> PNG through a compiled pipeline, with a map page.

Writes a Sentinel-2-like scene as a COG (with overviews), a services file with two tile layers
(NDVI through a colormap, and a true-colour composite), starts ``georax serve`` in its own process
as a user would, then acts like a slippy map: reads the layer's TileJSON, fetches every tile of
one zoom level that covers the data (concurrently), checks the cache (a second request for a
tile is served from memory; a request with its ETag gets 304 Not Modified), and stitches the
tiles into a mosaic PNG. The map page is at ``/map?layer=ndvi`` while the server runs.

Each layer's pipeline was compiled once, for a ``float32 (band, 256, 256)`` tile, when the server
started; no tile compiles anything.

Run: ``python examples/07_tile_server.py [--out-dir DIR] [--zoom Z]`` (default
``georax-out/07``; zoom: the layer's TileJSON ``center`` zoom).
"""

from __future__ import annotations

import argparse
import asyncio
import io
from pathlib import Path

import httpx
import morecantile
import numpy as np
import yaml
from PIL import Image

import georax as gx
import georax.data as gd
from georax.serve import free_port, server_process

TMS = morecantile.tms.get("WebMercatorQuad")

LAYERS = {
    "ndvi": {
        "source": "scenes/s2_l1c.tif",
        "title": "NDVI (RdYlGn, -1..1)",
        "pipeline": {
            "config": {
                "_target_": "georax.Sequential",
                "operators": [
                    {"_target_": "georax.geo.cloud.MaskClouds", "qa_band": -1, "bits": [10, 11]},
                    {"_target_": "georax.geo.radiometry.DNToReflectance"},
                    {"_target_": "georax.geo.indices.NDVI", "red_band": 2, "nir_band": 3},
                    {
                        "_target_": "georax.geo.viz.Colormap",
                        "name": "RdYlGn",
                        "vmin": -1.0,
                        "vmax": 1.0,
                    },
                ],
            }
        },
    },
    "true_color": {
        "source": "scenes/s2_l1c.tif",
        "bands": [2, 1, 0],  # B04, B03, B02
        "title": "true colour",
        "pipeline": {
            "config": {
                "_target_": "georax.Sequential",
                "operators": [
                    {"_target_": "georax.geo.radiometry.DNToReflectance"},
                    {
                        "_target_": "georax.geo.viz.TrueColor",
                        "rgb_bands": [0, 1, 2],
                        "vmin": 0.0,
                        "vmax": 0.3,
                    },
                ],
            }
        },
    },
}


def write_services(out: Path, size: int) -> Path:
    (out / "data").mkdir(parents=True, exist_ok=True)
    gx.io.write_cog(gd.sentinel2_l1c(size, seed=0), out / "data" / "s2_l1c.tif", blocksize=256)
    services = {
        "server": {
            "output_root": "outputs",
            "data_roots": {"scenes": "data"},
            "pricing_seconds": 300,
        },
        "layers": LAYERS,
    }
    path = out / "services.yaml"
    path.write_text(yaml.safe_dump(services, sort_keys=False))
    return path


async def fetch_level(base: str, layer: str, tiles: list[morecantile.Tile]) -> dict:
    """Fetch tiles concurrently, as a browser does; return {tile: (png bytes, etag)}."""
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:

        async def one(t: morecantile.Tile) -> tuple[bytes, str]:
            r = await client.get(f"/tiles/{layer}/{t.z}/{t.x}/{t.y}.png")
            r.raise_for_status()
            return r.content, r.headers["etag"]

        results = await asyncio.gather(*(one(t) for t in tiles))
    return dict(zip(tiles, results, strict=True))


def mosaic(tiles: dict) -> Image.Image:
    xs = sorted({t.x for t in tiles})
    ys = sorted({t.y for t in tiles})
    image = Image.new("RGBA", (256 * len(xs), 256 * len(ys)), (0, 0, 0, 0))
    for t, (png, _) in tiles.items():
        image.paste(Image.open(io.BytesIO(png)), (256 * xs.index(t.x), 256 * ys.index(t.y)))
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("georax-out/07"))
    parser.add_argument("--zoom", type=int, default=None)
    parser.add_argument("--size", type=int, default=1024, help="scene size in pixels")
    args = parser.parse_args()
    out = args.out_dir.resolve()
    services = write_services(out, args.size)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = ["-m", "georax.cli", "serve", str(services), "--port", str(port)]
    print(f"starting: georax serve {services} --port {port}")
    with server_process(command, f"{base}/health", log=out / "server.log"):
        for layer in LAYERS:
            tj = httpx.get(f"{base}/tiles/{layer}/tilejson.json", timeout=60).json()
            zoom = args.zoom if args.zoom is not None else int(tj["center"][2])
            tiles = list(TMS.tiles(*tj["bounds"], zooms=[zoom]))
            print(
                f"\n{layer}: TileJSON zooms {tj['minzoom']}..{tj['maxzoom']}, bounds "
                f"{[round(b, 4) for b in tj['bounds']]}; fetching {len(tiles)} tiles at z={zoom}"
            )
            fetched = asyncio.run(fetch_level(base, layer, tiles))
            image = mosaic(fetched)
            target = out / f"{layer}_z{zoom}.png"
            image.save(target)
            alpha = np.asarray(image)[..., 3]
            print(
                f"  mosaic {image.size[0]} x {image.size[1]} saved to {target.name}; "
                f"{100 * float(np.mean(alpha > 0)):.0f}% of its pixels hold data"
            )
            first = tiles[0]
            png, etag = fetched[first]
            url = f"{base}/tiles/{layer}/{first.z}/{first.x}/{first.y}.png"
            again = httpx.get(url, timeout=60)
            cached = httpx.get(url, headers={"If-None-Match": etag}, timeout=60)
            print(
                f"  again: {again.status_code} (same bytes: {again.content == png}); with "
                f"If-None-Match: {cached.status_code}; Cache-Control: "
                f"{again.headers['cache-control']}"
            )
        metrics = httpx.get(f"{base}/metrics", timeout=60).text
        hits = _metric(metrics, 'georax_tile_cache_total{result="hit"}')
        compiles = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("georax_compilations_total{")
        )
        print(
            f"\ntile cache hits: {hits:g}; compilations in the server's life: {compiles:g} "
            f"(one per layer, at start-up); map page: {base}/map?layer=ndvi"
        )
    print(f"\noutputs in {out}")


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


if __name__ == "__main__":
    main()
