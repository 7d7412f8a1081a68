"""Prometheus metrics of one app, and the ASGI middlewares that feed them and limit bodies.

Each app has its own :class:`prometheus_client.CollectorRegistry` (two apps in one process, as in
the tests, never mix their counts); ``GET /metrics`` writes it in the Prometheus text format.

:class:`RequestMetrics` and :class:`BodyLimit` are plain ASGI middlewares rather than
``@app.middleware("http")`` functions: those wrap every response in an extra task and stream,
which costs a few hundred microseconds per request -- a lot for a cached tile.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from georax.serve.errors import RequestError

__all__ = ["CONTENT_TYPE", "BodyLimit", "Metrics", "RequestMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The metrics of one app.

    - ``georax_requests_total{route, status}`` and ``georax_request_seconds{route}``;
    - ``georax_compilations_total{pipeline}``: XLA compilations (a warm server adds none);
    - ``georax_queue_depth{pool}``: requests waiting or running per work pool;
    - ``georax_tile_cache_total{result}``: ``hit``, ``miss``, ``not_modified``, ``empty``;
    - ``georax_pipelines_loaded``: pipelines holding compiled programs.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "georax_requests", "HTTP requests answered", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "georax_request_seconds", "Request latency", ["route"], buckets=_BUCKETS, registry=r
        )
        self.compilations = Counter(
            "georax_compilations", "XLA compilations", ["pipeline"], registry=r
        )
        self.queue = Gauge(
            "georax_queue_depth", "Requests waiting or running", ["pool"], registry=r
        )
        self.tile_cache = Counter("georax_tile_cache", "Tile cache lookups", ["result"], registry=r)
        self.loaded = Gauge("georax_pipelines_loaded", "Pipelines loaded", registry=r)

    def render(self) -> bytes:
        """The Prometheus text exposition of this app's metrics."""
        return generate_latest(self.registry)


class RequestMetrics:
    """Counts and times every request by its route template (``/tiles/{layer}/...``)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(name, str(status[0])).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - start)


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, counting while they stream in.

    A declared ``Content-Length`` over the limit is refused before a byte of the body is read;
    a chunked body is counted as it arrives and refused as soon as it passes the limit (a
    :class:`RequestError` 413 raised from ``receive``, answered by the app's error handler or,
    outside a route, here), so the server never holds more than `max_bytes` of one request.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send, n: int | str) -> None:
        body = json.dumps(
            {
                "error": "BodyTooLarge",
                "message": f"request body of {n} bytes is over the limit of {self.max_bytes}",
                "status": 413,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._refuse(send, declared)
                    return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise RequestError(
                        413,
                        "BodyTooLarge",
                        f"request body of more than {seen} bytes is over the limit of "
                        f"{self.max_bytes}",
                    )
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except RequestError as e:  # raised by counting_receive outside a route's handlers
            if started or e.status != 413:
                raise
            await self._refuse(send, f"more than {seen}")
