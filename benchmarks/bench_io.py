"""Does georax's I/O layer cost anything over plain rasterio, and does xarray interop copy?

1. Write a 4x4096x4096 uint16 COG (deflate + predictor, 512 px tiles, auto overviews) through
   ``georax.io.write_cog`` (atomic temp-file + rename, dtype/nodata checks) vs the same
   ``rasterio.open(..., driver="COG")`` call. Target ratio <= 1.1.
2. Read it back whole, and a 1024x1024 window by bounds (vs the same pixel window), through
   ``georax.io.read`` (into a GeoTensor, JAX adopting the buffer) vs ``rasterio``'s
   ``src.read``. Target ratio <= 1.1.
3. GeoTensor <-> xarray conversion time and whether it copies (``np.shares_memory``), against a
   full copy of the same array as the reference.
4. Sample-data generation time (the demo/test default input).

Run: ``python benchmarks/bench_io.py [--size 4096] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import rasterio
import rioxarray

import georax.data as gd
import georax.io as gio

from _util import median_time, print_table


def paired_medians(ref, ours, repeats: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Median times of ``ref()`` and ``ours()``, alternated run by run so load drift on a
    shared machine hits both equally (one warm-up each)."""
    jax.block_until_ready(ref())
    jax.block_until_ready(ours())
    a, b = [], []
    for _ in range(repeats):
        for fn, out in ((ref, a), (ours, b)):
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            out.append(time.perf_counter() - t0)
    return statistics.median(a), statistics.median(b)


COG_OPTS = {
    "compress": "deflate",
    "predictor": "YES",
    "blocksize": 512,
    "overview_resampling": "average",
    "overviews": "AUTO",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    n, reps = args.size, args.repeats

    t0 = time.perf_counter()
    scene = gd.sentinel2_l1c(n, seed=0)[:4]  # B02, B03, B04, B08
    gen_big = time.perf_counter() - t0
    gt = scene.replace(values=jnp.asarray(scene.values))
    arr = np.asarray(gt.values)

    with tempfile.TemporaryDirectory() as tmp:
        ours_path, ref_path = os.path.join(tmp, "georax.tif"), os.path.join(tmp, "rio.tif")

        def write_georax() -> None:
            gio.write_cog(gt, ours_path)

        def write_rasterio() -> None:
            profile = {
                "driver": "COG",
                "width": n,
                "height": n,
                "count": 4,
                "dtype": "uint16",
                "crs": gt.crs,
                "transform": gt.transform,
                "nodata": 0,
                **COG_OPTS,
            }
            with rasterio.open(ref_path, "w", **profile) as dst:
                dst.write(arr)
                dst.descriptions = gt.band_names

        rows = []
        w_ref, w_ours = paired_medians(write_rasterio, write_georax, reps)
        rows.append(
            [
                f"write COG 4x{n}x{n}",
                "rasterio.open(driver=COG).write",
                f"{w_ref * 1e3:.0f}",
                f"{w_ours * 1e3:.0f}",
                f"{w_ours / w_ref:.3f}",
            ]
        )
        assert os.path.getsize(ours_path) == os.path.getsize(ref_path)  # same bytes written

        def read_rasterio() -> np.ndarray:
            with rasterio.open(ref_path) as src:
                return src.read()

        def read_georax() -> jax.Array:
            return gio.read(ref_path).values

        r_ref, r_ours = paired_medians(read_rasterio, read_georax, reps)
        rows.append(
            [
                f"read COG 4x{n}x{n}",
                "src.read()",
                f"{r_ref * 1e3:.0f}",
                f"{r_ours * 1e3:.0f}",
                f"{r_ours / r_ref:.3f}",
            ]
        )

        off, k = min(1000, n // 4), min(1024, n // 2)
        left, _, _, top = gt.bounds
        box = (left + 10.0 * off, top - 10.0 * (off + k), left + 10.0 * (off + k), top - 10.0 * off)
        win = rasterio.windows.Window(off, off, k, k)

        def window_rasterio() -> np.ndarray:
            with rasterio.open(ref_path) as src:
                return src.read(window=win)

        def window_georax() -> jax.Array:
            return gio.read(ref_path, bounds=box).values

        assert gio.read(ref_path, bounds=box).shape == (4, k, k)
        k_ref, k_ours = paired_medians(window_rasterio, window_georax, reps)
        rows.append(
            [
                f"read {k}x{k} by bounds",
                "src.read(window=...)",
                f"{k_ref * 1e3:.1f}",
                f"{k_ours * 1e3:.1f}",
                f"{k_ours / k_ref:.3f}",
            ]
        )
        print_table(
            "georax.io vs plain rasterio (medians)",
            ["case", "reference", "ref ms", "georax ms", "ratio"],
            rows,
        )

        # ---------------------------------------------------------------- xarray interop
        loaded = rioxarray.open_rasterio(ref_path).load()
        copy_ref = median_time(lambda: jnp.array(arr, copy=True), repeats=reps)
        to_t = median_time(lambda: gio.to_xarray(gt), repeats=reps)
        da = gio.to_xarray(gt)
        back_t = median_time(lambda: gio.from_xarray(da).values, repeats=reps)
        rio_t = median_time(lambda: gio.from_xarray(loaded).values, repeats=reps)
        rio_copy_t = median_time(lambda: gio.from_xarray(loaded, copy=True).values, repeats=reps)
        shares_to = np.shares_memory(da.values, arr)
        shares_back = gio.from_xarray(da).values is gt.values
        shares_rio = np.shares_memory(np.asarray(gio.from_xarray(loaded).values), loaded.values)
        rows = [
            [
                "GeoTensor -> xarray",
                f"{to_t * 1e3:.2f}",
                f"{copy_ref * 1e3:.1f}",
                f"{to_t / copy_ref:.4f}",
                str(shares_to),
            ],
            [
                "xarray (ours) -> GeoTensor",
                f"{back_t * 1e3:.2f}",
                f"{copy_ref * 1e3:.1f}",
                f"{back_t / copy_ref:.4f}",
                str(shares_back),
            ],
            [
                "rioxarray.load() -> GeoTensor",
                f"{rio_t * 1e3:.2f}",
                f"{copy_ref * 1e3:.1f}",
                f"{rio_t / copy_ref:.4f}",
                str(shares_rio),
            ],
            [
                "  same, copy=True",
                f"{rio_copy_t * 1e3:.2f}",
                f"{copy_ref * 1e3:.1f}",
                f"{rio_copy_t / copy_ref:.4f}",
                "False",
            ],
        ]
        aligned = loaded.values.ctypes.data % 64 == 0
        print_table(
            f"xarray interop, 4x{n}x{n} uint16 (reference: one full copy; rioxarray buffer "
            f"64-byte aligned: {aligned})",
            ["conversion", "ms", "copy ms", "ratio", "no copy"],
            rows,
        )

    gen_small = median_time(lambda: gd.sentinel2_l1c(512, seed=0), repeats=reps)
    print_table(
        "sample data generation (numpy)",
        ["scene", "seconds"],
        [
            ["sentinel2_l1c 512x512 (7 bands)", f"{gen_small:.3f}"],
            [f"sentinel2_l1c {n}x{n} (once)", f"{gen_big:.2f}"],
        ],
    )


if __name__ == "__main__":
    main()
