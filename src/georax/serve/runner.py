"""Run a server on the loopback interface: in a background thread, or wait for one to come up.

Examples, tests and notebooks need a real server on ``127.0.0.1`` that they start and stop
themselves. :func:`serve_in_thread` runs uvicorn in a daemon thread and yields the base URL once
the socket is listening; leaving the ``with`` block shuts it down (in-flight requests finish).
:func:`server_process` starts a server as its own process (``georax serve ...``, as a user would),
waits until it answers and stops it on exit; :func:`wait_until_up` polls a URL until a server
started in another process answers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import uvicorn

__all__ = ["free_port", "serve_in_thread", "server_process", "wait_until_up"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_in_thread(
    app: Any, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 60.0, **kwargs: Any
) -> Iterator[str]:
    """Serve `app` with uvicorn in a background thread; yield its base URL.

    **Arguments:**

    - `app`: an ASGI app (e.g. :func:`georax.serve.create_app`'s).
    - `host`, `port`: where to listen (port 0: a free one).
    - `timeout`: seconds to wait for the server to start listening.
    - `kwargs`: further :class:`uvicorn.Config` options (``log_level`` defaults to warning).

    **Yields:** ``"http://host:port"``.
    """
    kwargs.setdefault("log_level", "warning")
    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **kwargs))
    thread = threading.Thread(target=server.run, name="georax-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the server on {host}:{port} stopped while starting")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError(f"the server on {host}:{port} did not start in {timeout:g} s")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


def wait_until_up(url: str, timeout: float = 120.0, process: Any = None) -> None:
    """Poll `url` (e.g. ``.../health``) until it answers 200.

    **Arguments:**

    - `url`: the URL to poll.
    - `timeout`: seconds before giving up with ``TimeoutError``.
    - `process`: a :class:`subprocess.Popen` of the server: if it exits, fail at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:g} s")
        time.sleep(0.1)


@contextlib.contextmanager
def server_process(
    args: Sequence[str],
    health_url: str,
    *,
    timeout: float = 300.0,
    log: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server process, wait until `health_url` answers, stop it when the block ends.

    **Arguments:**

    - `args`: the command after the Python interpreter, e.g.
      ``["-m", "georax.cli", "serve", "services.yaml", "--port", "8123"]``.
    - `health_url`: polled until it answers 200.
    - `timeout`: seconds to wait for it (start-up loads, prices and compiles every pipeline).
    - `log`: a file for the server's output (default: discarded).
    - `env`: the environment (default: this process's).

    **Yields:** the :class:`subprocess.Popen`; on exit its process group (the server and any
    workers it started) gets SIGTERM (a graceful shutdown), then SIGKILL after 20 s.
    """
    out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # its own process group: its workers are stopped with it
    )
    try:
        try:
            wait_until_up(health_url, timeout, proc)
        except (RuntimeError, TimeoutError) as e:
            tail = Path(log).read_text(errors="replace")[-3000:] if log is not None else ""
            raise RuntimeError(f"{' '.join(args)}: {e}\n{tail}") from None
        yield proc
    finally:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        _signal_group(proc, signal.SIGKILL)  # stragglers of the group (e.g. worker processes)
        if log is not None:
            out.close()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the process group led by `proc` (started with ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
