"""Shared helpers for the benchmark scripts: timing medians and the table/machine header."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax


def machine() -> str:
    """One line describing where the numbers were measured."""
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpu, "
        f"jax {jax.__version__} ({jax.default_backend()}), python {platform.python_version()}"
    )


def median_time(fn: Callable[[], Any], *, repeats: int = 7, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds; blocks on JAX results so async dispatch is timed."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def print_table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    """Print a left-aligned text table with a title and the machine line."""
    table = [headers, *rows]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(headers))]
    print(f"\n{title}\nmachine: {machine()}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


def round_robin_ms(fns: dict[str, Callable[[], Any]], runs: int) -> dict[str, float]:
    """Median ms of each function, timed in interleaved rounds so that load from other
    processes on a shared machine hits every variant alike (ratios stay meaningful).

    Each function is called once first (compile / warm up) and must block on its own result.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}
