"""Benchmark: the seeds' preprocessing chain, georax (jit) vs eager NumPy, plus percentile alone.

Chain (seed cases 1, 2, 7): QA-bit cloud mask (QA60 bits 10, 11) -> DN scale (1e-4) -> dark-object
subtraction at the 1st percentile (per band, NaN-aware) -> NDVI -> 256-entry colormap (RdYlGn),
on a 5 x 2048 x 2048 uint16 scene (B02, B03, B04, B08 + QA60 last). Both implementations compute
the same numbers (checked before timing). Reported: median of N runs (after a warm-up/compile run)
and the ratio against the NumPy reference measured in the same process.

Run:  python benchmarks/bench_geo.py [--size 2048] [--repeats 7]

Where the time goes on XLA:CPU (see the ``page faults/run`` column): glibc serves every allocation
>= 32 MiB with a fresh ``mmap``, so an XLA buffer of that size costs one minor page fault per 4 KiB
on every run (~1 ms per MiB on the 2-core dev box) — NumPy avoids this by ``madvise``-ing its big
arrays onto huge pages. The georax chain therefore keeps every buffer below 16 MiB: the percentile
goes to the host one band at a time, the QA band is dropped by slicing (not a gather) and the
colormap is one packed-uint32 gather. Setting ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` in the
environment (a process-wide choice georax leaves to the user) removes most remaining faults.

Same work as the NumPy chain: the 1st percentile is computed for all four bands. XLA does drop the
(unused) subtraction of the dark value from the blue and green bands, which NumPy performs eagerly.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

import georax
from georax.array.reductions import nanpercentile
from georax.geo.cloud import MaskClouds
from georax.geo.indices import NDVI
from georax.geo.radiometry import DarkObjectSubtraction, DNToReflectance
from georax.geo.viz import Colormap


def scene(size: int, seed: int = 0) -> np.ndarray:
    """(5, size, size) uint16: 4 reflectance bands (DN = reflectance x 1e4) + QA60."""
    try:  # the package's synthetic Sentinel-2-like scene when available
        from georax.data.synthetic import sentinel2_l1c

        s2 = np.asarray(sentinel2_l1c(size, seed=seed).values)
        return np.concatenate([s2[:4], s2[-1:]], axis=0)
    except ImportError:  # pragma: no cover
        rng = np.random.default_rng(seed)
        dn = rng.integers(100, 6000, size=(5, size, size)).astype(np.uint16)
        dn[-1] = (rng.random((size, size)) < 0.15).astype(np.uint16) << 10
        return dn


LUT = matplotlib.colormaps["RdYlGn"].resampled(256)(np.arange(256), bytes=True).astype(np.uint8)


def numpy_chain(dn: np.ndarray) -> np.ndarray:
    """The same chain, eager NumPy, as the seeds would write it."""
    qa = dn[-1]
    cloudy = (qa & ((1 << 10) | (1 << 11))) != 0
    refl = dn[:-1].astype(np.float32) * np.float32(1e-4)
    refl[:, cloudy] = np.nan
    dark = np.nanpercentile(refl, 1, axis=(-2, -1), keepdims=True).astype(np.float32)
    refl = refl - dark
    red, nir = refl[2], refl[3]
    # NDVI is +-inf / NaN where red + NIR crosses 0 after DOS; both chains map those the same way
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ndvi = (nir - red) / (nir + red)
        t = (ndvi - np.float32(-1)) / np.float32(2)
        nan = np.isnan(t)
        idx = np.clip(np.floor(np.nan_to_num(t) * 256), 0, 255).astype(np.intp)
    rgba = LUT[idx]
    rgba[nan] = 0
    return np.moveaxis(rgba, -1, 0)


def georax_chain() -> georax.Sequential:
    return georax.Sequential(
        [
            MaskClouds(qa_band=-1, bits=[10, 11]),
            DNToReflectance(scale=1e-4),
            DarkObjectSubtraction(percentile=1),
            NDVI(red_band=2, nir_band=3),
            Colormap("RdYlGn", vmin=-1, vmax=1),
        ]
    )


FAULTS: dict[float, float] = {}  # median ms -> minor page faults per run (printed in the table)


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    jax.block_until_ready(fn())  # warm-up / compile
    times = []
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    t = float(np.median(times) * 1e3)
    FAULTS[t] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / repeats
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--jnp-repeats", type=int, default=5, help="repeats for jnp.nanpercentile")
    args = ap.parse_args()

    dn = scene(args.size)
    dn_j = jnp.asarray(dn)
    pipe = georax_chain()
    run = jax.jit(pipe)

    # same numbers first (colour bins may differ by one where float32 rounding straddles a bin)
    ours, ref = np.asarray(run(dn_j)), numpy_chain(dn)
    differ = np.any(ours != ref, axis=0).mean()
    assert differ < 1e-3, f"georax and NumPy chains disagree on {differ:.2%} of pixels"

    refl = dn[:-1].astype(np.float32) * np.float32(1e-4)
    refl[:, (dn[-1] & 0xC00) != 0] = np.nan
    refl_j = jnp.asarray(refl)
    ours_p = jax.jit(lambda a: nanpercentile(a, 1.0, (-2, -1)))
    jnp_p = jax.jit(lambda a: jnp.nanpercentile(a, 1.0, axis=(-2, -1)))
    np.testing.assert_allclose(ours_p(refl_j), np.nanpercentile(refl, 1, axis=(-2, -1)), rtol=1e-6)

    rows: list[tuple[str, str, float, float]] = []
    t_np_chain = median_ms(lambda: numpy_chain(dn), args.repeats)
    t_gx_chain = median_ms(lambda: run(dn_j), args.repeats)
    rows.append(("chain", "numpy eager (reference)", t_np_chain, t_np_chain))
    rows.append(("chain", "georax jit", t_gx_chain, t_np_chain))

    t_np_p = median_ms(lambda: np.nanpercentile(refl, 1, axis=(-2, -1)), args.repeats)
    rows.append(("percentile p1, 4 bands", "np.nanpercentile (reference)", t_np_p, t_np_p))
    rows.append(
        (
            "percentile p1, 4 bands",
            "georax nanpercentile (jit)",
            median_ms(lambda: ours_p(refl_j), args.repeats),
            t_np_p,
        )
    )
    rows.append(
        (
            "percentile p1, 4 bands",
            "jnp.nanpercentile (jit)",
            median_ms(lambda: jnp_p(refl_j), args.jnp_repeats),
            t_np_p,
        )
    )
    # --- LeeSpeckle vs scipy.ndimage reference: row added by the sar owner (georax.geo.sar) ---

    print(
        f"georax bench_geo: scene 5x{args.size}x{args.size} uint16, median of {args.repeats} runs"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, cpu_count={os.cpu_count()}, "
        f"jax {jax.__version__} ({jax.default_backend()}), numpy {np.__version__}, "
        f"load avg {os.getloadavg()[0]:.1f}, "
        f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}"
    )
    print(
        f"{'case':<24} {'implementation':<30} {'median ms':>10} {'speed-up vs ref':>16} "
        f"{'page faults/run':>16}"
    )
    for case, impl, t, t_ref in rows:
        print(f"{case:<24} {impl:<30} {t:>10.1f} {t_ref / t:>15.2f}x {FAULTS.get(t, 0.0):>16.0f}")


if __name__ == "__main__":
    main()
