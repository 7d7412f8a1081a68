"""Load: 100 concurrent clients for 20 s against /process and /tiles of a georax serve process.

Bounded in count and time: 100 async httpx clients on 127.0.0.1, 20 s, one server process
started and stopped here. The assertions are about correctness under load -- zero 5xx, every
answer a 200 (or 304) with the right content type, the server alive afterwards -- not about
speed; the latencies (p50/p99 per endpoint), the throughput and the server's peak RSS are
reported (printed, and recorded as test properties).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import morecantile
import numpy as np
import pytest

from _serve_support import services, write_data, write_services
from georax.serve import free_port, server_process

CLIENTS = 100
SECONDS = 20.0
TMS = morecantile.tms.get("WebMercatorQuad")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    root = tmp_path_factory.mktemp("load")
    write_data(root, 256)
    spec = services(root, 256, queue_size=4 * CLIENTS, request_timeout=120.0, tile_workers=2)
    path = write_services(root, spec)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = ["-m", "georax.cli", "serve", str(path), "--port", str(port), "--log-level",
               "warning", "--keep-alive", "120"]  # fmt: skip
    with server_process(command, f"{base}/health", log=root / "server.log") as proc:
        yield base, proc.pid


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _load(base: str, tiles: list[morecantile.Tile]) -> dict[str, list]:
    results: dict[str, list] = {"process": [], "tiles": []}
    stop = time.monotonic() + SECONDS
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, timeout=180, limits=limits) as client:

        async def one_client(i: int) -> None:
            rng = random.Random(i)
            while time.monotonic() < stop:
                if rng.random() < 0.3:
                    name = rng.choice(["s2.tif", "s2b.tif"])
                    start = time.perf_counter()
                    r = await client.post(
                        "/process/ndvi?stats=true", json={"path": f"scenes/{name}"}
                    )
                    ok = r.status_code == 200 and r.json()["stats"][0]["valid"] > 0
                    results["process"].append((r.status_code, time.perf_counter() - start, ok))
                else:
                    t = rng.choice(tiles)
                    start = time.perf_counter()
                    r = await client.get(f"/tiles/ndvi/{t.z}/{t.x}/{t.y}.png")
                    ok = r.status_code == 200 and r.headers["content-type"] == "image/png"
                    results["tiles"].append((r.status_code, time.perf_counter() - start, ok))

        await asyncio.gather(*(one_client(i) for i in range(CLIENTS)))
    return results


def test_100_clients_for_20_seconds_get_no_5xx(server: tuple[str, int], record_property) -> None:
    base, pid = server
    tj = httpx.get(f"{base}/tiles/ndvi/tilejson.json", timeout=60).json()
    tiles = [
        t
        for z in range(tj["minzoom"], tj["maxzoom"] + 1)
        for t in TMS.tiles(*tj["bounds"], zooms=[z])
    ]
    start = time.monotonic()
    results = asyncio.run(_load(base, tiles))
    elapsed = time.monotonic() - start
    assert elapsed < SECONDS + 200  # bounded: every request answered
    report = []
    for endpoint, rows in results.items():
        statuses = [s for s, _, _ in rows]
        assert rows, f"no {endpoint} request completed"
        assert not [s for s in statuses if s >= 500], f"{endpoint}: 5xx answers {statuses}"
        assert all(ok for _, _, ok in rows), f"{endpoint}: a non-200 or malformed answer"
        ms = np.array([t for _, t, _ in rows]) * 1e3
        p50, p99 = np.percentile(ms, [50, 99])
        report.append(
            f"{endpoint}: {len(rows)} requests, {len(rows) / elapsed:.0f}/s, "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        )
        record_property(f"{endpoint}_p50_ms", round(float(p50), 1))
        record_property(f"{endpoint}_p99_ms", round(float(p99), 1))
    rss = _peak_rss_mib(pid)
    record_property("server_peak_rss_mib", round(rss, 1))
    print(f"\n{CLIENTS} clients, {elapsed:.1f} s; " + "; ".join(report))
    print(f"server peak RSS {rss:.0f} MiB")
    assert httpx.get(f"{base}/health", timeout=30).status_code == 200
