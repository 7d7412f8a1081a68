"""LeeSpeckle: georax (jax.jit) vs a scipy.ndimage reference, measured in the same run.

The reference is the textbook NumPy/scipy Lee filter (local mean and variance with
``scipy.ndimage.uniform_filter``, same noise model, same boundary mode), i.e. what the seeds' SAR
step would be without JAX. Both run on the same float32 Sentinel-1-like VV/VH scene.

    python benchmarks/bench_sar.py            # 2 x 2048 x 2048, window 7
    python benchmarks/bench_sar.py --size 1024 --window 5 --repeats 7
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
from scipy import ndimage

from georax.geo.sar import LeeSpeckle

from _util import median_time, print_table


def lee_scipy(x: np.ndarray, window: int, cu2: float, mode: str) -> np.ndarray:
    """The reference: Lee MMSE filter with scipy.ndimage.uniform_filter (float32 in and out)."""
    size = (1,) * (x.ndim - 2) + (window, window)
    m = ndimage.uniform_filter(x, size=size, mode=mode)
    m2 = ndimage.uniform_filter(x * x, size=size, mode=mode)
    var = np.maximum(m2 - m * m, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.clip((var - cu2 * m * m) / ((1.0 + cu2) * var), 0.0, 1.0)
    w = np.where(var > 0, w, 0.0)
    return (m + w * (x - m)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="scene height and width")
    parser.add_argument("--bands", type=int, default=2, help="bands (VV, VH)")
    parser.add_argument("--window", type=int, default=7)
    parser.add_argument("--looks", type=float, default=4.4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    shape = (args.bands, args.size, args.size)
    reflectivity = np.exp(rng.normal(-2.5, 0.8, size=(args.bands, 1, 1))) * np.ones(shape)
    reflectivity[:, : args.size // 2] *= 3.0
    x = (reflectivity * rng.gamma(args.looks, 1 / args.looks, size=shape)).astype(np.float32)

    op = LeeSpeckle(window_size=args.window, looks=args.looks, padding="reflect")
    compiled = jax.jit(op)
    xj = jax.device_put(x)
    cu2 = float(np.float32(1.0) / np.float32(args.looks))

    t_ref = median_time(lambda: lee_scipy(x, args.window, cu2, "reflect"), repeats=args.repeats)
    t_jax = median_time(lambda: compiled(xj), repeats=args.repeats)
    ref = lee_scipy(x, args.window, cu2, "reflect")
    diff = float(np.max(np.abs(np.asarray(compiled(xj)) - ref)))

    rows = [
        ["scipy.ndimage reference (eager NumPy)", f"{t_ref * 1e3:.1f}", "1.00x"],
        ["georax LeeSpeckle (jax.jit)", f"{t_jax * 1e3:.1f}", f"{t_ref / t_jax:.2f}x"],
    ]
    print_table(
        f"LeeSpeckle window_size={args.window} on {args.bands}x{args.size}x{args.size} float32 "
        f"(median of {args.repeats}; speed-up vs the scipy reference; max |diff| = {diff:.2e})",
        ["implementation", "median ms", "speed-up"],
        rows,
    )


if __name__ == "__main__":
    main()
