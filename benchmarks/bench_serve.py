"""georax serve vs TiTiler on the same COG, and the cost of /process over a direct call.

Both tile servers run as a user would start them -- their own process, uvicorn, one worker, on
127.0.0.1 -- against the same local COG (a Sentinel-2-like scene with overviews) and render the
same thing: NDVI from bands 3 and 4 (1-based), rescaled from [-1, 1] through viridis, as a
256 x 256 PNG of the WebMercatorQuad matrix set.

- TiTiler: ``titiler.core`` ``TilerFactory`` (``expression=(b4-b3)/(b4+b3)``, ``rescale=-1,1``,
  ``colormap_name=viridis``). It has no cache of its own: every request reads and renders.
- georax cold: ``georax serve`` with ``tile_cache_bytes: 0`` -- every request reads and renders
  (rio-tiler read, the layer's compiled program, PNG encode).
- georax warm: ``georax serve`` with its tile cache, after one pass over the tiles.

Measured on every tile that covers the scene at three zoom levels (the native one, one below,
one above): latency p50/p99 with one client (sequential), and throughput with `--clients`
concurrent clients (async httpx, keep-alive). Ratios are against TiTiler in the same run; the
issue's targets: cold p50 no slower than TiTiler (ratio <= 1), warm throughput >= 10x.

Then ``POST /process/ndvi?stats=true`` (a path under the data root -> COG + JSON statistics) vs
the same work called directly in this process (read, the jitted pipeline, write the COG,
statistics): the p50 difference is the server's overhead (target <= 10 ms).

The overhead is a fixed cost per request, so it is measured on a small scene (`--process-size`)
where the pipeline's own time (and its noise on a shared machine) does not hide it.

Run: ``python benchmarks/bench_serve.py [--size 1024] [--clients 16] [--repeats 3]
[--process-size 256] [--process-n 20]``
(needs the ``serve`` and ``bench`` extras: ``titiler.core``). Every server is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import equinox as eqx
import httpx
import jax
import morecantile
import numpy as np
import yaml
from PIL import Image
from rio_tiler.io import Reader

import georax as gx
import georax.data as gd
from georax.serve import ServerState, free_port, load_services, server_process
from georax.serve.stats import band_stats
from georax.serve.tiles import encode_png

from _util import print_table

TMS = morecantile.tms.get("WebMercatorQuad")
RED, NIR = 2, 3  # 0-based bands of the sample scene (B04, B08)
NDVI = {
    "_target_": "georax.Sequential",
    "operators": [
        {"_target_": "georax.geo.radiometry.DNToReflectance"},
        {"_target_": "georax.geo.indices.NDVI", "red_band": RED, "nir_band": NIR},
    ],
}
# The tile layer reads the two bands only (like TiTiler's expression) and renders NDVI of DN.
LAYER = {
    "_target_": "georax.Sequential",
    "operators": [
        {"_target_": "georax.geo.indices.NDVI", "red_band": 0, "nir_band": 1},
        {"_target_": "georax.geo.viz.Colormap", "name": "viridis", "vmin": -1.0, "vmax": 1.0},
    ],
}
TITILER_QUERY = {
    "expression": f"(b{NIR + 1}-b{RED + 1})/(b{NIR + 1}+b{RED + 1})",
    "rescale": "-1,1",
    "colormap_name": "viridis",
}


def titiler_main(port: int) -> None:
    """Serve a TiTiler app (``TilerFactory`` routes, plus ``/healthz``) on 127.0.0.1:`port`."""
    import uvicorn
    from fastapi import FastAPI
    from titiler.core.factory import TilerFactory

    app = FastAPI()
    app.include_router(TilerFactory().router)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=120)


def write_site(root: Path, size: int, process_size: int) -> tuple[Path, Path, Path]:
    """The scene COG (and a `process_size` one for /process, ``small.tif``) and two services
    files (tile cache off / on); returns their paths."""
    data = root / "data"
    data.mkdir(parents=True)
    scene = gd.sentinel2_l1c(size, seed=0)
    cog = Path(gx.io.write_cog(scene, data / "s2.tif"))
    gx.io.write_cog(gd.sentinel2_l1c(process_size, seed=1), data / "small.tif")
    files = []
    for name, cache in (("cold", 0), ("warm", "512MiB")):
        spec = {
            "server": {
                "output_root": str(root / f"out-{name}"),
                "data_roots": {"scenes": str(data)},
                "tile_cache_bytes": cache,
                "tile_workers": 4,
                "queue_size": 1024,
                "request_timeout": 300,
                "memory_budget": "2GiB",
                "flop_budget": 1e11,
                "pricing_seconds": 300,
            },
            "pipelines": {
                "ndvi": {
                    "config": NDVI,
                    "inputs": [
                        {"shape": [7, n, n], "band_names": list(scene.band_names)}
                        for n in sorted({size, process_size})
                    ],
                }
            },
            "layers": {
                "ndvi": {
                    "source": "scenes/s2.tif",
                    "bands": [RED, NIR],
                    "resampling": "nearest",  # TiTiler's default
                    "pipeline": {"config": LAYER},
                }
            },
        }
        path = root / f"services-{name}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        files.append(path)
    return cog, files[0], files[1]


def tiles_of(base: str, cog: Path) -> list[morecantile.Tile]:
    """Every tile with data at the layer's maxzoom - 1, maxzoom and maxzoom + 1 (TiTiler answers
    404 for a tile outside the data, georax a transparent PNG: those are left out)."""
    tj = httpx.get(f"{base}/tiles/ndvi/tilejson.json", timeout=60).json()
    top = tj["maxzoom"]
    candidates = [t for z in (top - 1, top, top + 1) for t in TMS.tiles(*tj["bounds"], zooms=[z])]
    with Reader(str(cog), tms=TMS) as reader:
        return [t for t in candidates if reader.tile_exists(t.x, t.y, t.z)]


async def _fetch(
    urls: list[str], clients: int, params: dict[str, str] | None = None
) -> tuple[list[float], float]:
    """GET every url with `clients` concurrent clients; (latencies in s, elapsed s)."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for u in urls:
        queue.put_nowait(u)
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                url = queue.get_nowait()
                t0 = time.perf_counter()
                r = await client.get(url, params=params)
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200 or r.headers["content-type"] != "image/png":
                    raise RuntimeError(f"{url}: {r.status_code} {r.text[:300]}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, time.perf_counter() - start


def measure(
    runs: list[tuple[list[str], dict[str, str] | None]], clients: int, repeats: int
) -> list[tuple[float, float, float]]:
    """Per server (its urls and query): (p50 ms, p99 ms) of a sequential pass, and the best of
    `repeats` concurrent passes' throughput (tiles/s).

    The servers take turns -- tile by tile in the sequential pass, pass by pass in the
    concurrent ones -- so load drift on a shared machine hits every server alike.
    """
    latencies: list[list[float]] = [[] for _ in runs]
    for i in range(len(runs[0][0])):
        for (urls, params), lat in zip(runs, latencies, strict=True):
            lat += asyncio.run(_fetch([urls[i]], 1, params))[0]
    rates: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for (urls, params), rate in zip(runs, rates, strict=True):
            rate.append(len(urls) / asyncio.run(_fetch(urls, clients, params))[1])
    out = []
    for lat, rate in zip(latencies, rates, strict=True):
        p50, p99 = np.percentile(np.array(lat) * 1e3, [50, 99])
        out.append((float(p50), float(p99), max(rate)))
    return out


def same_pixels(pairs: list[tuple[str, str]], params: dict[str, str]) -> tuple[float, int, float]:
    """Compare TiTiler's (first, with `params`) and georax's PNG of each tile: (share of pixels
    whose transparency agrees, largest RGBA difference where both are opaque, share opaque)."""

    def rgba(url: str, query: dict[str, str] | None) -> np.ndarray:
        content = httpx.get(url, params=query, timeout=60).content
        return np.asarray(Image.open(io.BytesIO(content)).convert("RGBA")).astype(int)

    agree, worst, opaque = [], 0, []
    for a, b in pairs:
        ta, gb = rgba(a, params), rgba(b, None)
        agree.append(((ta[..., 3] > 0) == (gb[..., 3] > 0)).mean())
        both = (ta[..., 3] == 255) & (gb[..., 3] == 255)
        opaque.append(both.mean())
        if both.any():
            worst = max(worst, int(np.abs(ta - gb)[both].max()))
    return float(np.mean(agree)), worst, float(np.mean(opaque))


def render_breakdown(
    services_yaml: Path, root: Path, tiles: list[morecantile.Tile]
) -> tuple[float, float, float]:
    """Median ms per cold tile of its three steps, in this process with the layer the server
    builds: the rio-tiler read, the layer's compiled program, the PNG encode. The program's
    share bounds what micro-batching tiles through one vmapped call could save."""
    spec = yaml.safe_load(services_yaml.read_text())
    layer = ServerState(load_services({**spec, "base": str(root)})).layers["ndvi"]
    steps: list[list[float]] = [[], [], []]
    with Reader(str(layer.path), tms=TMS) as reader:
        for t in tiles:
            if not reader.tile_exists(t.x, t.y, t.z):
                continue
            t0 = time.perf_counter()
            img = reader.tile(t.x, t.y, t.z, indexes=layer.indexes, resampling_method="nearest")
            data = img.array
            valid = np.logical_or.reduce(~np.ma.getmaskarray(data), axis=0)
            values = np.ma.filled(data.astype(np.float32), np.nan)
            t1 = time.perf_counter()
            rgba = np.asarray(layer.pipeline.run_values(values, layer.signature, valid))
            t2 = time.perf_counter()
            encode_png(rgba, layer.compress_level)
            t3 = time.perf_counter()
            for step, dt in zip(steps, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                step.append(dt * 1e3)
    read, program, encode = (statistics.median(s) for s in steps)
    return read, program, encode


def process_overhead(base: str, cog: Path, out: Path, n: int) -> tuple[float, float]:
    """p50 (ms) of ``POST /process/ndvi?stats=true`` and of the same work done directly."""
    op = gx.loads_yaml(yaml.safe_dump(NDVI))
    run = eqx.filter_jit(lambda gt: op(gt, key=jax.random.key(0)))

    def direct(i: int) -> None:
        gt = gx.io.read(cog, dtype="float32")
        result = run(gt)
        gx.io.write_cog(result, out / "direct.tif")  # overwritten, as the server does
        band_stats(result)

    def served(client: httpx.Client) -> None:
        r = client.post("/process/ndvi?stats=true", json={"path": f"scenes/{cog.name}"})
        if r.status_code != 200:
            raise RuntimeError(f"/process: {r.status_code} {r.text[:300]}")

    with httpx.Client(base_url=base, timeout=300) as client:
        direct(-1)
        served(client)  # warm both (the server compiled at start-up; this warms the file cache)
        a, b = [], []
        for i in range(n):  # alternated so load drift on a shared machine hits both alike
            t0 = time.perf_counter()
            direct(i)
            a.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            served(client)
            b.append(time.perf_counter() - t0)
    return statistics.median(a) * 1e3, statistics.median(b) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024, help="tiles' scene side in pixels (1024)")
    ap.add_argument(
        "--process-size", type=int, default=256, help="/process scene side in pixels (256)"
    )
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients (16)")
    ap.add_argument("--repeats", type=int, default=3, help="concurrent passes, best kept (3)")
    ap.add_argument("--process-n", type=int, default=20, help="/process requests timed (20)")
    ap.add_argument("--titiler-server", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.titiler_server is not None:
        titiler_main(args.titiler_server)
        return

    with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
        root = Path(tmp)
        cog, cold_yaml, warm_yaml = write_site(root, args.size, args.process_size)
        ports = [free_port() for _ in range(3)]
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        georax_cmd = ["-m", "georax.cli", "serve", "--log-level", "warning", "--keep-alive", "120"]
        here = str(Path(__file__).resolve())
        with (
            server_process(
                [here, "--titiler-server", str(ports[0])],
                f"{bases[0]}/healthz",
                log=root / "titiler.log",
            ),
            server_process(
                [*georax_cmd, str(cold_yaml), "--port", str(ports[1])],
                f"{bases[1]}/health",
                log=root / "cold.log",
            ),
            server_process(
                [*georax_cmd, str(warm_yaml), "--port", str(ports[2])],
                f"{bases[2]}/health",
                log=root / "warm.log",
            ),
        ):
            tiles = tiles_of(bases[1], cog)
            ti_urls = [f"{bases[0]}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png" for t in tiles]
            cold_urls = [f"{bases[1]}/tiles/ndvi/{t.z}/{t.x}/{t.y}.png" for t in tiles]
            warm_urls = [f"{bases[2]}/tiles/ndvi/{t.z}/{t.x}/{t.y}.png" for t in tiles]
            ti_query = {"url": str(cog), **TITILER_QUERY}
            asyncio.run(_fetch(ti_urls[:4], 1, ti_query))  # import-time warm-up only
            asyncio.run(_fetch(warm_urls, args.clients))  # fill georax's tile cache
            native = [i for i, t in enumerate(tiles) if t.z == tiles[len(tiles) // 2].z]
            agree, worst, opaque = same_pixels(
                [(ti_urls[i], cold_urls[i]) for i in native], ti_query
            )
            ti, cold, warm = measure(
                [(ti_urls, ti_query), (cold_urls, None), (warm_urls, None)],
                args.clients,
                args.repeats,
            )
            direct_ms, served_ms = process_overhead(
                bases[2], cog.with_name("small.tif"), root, args.process_n
            )
        read_ms, program_ms, encode_ms = render_breakdown(cold_yaml, root, tiles)

    rows = [
        ["TiTiler (no cache)", f"{ti[0]:.1f}", f"{ti[1]:.1f}", f"{ti[2]:.0f}", "1.00", "1.00"],
    ]
    for label, m in (("georax cold (cache off)", cold), ("georax warm (cache)", warm)):
        rows.append(
            [
                label,
                f"{m[0]:.1f}",
                f"{m[1]:.1f}",
                f"{m[2]:.0f}",
                f"{m[0] / ti[0]:.2f}",
                f"{m[2] / ti[2]:.1f}",
            ]
        )
    print_table(
        f"tiles: {len(tiles)} tiles of a {args.size}px 7-band COG, NDVI -> viridis PNG; "
        f"p50/p99 sequential, throughput with {args.clients} clients (best of {args.repeats})",
        ["server", "p50 ms", "p99 ms", "tiles/s", "p50 / TiTiler", "tiles/s / TiTiler"],
        rows,
    )
    print(
        f"same image ({len(native)} tiles at zoom {tiles[native[0]].z}, {opaque:.0%} of their "
        f"pixels data): transparency agrees on {agree:.2%} of pixels, largest RGBA "
        f"difference where both are opaque: {worst} levels"
    )
    print(
        f"targets: cold p50 / TiTiler <= 1 -> {cold[0] / ti[0]:.2f}; "
        f"warm tiles/s / TiTiler >= 10 -> {warm[2] / ti[2]:.1f}"
    )
    share = program_ms / (read_ms + program_ms + encode_ms)
    print(
        f"one cold georax tile, in process (median): read {read_ms:.1f} ms, compiled program "
        f"{program_ms:.2f} ms, PNG encode {encode_ms:.1f} ms -> the program is {share:.1%} of a "
        "tile: micro-batching tiles through one vmapped call could save at most that"
    )
    print_table(
        f"/process: NDVI of a {args.process_size}px scene -> COG + stats, p50 of {args.process_n}",
        ["path", "p50 ms"],
        [
            ["direct (read, jitted pipeline, write_cog, stats)", f"{direct_ms:.1f}"],
            ["POST /process/ndvi?stats=true", f"{served_ms:.1f}"],
            ["overhead (target <= 10 ms)", f"{served_ms - direct_ms:.1f}"],
        ],
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
