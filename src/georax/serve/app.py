"""``create_app(services)``: the FastAPI app that serves pipelines, submissions, tiles and a map.

Endpoints (every pipeline answer carries ``config_hash`` and ``pipeline_digest``: in the JSON
body, and as ``X-Georax-Config-Hash`` / ``X-Georax-Pipeline-Digest`` headers on binary ones):

- ``GET /pipelines`` -> ``{name: config_hash}``; ``GET /pipelines/{name}`` -> its config.
- ``POST /process/{name}`` -> the output as a COG (``image/tiff``), or with ``?stats=true``
  JSON statistics per band. The input is a GeoTIFF upload (``multipart/form-data`` field
  ``file``, or the raw bytes as ``image/tiff``) or ``application/json``
  ``{"path": "<data root>/<file>", "bounds": [left, bottom, right, top], "bounds_crs": ...}``
  naming a file under an allow-listed data root. The COG is written atomically under the
  output root (``<pipeline>/<id>.tif``, content-addressed: a retried request rewrites the same
  file) -- the only place the server writes.
- ``POST /pipelines`` -> a user's YAML, loaded sandboxed and priced against the memory and FLOP
  budgets for the declared input shape: 201 with its hashes, or 4xx with the typed error. No
  code from the document runs: it can only name allow-listed operators.
- ``GET /tiles/{layer}/{z}/{x}/{y}.png``, ``GET /tiles/{layer}/tilejson.json``, ``GET /map``:
  see :mod:`georax.serve.tiles`; tiles carry a strong ``ETag`` (``If-None-Match`` -> 304) and
  ``Cache-Control``, and are kept in an LRU cache of rendered PNGs.
- ``GET /health``, ``GET /metrics`` (Prometheus text).

Refusals are JSON ``{"error": <type>, "message": ..., "status": ...}`` (:mod:`.errors`), never a
traceback; bodies are limited while they stream in (:class:`.metrics.BodyLimit`); CPU-bound
work runs in bounded pools off the event loop (:mod:`.work`), 503 + ``Retry-After`` when full,
504 past the request time limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.resources
import json
import logging
import math
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cachetools
import equinox as eqx
import numpy as np
import pydantic
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from python_multipart.multipart import create_form_parser
from rasterio.io import MemoryFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from georax.core.errors import DataError, GeoraxError
from georax.io.budget import read_budget
from georax.io.raster import read as read_raster
from georax.io.raster import write_cog
from georax.serve.compiled import CompiledPipeline, signature_of
from georax.serve.config import NAME_PATTERN, PipelineSource, Services, load_services
from georax.serve.errors import RequestError, problem_body, status_for
from georax.serve.metrics import CONTENT_TYPE, BodyLimit, Metrics, RequestMetrics
from georax.serve.stats import band_stats
from georax.serve.store import PipelineStore, SandboxedLoader, input_key_seed
from georax.serve.tiles import (
    MERCATOR_TILE_GRID,
    TileLayer,
    check_tile,
    file_etag,
    pack_rgba,
    tile_etag,
)
from georax.serve.uploads import upload_problem
from georax.serve.work import WorkPool
from georax.tensor import GeoTensor

__all__ = ["ServerState", "create_app"]

log = logging.getLogger("georax.serve")

_NAME = re.compile(NAME_PATTERN)
_JSON_LIMIT = 64 * 2**10
_DTYPES = ("float32", "float64", "float16", "uint8", "uint16", "int16", "int32")


class _ProcessPath(pydantic.BaseModel):
    """The JSON body of a path-based ``POST /process``."""

    model_config = pydantic.ConfigDict(extra="forbid")
    path: str = pydantic.Field(max_length=1024)
    bounds: tuple[float, float, float, float] | None = None
    bounds_crs: str | None = pydantic.Field(default=None, max_length=4096)


class _Submission(pydantic.BaseModel):
    """The JSON body of ``POST /pipelines``."""

    model_config = pydantic.ConfigDict(extra="forbid")
    yaml: str
    name: str | None = None
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class _Upload:
    data: bytes


def _headers(pipe: CompiledPipeline) -> dict[str, str]:
    return {"X-Georax-Config-Hash": pipe.config_hash, "X-Georax-Pipeline-Digest": pipe.digest}


class ServerState:
    """Everything one app holds: its pipelines, layers, pools, cache and metrics.

    Built (pipelines loaded through the sandbox, priced and warmed; layers compiled) when the
    app is created, so a bad services file fails at start-up, not on the first request.
    """

    def __init__(self, services: Services, allowed: frozenset[str] | None = None) -> None:
        self.services = services
        self.server = server = services.server
        self.metrics = Metrics()
        self.loader = SandboxedLoader(services, allowed)
        self.store = PipelineStore(self.loader, on_compile=self._compiled)
        self.output_root = services.path(server.output_root)
        self.output_root.mkdir(parents=True, exist_ok=True)
        self.data_roots = {name: services.path(p) for name, p in server.data_roots.items()}
        self.process_pool = WorkPool(
            "process",
            server.workers,
            server.queue_size,
            server.request_timeout,
            lambda d: self.metrics.queue.labels("process").set(d),
        )
        self.tile_pool = WorkPool(
            "tiles",
            server.tile_workers,
            server.queue_size,
            server.request_timeout,
            lambda d: self.metrics.queue.labels("tiles").set(d),
        )
        self.tile_cache: cachetools.LRUCache[Any, bytes] | None = (
            cachetools.LRUCache(maxsize=server.tile_cache_bytes, getsizeof=len)
            if server.tile_cache_bytes > 0
            else None
        )
        self.inflight: dict[Any, asyncio.Future[bytes]] = {}
        self.store.start()
        self.layers = {
            name: self._layer(name, spec.source, spec.pipeline, spec)
            for name, spec in services.layers.items()
        }
        self.metrics.loaded.set(self.store.loaded())

    def _compiled(self, name: str) -> None:
        self.metrics.compilations.labels(name).inc()

    # ------------------------------------------------------------------ layers
    def _layer(self, name: str, source: str, pipeline: PipelineSource, spec: Any) -> TileLayer:
        op = self.loader.build(pipeline, f"layers.{name}.pipeline")
        compiled = CompiledPipeline(
            f"layer:{name}", op, max_programs=1, on_compile=self._compiled, post=pack_rgba
        )
        layer = TileLayer(
            name,
            self.resolve_data_path(source),
            compiled,
            bands=spec.bands,
            resampling=spec.resampling,
            compress_level=self.server.png_compress_level,
            title=spec.title,
        )
        layer.check_output()  # uint8 RGB(A), grid-invariant: before anything costly
        self.loader.price(compiled, [layer.signature], grid=MERCATOR_TILE_GRID)
        layer.warm()
        return layer

    # ------------------------------------------------------------------ paths
    def resolve_data_path(self, text: str) -> Path:
        """``"<root>/<relative path>"`` -> a path inside that data root, or 403.

        Absolute paths, URLs, GDAL ``/vsi`` paths, NUL bytes, ``..`` escapes and symlinks that
        lead outside the root are all refused; the file itself is then opened by
        :func:`georax.io.read`, which refuses anything but a regular file.
        """
        if not isinstance(text, str) or not text or "\0" in text or "\\" in text:
            raise RequestError(403, "PathNotAllowed", f"data path {text!r} is not allowed")
        root_name, _, rest = text.partition("/")
        root = self.data_roots.get(root_name)
        if root is None or not rest or text.startswith("/") or "://" in text:
            roots = sorted(self.data_roots)
            raise RequestError(
                403,
                "PathNotAllowed",
                f"data path {text!r} must be '<root>/<file>' with a root in {roots}",
            )
        candidate = (root / rest).resolve()
        if not candidate.is_relative_to(root) or candidate == root:
            raise RequestError(
                403, "PathNotAllowed", f"data path {text!r} leads outside the data root"
            )
        return candidate

    def output_path(self, pipeline: str, output_id: str) -> Path:
        """Where a pipeline's output goes: always inside the output root."""
        directory = (self.output_root / pipeline).resolve()
        if not directory.is_relative_to(self.output_root):
            raise RequestError(403, "PathNotAllowed", f"pipeline name {pipeline!r}")
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f"{output_id}.tif"

    # ------------------------------------------------------------------ /process work
    def read_input(self, source: _Upload | _ProcessPath, dtype: str) -> tuple[GeoTensor, str]:
        """Read the request's raster (under the read budget) and an id of its content."""
        if isinstance(source, _Upload):
            problem = upload_problem(source.data)  # only TIFF bytes reach GDAL
            if problem is not None:
                raise RequestError(400, "NotAGeoTIFF", problem)
            digest = hashlib.sha256(source.data).hexdigest()
            with MemoryFile(source.data, filename="upload.tif") as mem:
                return read_raster(mem.name, dtype=dtype), "upload:" + digest
        path = self.resolve_data_path(source.path)
        gt = read_raster(path, bounds=source.bounds, bounds_crs=source.bounds_crs, dtype=dtype)
        ident = f"path:{path}:{file_etag(path)}:{source.bounds}:{source.bounds_crs}"
        return gt, ident

    def process(self, name: str, source: _Upload | _ProcessPath, stats: bool) -> dict[str, Any]:
        """Run pipeline `name` on the request's raster and write the COG (a worker thread)."""
        with read_budget(self.server.read_budget):
            pipe = self.store.get(name)
            entry = self.store.entry(name)
            gt, ident = self.read_input(source, entry.dtype)
            sig = signature_of(gt)
            if not pipe.knows(sig):  # a new input shape: price it before compiling for it
                self.loader.price(pipe, [sig], compile=False)
            input_id = hashlib.sha256(f"{pipe.digest}:{ident}".encode()).hexdigest()[:32]
            try:
                out = pipe.run(gt, key=input_key_seed(input_id))
            except eqx.EquinoxRuntimeError as e:
                raise DataError(f"pipeline {name!r} refused the data: {e}") from None
            if not isinstance(out, GeoTensor):
                raise RequestError(
                    422,
                    "NotARaster",
                    f"pipeline {name!r} returns {type(out).__name__}, not one GeoTensor: it "
                    "cannot be written as a COG",
                )
            path = self.output_path(name, input_id)
            write_cog(out, path)
            result: dict[str, Any] = {
                "pipeline": name,
                "config_hash": pipe.config_hash,
                "pipeline_digest": pipe.digest,
                "output": str(path.relative_to(self.output_root)),
                "path": str(path),
                "shape": list(out.shape),
                "dtype": str(np.dtype(out.dtype)),
                "crs": out.crs,
            }
            if stats:
                result["stats"] = band_stats(out)
            return result

    # ------------------------------------------------------------------ tiles
    async def tile(self, layer: TileLayer, z: int, x: int, y: int, etag: str) -> bytes:
        """The tile's PNG: from the cache, from a render already in flight, or rendered now."""
        key = (layer.pipeline.digest, z, x, y, etag)
        cache = self.tile_cache
        if cache is not None:
            png = cache.get(key)
            if png is not None:
                self.metrics.tile_cache.labels("hit").inc()
                return png
        pending = self.inflight.get(key)
        if pending is not None:  # the same tile is being rendered for another request
            self.metrics.tile_cache.labels("hit").inc()
            return await asyncio.shield(pending)
        self.metrics.tile_cache.labels("miss").inc()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.inflight[key] = future
        try:
            png = await self.tile_pool.run(layer.render, z, x, y, etag)
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            self.inflight.pop(key, None)
        future.set_result(png)
        if cache is not None and len(png) <= cache.maxsize:
            cache[key] = png
        return png

    def shutdown(self) -> None:
        """Stop the worker pools."""
        self.process_pool.shutdown()
        self.tile_pool.shutdown()


# ---------------------------------------------------------------------- request bodies
async def read_body(request: Request, limit: int) -> bytes:
    """The request body, read as it streams in and refused (413) past `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(
            413, "BodyTooLarge", f"request body of {declared} bytes is over the limit of {limit}"
        )
    chunks, seen = [], 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise RequestError(
                413, "BodyTooLarge", f"request body of more than {limit} bytes is over the limit"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _multipart_file(request: Request, body: bytes, field: str = "file") -> bytes:
    """The bytes of form field `field` of a multipart body, parsed in memory (never spooled)."""
    found: list[bytes] = []

    def on_file(f: Any) -> None:
        if f.field_name in (field.encode(), field):
            f.file_object.seek(0)
            found.append(f.file_object.read())

    headers = {"Content-Type": request.headers.get("content-type", "").encode("latin-1")}
    try:
        parser = create_form_parser(
            headers, None, on_file, config={"MAX_MEMORY_FILE_SIZE": math.inf}
        )
        parser.write(body)
        parser.finalize()
    except Exception as e:  # python-multipart raises several types for malformed bodies
        raise RequestError(400, "MalformedMultipart", f"cannot parse the form: {e}") from None
    if len(found) != 1:
        raise RequestError(
            400, "MissingFile", f"the form must hold exactly one file field {field!r}"
        )
    return found[0]


def _json(body: bytes, model: type[pydantic.BaseModel]) -> Any:
    try:
        return model.model_validate_json(body)
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise RequestError(400, "InvalidRequest", f"{where}: {first['msg']}") from None


async def _process_source(request: Request, limit: int) -> _Upload | _ProcessPath:
    kind = _media_type(request)
    if kind == "application/json":
        return _json(await read_body(request, _JSON_LIMIT), _ProcessPath)
    if kind == "multipart/form-data":
        return _Upload(_multipart_file(request, await read_body(request, limit)))
    if kind in ("image/tiff", "image/geotiff", "application/octet-stream"):
        return _Upload(await read_body(request, limit))
    raise RequestError(
        415,
        "UnsupportedMediaType",
        f"content type {kind or '(none)'!r}: send multipart/form-data (field 'file'), "
        "image/tiff or application/json {'path': ..., 'bounds': ...}",
    )


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise RequestError(400, "InvalidRequest", f"shape {text!r}: comma-separated ints") from None
    return shape


async def _submission(request: Request, limit: int) -> _Submission:
    kind = _media_type(request)
    if kind == "application/json":
        return _json(await read_body(request, 2 * limit), _Submission)
    if kind in ("application/yaml", "application/x-yaml", "text/yaml", "text/plain"):
        text = await read_body(request, limit)
        q = request.query_params
        if "shape" not in q:
            raise RequestError(400, "InvalidRequest", "give the input shape: ?shape=7,256,256")
        try:
            yaml_text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError(400, "InvalidRequest", "the YAML is not UTF-8") from None
        return _Submission(
            yaml=yaml_text,
            name=q.get("name"),
            shape=_parse_shape(q["shape"]),
            dtype=q.get("dtype", "float32"),
        )
    raise RequestError(
        415,
        "UnsupportedMediaType",
        f"content type {kind or '(none)'!r}: send application/yaml (with ?shape=...) or "
        "application/json {'yaml': ..., 'shape': [...]}",
    )


def _check_submission(sub: _Submission, state: ServerState) -> None:
    uploads = state.server.uploads
    if sub.name is not None and not _NAME.match(sub.name):
        raise RequestError(400, "InvalidName", f"name {sub.name!r} must match {NAME_PATTERN}")
    if len(sub.shape) < 2 or len(sub.shape) > 4 or any(d <= 0 for d in sub.shape):
        raise RequestError(
            400, "InvalidShape", f"shape {list(sub.shape)} must be (H, W) .. (N, band, H, W) > 0"
        )
    if math.prod(sub.shape) > uploads.max_input_pixels:
        raise RequestError(
            413,
            "InputTooLarge",
            f"shape {list(sub.shape)} is over the limit of {uploads.max_input_pixels} values",
        )
    if sub.dtype not in _DTYPES:
        raise RequestError(400, "InvalidDType", f"dtype {sub.dtype!r} must be one of {_DTYPES}")


_MAP_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>georax map: {title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/leaflet/leaflet.css">
<script src="/static/leaflet/leaflet.js"></script>
<style>html, body, #map {{ height: 100%; margin: 0; }} #map {{ background: #dddddd; }}</style>
</head><body><div id="map"></div>
<script>
const tilejson = {tilejson};
const map = L.map("map", {{ zoomSnap: 1 }});
const b = tilejson.bounds;
map.fitBounds([[b[1], b[0]], [b[3], b[2]]]);
const layer = L.tileLayer(tilejson.tiles[0], {{
  tileSize: 256, minZoom: 0, maxZoom: 24, maxNativeZoom: 24,
  attribution: "georax " + tilejson.name + " " + tilejson.version
}});
layer.on("load", () => {{ document.title = "loaded: " + tilejson.name; }});
layer.addTo(map);
</script></body></html>
"""


def create_app(
    services: Services | str | os.PathLike[str] | dict[str, Any],
    *,
    allowed: frozenset[str] | None = None,
) -> FastAPI:
    """The FastAPI app of a services file (see the module docstring for the endpoints).

    **Arguments:**

    - `services`: a path to a services YAML, its parsed mapping, or a :class:`Services`.
    - `allowed`: the operator allow-list (default: georax's public operators).

    **Returns:** the app; ``app.state.georax`` is its :class:`ServerState`.

    **Raises:** georax errors for a services file or pipeline that cannot be loaded or is over
    budget (at creation, not at the first request).
    """
    if not isinstance(services, Services):
        services = load_services(services)
    state = ServerState(services, allowed)
    server = services.server

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        state.shutdown()

    app = FastAPI(
        title="georax",
        summary="georax pipelines, tiles and sandboxed submissions",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.georax = state
    static = importlib.resources.files("georax.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    # ------------------------------------------------------------------ errors
    @app.exception_handler(RequestError)
    async def _request_error(_: Request, e: RequestError) -> JSONResponse:
        return JSONResponse(problem_body(e), e.status, headers=e.headers)

    @app.exception_handler(GeoraxError)
    async def _georax_error(_: Request, e: GeoraxError) -> JSONResponse:
        return JSONResponse(problem_body(e), status_for(e))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        body = {"error": "InvalidRequest", "message": f"{where}: {first['msg']}", "status": 422}
        return JSONResponse(body, 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        name = {404: "NotFound", 405: "MethodNotAllowed"}.get(e.status_code, "HTTPError")
        body = {"error": name, "message": str(e.detail), "status": e.status_code}
        return JSONResponse(body, e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, e: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse(problem_body(e), 500)

    # ------------------------------------------------------------------ service
    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "pipelines": len(state.store.names()),
            "loaded": state.store.loaded(),
            "layers": sorted(state.layers),
            "queues": {"process": state.process_pool.pending, "tiles": state.tile_pool.pending},
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        state.metrics.loaded.set(state.store.loaded())
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    # ------------------------------------------------------------------ pipelines
    @app.get("/pipelines")
    async def list_pipelines() -> dict[str, str]:
        return state.store.names()

    @app.get("/pipelines/{name}")
    async def describe(name: str) -> JSONResponse:
        entry = state.store.entry(name)
        body = await state.process_pool.run(state.store.describe, entry.name)
        headers = {
            "X-Georax-Config-Hash": entry.config_hash,
            "X-Georax-Pipeline-Digest": entry.digest,
        }
        return JSONResponse(body, headers=headers)

    @app.post("/pipelines")
    async def submit(request: Request) -> JSONResponse:
        if not server.uploads.enabled:
            raise RequestError(403, "UploadsDisabled", "this server does not accept pipelines")
        sub = await _submission(request, state.loader.limits.max_bytes)
        _check_submission(sub, state)
        entry, created, price = await state.process_pool.run(
            state.store.submit, sub.name, sub.yaml, sub.shape, sub.dtype
        )
        body: dict[str, Any] = {
            "name": entry.name,
            "config_hash": entry.config_hash,
            "pipeline_digest": entry.digest,
            "created": created,
        }
        if price is not None:
            body["price"] = {"peak_bytes": int(price.peak_bytes), "flops": price.flops}
        headers = {
            "Location": f"/pipelines/{entry.name}",
            "X-Georax-Config-Hash": entry.config_hash,
            "X-Georax-Pipeline-Digest": entry.digest,
        }
        return JSONResponse(body, 201 if created else 200, headers=headers)

    @app.post("/process/{name}")
    async def process(name: str, request: Request, stats: bool = False) -> Response:
        state.store.entry(name)  # 404 before reading any body
        source = await _process_source(request, server.max_body_bytes)
        result = await state.process_pool.run(state.process, name, source, stats)
        headers = {
            "X-Georax-Config-Hash": result["config_hash"],
            "X-Georax-Pipeline-Digest": result["pipeline_digest"],
            "X-Georax-Output": result["output"],
        }
        if stats:
            result.pop("path")
            return JSONResponse(result, headers=headers)
        return FileResponse(result["path"], media_type="image/tiff", headers=headers)

    # ------------------------------------------------------------------ tiles
    def _layer(name: str) -> TileLayer:
        layer = state.layers.get(name)
        if layer is None:
            raise RequestError(404, "UnknownLayer", f"no tile layer named {name!r}")
        return layer

    @app.get("/tiles/{layer}/tilejson.json")
    async def tilejson(layer: str, request: Request) -> JSONResponse:
        lay = _layer(layer)
        return JSONResponse(lay.tilejson(str(request.base_url)), headers=_headers(lay.pipeline))

    @app.get("/tiles/{layer}/{z}/{x}/{y}.png")
    async def tile(layer: str, z: int, x: int, y: int, request: Request) -> Response:
        lay = _layer(layer)
        check_tile(z, x, y)
        source = lay.source_etag()
        etag = tile_etag(lay.pipeline.digest, z, x, y, source)
        headers = {
            "ETag": etag,
            "Cache-Control": server.tile_cache_control,
            **_headers(lay.pipeline),
        }
        match = request.headers.get("if-none-match")
        if match is not None and (
            match.strip() == "*" or etag in (m.strip().removeprefix("W/") for m in match.split(","))
        ):
            state.metrics.tile_cache.labels("not_modified").inc()
            return Response(status_code=304, headers=headers)
        png = await state.tile(lay, z, x, y, source)
        return Response(png, media_type="image/png", headers=headers)

    @app.get("/map")
    async def map_page(request: Request, layer: str | None = None) -> HTMLResponse:
        if not state.layers:
            raise RequestError(404, "NoLayers", "this server has no tile layers")
        lay = _layer(layer if layer is not None else next(iter(state.layers)))
        tj = json.dumps(lay.tilejson(str(request.base_url))).replace("</", "<\\/")
        html = _MAP_PAGE.format(title=lay.name, tilejson=tj)
        csp = (
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self' 'unsafe-inline'"
        )
        return HTMLResponse(html, headers={"Content-Security-Policy": csp})

    app.add_middleware(BodyLimit, max_bytes=server.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=state.metrics)
    return app
