"""Seed case 1 -- notebook exploration: look inside a compiled chain with ``gx.Tap``.

A researcher wants to see intermediate state without breaking the pipeline into ten variables.
``Tap`` is an identity operator with a host-side side effect (``jax.debug.callback``), so it fires
with the concrete values of the run even when the whole chain is compiled by ``jax.jit``. Here the
taps record per-band statistics after each stage of the seeds' chain (cloud mask -> DN to
reflectance -> dark-object subtraction -> NDVI) on the bundled Sentinel-2-like scene; the example
prints them like the seed does and saves a figure of them (matplotlib, Agg backend) plus the
numbers as JSON.

Run: ``python examples/01_notebook_exploration.py [OUTPUT_DIR] [--size N] [--seed S]``
(default output folder ``./georax-out/``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")  # headless: write files, never open windows
import matplotlib.pyplot as plt

import georax as gx
import georax.data as gd
from georax.geo.cloud import MaskClouds
from georax.geo.indices import NDVI
from georax.geo.radiometry import DarkObjectSubtraction, DNToReflectance


def band_stats(stage: str, log: list[dict[str, Any]]) -> gx.Tap:
    """A Tap that appends per-band statistics of whatever flows past it to ``log``."""

    def record(gt: gx.GeoTensor) -> None:
        v = np.asarray(gt.values, dtype=np.float64)
        if v.ndim == 2:
            v = v[None]
        names = gt.band_names or tuple(f"band{i}" for i in range(v.shape[0]))
        finite = np.isfinite(v)
        log.append(
            {
                "stage": stage,
                "bands": list(names),
                "nan_fraction": float(1.0 - finite.mean()),
                "mean": [float(np.nanmean(b)) for b in v],
                "p2": [float(np.nanpercentile(b, 2)) for b in v],
                "p98": [float(np.nanpercentile(b, 98)) for b in v],
            }
        )

    return gx.Tap(record)


def build(log: list[dict[str, Any]]) -> gx.Sequential:
    """The seeds' exploration chain with a tap after every stage."""
    return gx.Sequential(
        [
            MaskClouds(qa_band=-1, bits=[10, 11]),  # QA60 opaque + cirrus -> NaN, QA band dropped
            band_stats("after_mask", log),
            DNToReflectance(),  # DN / 10000
            DarkObjectSubtraction(percentile=2, clip_negative=True),  # no negative reflectance
            band_stats("after_correction", log),
            NDVI(red_band=2, nir_band=3),  # bands B02 B03 [B04] [B08] B11 B12
            band_stats("ndvi", log),
        ]
    )


def figure(log: list[dict[str, Any]], ndvi: np.ndarray, path: str) -> None:
    """Per-band mean and 2-98 % range at each stage, and the NDVI map."""
    stages = [s for s in log if s["stage"] != "ndvi"]
    fig, axes = plt.subplots(1, len(stages) + 1, figsize=(5 * (len(stages) + 1), 4))
    for ax, s in zip(axes, stages, strict=False):
        x = np.arange(len(s["bands"]))
        mean, lo, hi = (np.asarray(s[k]) for k in ("mean", "p2", "p98"))
        ax.bar(x, mean, color="tab:blue", alpha=0.7, label="mean")
        ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], fmt="none", ecolor="k", label="p2-p98")
        ax.set_xticks(x, s["bands"])
        ax.set_title(f"{s['stage']} (NaN {s['nan_fraction']:.1%})")
        ax.legend(loc="upper left")
    im = axes[-1].imshow(ndvi, cmap="RdYlGn", vmin=-1, vmax=1)
    axes[-1].set_title("NDVI (clouds masked)")
    fig.colorbar(im, ax=axes[-1], shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Seed case 1: Tap inside a jitted chain")
    parser.add_argument("out", nargs="?", default="georax-out", help="output folder")
    parser.add_argument("--size", type=int, default=512, help="scene size in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    scene = gd.sentinel2_l1c(args.size, seed=args.seed)
    print(f"scene {scene.shape} {scene.dtype} {scene.crs}, bands {scene.band_names}")

    log: list[dict[str, Any]] = []
    viz = jax.jit(build(log))  # the taps are compiled into the program ...
    t0 = time.perf_counter()
    ndvi = jax.block_until_ready(viz(scene))  # ... and still fire, with this run's values
    print(f"compiled + ran in {time.perf_counter() - t0:.2f} s; taps fired: {len(log)}")

    print(f"\nfinal result: NDVI {ndvi.shape}, transform kept: {ndvi.transform == scene.transform}")
    print("\nintermediate stats logged inline (from inside jax.jit):")
    for s in log:
        means = ", ".join(f"{b}={m:.3f}" for b, m in zip(s["bands"], s["mean"], strict=True))
        print(f"  {s['stage']:17s} NaN {s['nan_fraction']:6.1%}   mean {means}")

    # A second call reuses the compiled program; the taps fire again.
    before = len(log)
    jax.block_until_ready(viz(scene))
    print(f"\nsecond call (no recompile): taps fired {len(log) - before} more times")

    fig_path = os.path.join(args.out, "01_notebook_stats.png")
    json_path = os.path.join(args.out, "01_notebook_stats.json")
    figure(log[:before], np.asarray(ndvi.values)[0], fig_path)
    with open(json_path, "w") as f:
        json.dump(log[:before], f, indent=1)
    print(f"\nwrote {fig_path}\nwrote {json_path}")


if __name__ == "__main__":
    main()
