"""CPU-bound work off the event loop, in bounded pools, with a per-request time limit.

Reading rasters, running compiled programs, encoding PNGs and pricing pipelines all block; the
event loop must keep accepting (and refusing) requests meanwhile. :class:`WorkPool` runs them in
a thread pool (GDAL, XLA and zlib release the GIL while they work) and bounds how many requests
may be *waiting or running* at once: past ``max_pending`` a request is refused at once with 503
and ``Retry-After``, instead of queueing without bound until memory or latency gives out.

A request that waits longer than its time limit gets 504; its job, if already running, cannot be
interrupted (an XLA program or a GDAL read runs to its end), so its slot is freed only when it
really ends -- time-outs never let more work run than the bound allows. A job not yet started
when its request times out is cancelled.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from georax.serve.errors import RequestError

__all__ = ["WorkPool"]

_T = TypeVar("_T")


class WorkPool:
    """A bounded thread pool for one kind of work (see the module docstring).

    **Arguments:**

    - `name`: the pool's name (thread names, messages, metrics).
    - `threads`: worker threads.
    - `max_pending`: requests waiting or running before new ones get 503.
    - `timeout`: default seconds a request waits for its result before 504.
    - `on_depth`: called with the number of pending jobs whenever it changes (a metrics gauge).
    """

    def __init__(
        self,
        name: str,
        threads: int,
        max_pending: int,
        timeout: float,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        self.name = name
        self.max_pending = max_pending
        self.timeout = timeout
        self.on_depth = on_depth
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix=f"georax-{name}")
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Jobs waiting or running now."""
        with self._lock:
            return self._pending

    def _release(self, _: Future[Any]) -> None:
        with self._lock:
            self._pending -= 1
            depth = self._pending
        if self.on_depth is not None:
            self.on_depth(depth)

    async def run(self, fn: Callable[..., _T], *args: Any, timeout: float | None = None) -> _T:
        """Run ``fn(*args)`` in the pool and await its result.

        The caller's context variables (e.g. :func:`georax.io.read_budget`) go with the job.

        **Raises:** :class:`RequestError` 503 (pool full, with ``Retry-After``) or 504 (time
        limit); whatever `fn` raises.
        """
        with self._lock:
            if self._pending >= self.max_pending:
                raise RequestError(
                    503,
                    "ServerBusy",
                    f"the {self.name} queue is full ({self.max_pending} requests); retry shortly",
                    {"Retry-After": "1"},
                )
            self._pending += 1
            depth = self._pending
        if self.on_depth is not None:
            self.on_depth(depth)
        context = contextvars.copy_context()
        try:
            future = self._executor.submit(context.run, fn, *args)
        except RuntimeError:  # the pool is shutting down
            self._release(Future())
            raise RequestError(503, "ShuttingDown", "the server is shutting down") from None
        future.add_done_callback(self._release)
        limit = self.timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), limit)
        except TimeoutError:
            raise RequestError(
                504, "Timeout", f"the request took longer than its limit of {limit:g} s"
            ) from None

    def shutdown(self) -> None:
        """Stop accepting jobs; cancel those not started."""
        self._executor.shutdown(wait=False, cancel_futures=True)
