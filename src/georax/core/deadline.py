"""A hard wall-clock limit on work done in the calling thread (pricing an untrusted pipeline).

Pricing traces the pipeline, and tracing is Python: an operator whose config makes ``jnp.pad``
loop a million times, or a nest of patch loops that unrolls at trace time, runs for as long as
the config says. Pre-checks (:meth:`georax.Operator.precheck`) refuse the configs they know of in
milliseconds; this is the backstop for the ones they miss.

**Why a watchdog thread that raises into the pricing thread.** The alternatives cost more:

- a subprocess (or ``multiprocessing``) can be killed cleanly, but it pays for importing JAX and
  georax again (seconds) on every request, and the priced program cannot be handed back;
- ``sys.settrace``/``sys.setprofile`` with a deadline check run a Python function on every call
  the tracer makes, slowing every pricing (the common, honest case) to catch the rare hostile one;
- ``signal.alarm`` works only in the main thread, and a server prices in worker threads.

A daemon thread sleeps until the deadline and then, if the work has not finished, schedules an
exception in the pricing thread with CPython's ``PyThreadState_SetAsyncExc``. It costs nothing
while it waits. The exception is a private ``BaseException`` subclass made fresh for each
deadline, so no ``except Exception`` inside JAX swallows it and nested deadlines never catch each
other's; :func:`deadline` turns it into :class:`~georax.errors.PricingTimeoutError`.

**Limits (documented, not hidden).** An asynchronous exception is delivered when the thread next
runs Python bytecode, so a long call into C++ (one XLA compilation) finishes before it is
interrupted; the pricing code bounds what it hands to XLA (the traced program's size) for that
reason, and re-checks the clock when the call returns. The watchdog and the worker agree under a
lock, so an exception is never delivered after :func:`deadline` has exited.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from collections.abc import Iterator

from georax.core.errors import PricingTimeoutError

__all__ = ["deadline"]


#: Seconds between re-raises of an expired deadline's exception (see ``_Watchdog._watch``).
_REFIRE_S = 0.1


class _Expired(BaseException):
    """Raised into the worker thread when its deadline passes (never escapes :func:`deadline`)."""


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    # A NULL exception clears one that was scheduled but not yet delivered.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc is not None else None
    )


class _Watchdog:
    def __init__(self, seconds: float, expired: type[_Expired]) -> None:
        self.thread_id = threading.get_ident()
        self.expired = expired
        self.lock = threading.Lock()
        self.finished = threading.Event()
        self.done = False
        self.fired = False
        self.thread = threading.Thread(
            target=self._watch, args=(seconds,), name="georax-deadline", daemon=True
        )

    def _watch(self, seconds: float) -> None:
        if self.finished.wait(seconds):
            return
        # Raised again every _REFIRE_S until the worker stops us: an asynchronous exception
        # that lands in a garbage-collector callback (JAX registers one) or a ``__del__`` is
        # printed and dropped by CPython, and the work would then run on unbounded.
        while True:
            with self.lock:
                if self.done:
                    return
                self.fired = True
                _raise_in(self.thread_id, self.expired)
            if self.finished.wait(_REFIRE_S):
                return

    def stop(self) -> None:
        with self.lock:
            self.done = True
            if self.fired:
                _raise_in(self.thread_id, None)
        self.finished.set()


@contextlib.contextmanager
def deadline(seconds: float | None, what: str) -> Iterator[None]:
    """Run the body with a hard wall-clock limit, refused with a typed error past it.

    **Arguments:**

    - `seconds`: the limit (``None``: no limit).
    - `what`: what is being limited, for the message (``"pricing float32[1, 512, 512]"``).

    **Raises:** :class:`~georax.errors.PricingTimeoutError` (``stage="time"``, ``required``
    and ``budget`` in milliseconds) when the body runs past the limit.
    """
    if seconds is None:
        yield
        return
    expired = type("_Expired", (_Expired,), {})
    watchdog = _Watchdog(seconds, expired)
    start = time.perf_counter()
    watchdog.thread.start()
    try:
        try:
            yield
        finally:
            while True:  # a re-fired exception may land inside stop() itself: stop again
                try:
                    watchdog.stop()
                    break
                except expired:
                    continue
    except expired:
        pass
    except BaseException:
        if not watchdog.fired:
            raise
        # The interruption surfaced as another error (code that catches everything): the
        # deadline is still the cause.
    elapsed = time.perf_counter() - start
    if watchdog.fired or elapsed > seconds:
        raise PricingTimeoutError(
            int(elapsed * 1000),
            int(seconds * 1000),
            "time",
            what,
            unit="ms",
        ) from None
