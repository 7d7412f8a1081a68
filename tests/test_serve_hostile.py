"""Hostile requests against a real server process (``georax serve``) on 127.0.0.1.

Every request here must get a 4xx JSON answer naming the error (never a traceback, never a 5xx),
and the server must keep answering afterwards: ``/health`` is checked after each one. The server
is started and stopped by the module fixture; counts and sizes are bounded.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

import georax.data as gd
import georax.io as gio
from _serve_support import services, write_data, write_services
from georax.serve import free_port, server_process

LIMIT = 1 * 2**20  # the server's body limit in this module


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("hostile")
    write_data(root, 64)
    path = write_services(root, services(root, 64, max_body_bytes=LIMIT))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = ["-m", "georax.cli", "serve", str(path), "--port", str(port)]
    with server_process(command, f"{base}/health", log=root / "server.log"):
        yield base


def _alive(base: str) -> None:
    r = httpx.get(f"{base}/health", timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "ok"


def _refused(r: httpx.Response, status: int, error: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert "Traceback" not in r.text and body["status"] == status
    if error is not None:
        assert body["error"] == error, body
    return body


def _raw(base: str, head: bytes, body_chunks: list[bytes] = ()) -> bytes:
    """Send raw bytes on a socket; return what the server answers (until it closes)."""
    u = urlsplit(base)
    with socket.create_connection((u.hostname, u.port), timeout=30) as s:
        s.sendall(head)
        for chunk in body_chunks:
            try:
                s.sendall(chunk)
            except OSError:  # the server refused and closed: that is the point
                break
        data = b""
        while True:
            try:
                part = s.recv(65536)
            except OSError:
                break
            if not part:
                break
            data += part
    return data


def test_declared_oversized_body_is_refused_before_it_is_read(server: str) -> None:
    host = urlsplit(server).netloc.encode()
    head = (
        b"POST /process/ndvi HTTP/1.1\r\nHost: " + host + b"\r\n"
        b"Content-Type: image/tiff\r\nContent-Length: 10000000000\r\n\r\n"
    )
    start = time.monotonic()
    answer = _raw(server, head)  # no body sent at all: a 10 GB claim is refused outright
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"BodyTooLarge" in answer and time.monotonic() - start < 10
    _alive(server)


def test_chunked_oversized_body_is_refused_while_streaming(server: str) -> None:
    host = urlsplit(server).netloc.encode()
    head = (
        b"POST /process/ndvi HTTP/1.1\r\nHost: " + host + b"\r\n"
        b"Content-Type: image/tiff\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n" % (256 * 2**10) + b"\0" * (256 * 2**10) + b"\r\n"
    answer = _raw(server, head, [chunk] * 64)  # 16 MiB offered, the limit is 1 MiB
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    _alive(server)


def test_multipart_over_the_limit_is_413(server: str) -> None:
    files = {"file": ("big.tif", b"\0" * (LIMIT + 1))}
    _refused(httpx.post(f"{server}/process/ndvi", files=files, timeout=60), 413, "BodyTooLarge")
    _alive(server)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"II*\0" + b"\xff" * 1000,  # a TIFF header, then garbage
        b"MM\0*" + b"\0" * 64,
        b"GIF89a" + b"\0" * 100,
        b"\x89PNG\r\n\x1a\n" + b"\0" * 100,
    ],
)
def test_malformed_tiff_is_400(server: str, payload: bytes) -> None:
    r = httpx.post(
        f"{server}/process/ndvi",
        content=payload,
        headers={"content-type": "image/tiff"},
        timeout=60,
    )
    _refused(r, 400)
    _alive(server)


def test_an_uploaded_vrt_cannot_read_the_servers_files(server: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret.tif"
    gio.write(gd.sentinel2_l1c(16, seed=1), secret)
    vrt = (
        '<VRTDataset rasterXSize="16" rasterYSize="16"><VRTRasterBand dataType="UInt16" '
        f'band="1"><SimpleSource><SourceFilename relativeToVRT="0">{secret}</SourceFilename>'
        "<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>"
    ).encode()
    r = httpx.post(
        f"{server}/process/ndvi",
        content=vrt,
        headers={"content-type": "image/tiff"},
        timeout=60,
    )
    _refused(r, 400, "NotAGeoTIFF")
    _alive(server)


def test_decompression_bomb_upload_is_refused(server: str, tmp_path: Path) -> None:
    import numpy as np
    import rasterio

    path = tmp_path / "bomb.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=60000, height=60000, count=1, dtype="uint8",
        tiled=True, compress="deflate", sparse_ok=True,
    ) as dst:  # fmt: skip
        dst.write(np.zeros((1, 16, 16), np.uint8), window=((0, 16), (0, 16)))
    assert path.stat().st_size < LIMIT
    r = httpx.post(
        f"{server}/process/ndvi",
        content=path.read_bytes(),
        headers={"content-type": "image/tiff"},
        timeout=60,
    )
    _refused(r, 413, "ReadBudgetExceededError")
    _alive(server)


BILLION_LAUGHS = (
    "_target_: georax.GetItem\nitem:\n  - &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(
        f"  - &{n} [{', '.join([f'*{p}'] * 9)}]\n"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
)


@pytest.mark.parametrize(
    ("text", "status"),
    [
        (BILLION_LAUGHS, 422),
        ("a: &a [*a]", 422),
        ("[" * 10_000 + "]" * 10_000, 422),
        ("k: v\n" * 20_000, 413),  # over the sandbox's 64 KiB document limit
        ('!!python/object/apply:os.system ["touch /tmp/pwned"]', 422),
        ("{_target_: builtins.eval, source: '1'}", 403),
        ("{_target_: georax.geo.sar.LeeSpeckle, window_size: 1000000001}", 422),
    ],
)
def test_yaml_bombs_are_refused_fast(server: str, text: str, status: int) -> None:
    start = time.monotonic()
    r = httpx.post(
        f"{server}/pipelines?shape=7,64,64",
        content=text.encode(),
        headers={"content-type": "application/yaml"},
        timeout=60,
    )
    _refused(r, status)
    assert time.monotonic() - start < 20  # bounded (generous: a shared CI machine)
    assert not Path("/tmp/pwned").exists()
    _alive(server)


@pytest.mark.parametrize(
    "path",
    [
        "../services.yaml",
        "scenes/../../services.yaml",
        "scenes/../services.yaml",
        "/etc/passwd",
        "scenes//etc/passwd",
        "scenes/%2e%2e/services.yaml",
        "scenes/\\..\\services.yaml",
        "scenes/s2.tif\u0000.png",
        "/vsicurl/http://127.0.0.1/x.tif",
        "scenes//vsizip//etc/passwd",
        "file:///etc/passwd",
        "scenes/" + "a/" * 600,
    ],
)
def test_path_traversal_never_reads_outside_the_data_root(server: str, path: str) -> None:
    r = httpx.post(f"{server}/process/ndvi", json={"path": path}, timeout=60)
    assert r.status_code in (400, 403, 404), r.text
    assert "root:" not in r.text  # /etc/passwd's content never comes back
    _alive(server)


@pytest.mark.parametrize(
    "bounds",
    [
        [float("nan"), 0, 1, 1],
        [0, 0, float("inf"), 1],
        [1e308, 1e308, -1e308, -1e308],
        [0, 0, 1, 1],  # far outside the raster
        [500_000, 4_590_000, 400_000, 4_600_000],  # reversed
        [-1e12, -1e12, 1e12, 1e12],  # the whole plane
    ],
)
def test_hostile_bounds_are_4xx(server: str, bounds: list[float]) -> None:
    body = json.dumps({"path": "scenes/s2.tif", "bounds": bounds}, allow_nan=True)
    r = httpx.post(
        f"{server}/process/ndvi",
        content=body,
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert 400 <= r.status_code < 500, r.text
    _alive(server)


def test_garbage_json_and_methods(server: str) -> None:
    r = httpx.post(
        f"{server}/process/ndvi", content=b"{not json", headers={"content-type": "application/json"}
    )
    _refused(r, 400, "InvalidRequest")
    _refused(httpx.delete(f"{server}/pipelines"), 405, "MethodNotAllowed")
    _refused(httpx.get(f"{server}/nothing/here"), 404, "NotFound")
    _refused(httpx.get(f"{server}/tiles/ndvi/99/0/0.png"), 404, "TileOutOfRange")
    _refused(httpx.get(f"{server}/tiles/ndvi/1/a/0.png"), 422, "InvalidRequest")
    _alive(server)


def test_cli_refuses_a_missing_services_file(tmp_path: Path) -> None:
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "georax.cli", "serve", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "nope.yaml" in proc.stderr and "Traceback" not in proc.stderr


def test_only_tiff_bytes_may_reach_gdal() -> None:
    from georax.serve.uploads import upload_problem

    assert upload_problem(b"II*\0" + b"\0" * 8) is None
    assert upload_problem(b"MM\0+" + b"\0" * 8) is None  # BigTIFF, big endian
    for data in (b"<VRTDataset>", b"", b"GIF89a", b"\x89PNG\r\n"):
        problem = upload_problem(data)
        assert problem is not None and "not a (Big)TIFF" in problem
