"""Benchmark: patched extract -> apply -> stitch vs unpatched runs, a NumPy patcher and MONAI.

Scene 4 x 2048 x 2048 float32, chip 256, stride 224 (9 x 9 chips, redundancy 1.27), Hann window.
Prints one table of medians (>= 5 runs) with ratios against references measured in the same run,
then memory figures, plus the machine (CPU count, versions).

    python benchmarks/bench_patch.py            # timings + in-memory and small streaming memory
    python benchmarks/bench_patch.py --big      # + streaming a 4 x 16384 x 16384 float32 COG

The MONAI row needs the ``bench`` extra (``pip install torch==2.13.0`` first, then ``monai``);
without torch/monai it is skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import georax as gx
from georax.patch import (
    ApplyToChips,
    Gaussian,
    GridSampler,
    Hann,
    OverlapAdd,
    Patcher,
    Patchwise,
    Rectangular,
    RegularStride,
    Stitch,
    window_2d,
)

from _util import round_robin_ms

BANDS, SIZE, CHIP, STRIDE = 4, 2048, 256, 224


def block(x: Any) -> Any:
    return jax.block_until_ready(x)


class ConvNet(eqx.Module):
    """4 -> 16 -> 1 channels, 3x3 convs with 'same' zero padding, ReLU between."""

    c1: eqx.nn.Conv2d
    c2: eqx.nn.Conv2d

    def __init__(self, key: jax.Array) -> None:
        k1, k2 = jax.random.split(key)
        self.c1 = eqx.nn.Conv2d(4, 16, 3, padding=1, key=k1)
        self.c2 = eqx.nn.Conv2d(16, 1, 3, padding=1, key=k2)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.c2(jax.nn.relu(self.c1(x)))


def numpy_patcher(x: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """A plain NumPy sliding-window patcher (the peers' approach): a Python loop over chips."""
    h, w = x.shape[-2:]
    starts = list(range(0, h - CHIP + 1, STRIDE))
    if starts[-1] + CHIP < h:
        starts.append(h - CHIP)
    win = window_2d("hann", (CHIP, CHIP))
    out = np.zeros_like(x)
    norm = np.zeros((h, w), np.float32)
    for r in starts:
        for c in starts:
            out[:, r : r + CHIP, c : c + CHIP] += fn(x[:, r : r + CHIP, c : c + CHIP]) * win
            norm[r : r + CHIP, c : c + CHIP] += win
    return out / norm


def monai_runner(net: ConvNet, x: np.ndarray) -> Callable[[Any], Any] | str:
    """MONAI's ``sliding_window_inference`` on the same net, grid and window as ours.

    Same grid: MONAI's interval is ``int(roi * (1 - overlap)) = 224`` and its last window is
    flush with the edge, like our regular sampler; neither pads a scene larger than the chip.
    Same window: MONAI's Gaussian (``sigma_scale=0.125``, sampled at pixel centres) is ours,
    except that ``compute_importance_map`` clamps every weight below 1e-3 up to 1e-3; we pass our
    window as ``roi_weight_map`` so both blend identically. Its default map (``run(None)``) is
    run once as well, for the record of what the clamp changes.

    **Returns:** ``run(weight_map=ours) -> (1, 1, H, W) tensor``, or why MONAI is skipped.
    """
    try:
        import torch
        from monai.inferers import sliding_window_inference
    except ImportError as e:
        return f"skipped: {e} (pip install torch==2.13.0, then monai)"
    tnet = torch.nn.Sequential(
        torch.nn.Conv2d(4, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 1, 3, padding=1)
    ).eval()
    with torch.no_grad():
        for layer, conv in ((tnet[0], net.c1), (tnet[2], net.c2)):
            layer.weight.copy_(torch.from_numpy(np.array(conv.weight)))
            layer.bias.copy_(torch.from_numpy(np.array(conv.bias).reshape(-1)))
    xt = torch.from_numpy(np.array(x))[None]
    ours = torch.from_numpy(window_2d("gaussian", (CHIP, CHIP), 0.125))

    def run(weight_map: Any = ours) -> Any:
        with torch.inference_mode():
            return sliding_window_inference(
                xt,
                (CHIP, CHIP),
                8,
                tnet,
                overlap=1 - STRIDE / CHIP,
                mode="gaussian",
                sigma_scale=0.125,
                roi_weight_map=weight_map,
            )

    return run


GENERATE = textwrap.dedent(
    """
    import sys, os, numpy as np, rasterio, rasterio.shutil
    from rasterio.windows import Window
    size, src = int(sys.argv[1]), sys.argv[2]
    tiled = src + ".gen.tif"
    # written 512 rows at a time: the generator holds one strip (32 MiB at 16384), not the scene
    with rasterio.open(tiled, "w", driver="GTiff", width=size, height=size, count=4,
                       dtype="float32", tiled=True, blockxsize=512, blockysize=512,
                       BIGTIFF="YES", crs="EPSG:32630",
                       transform=rasterio.Affine(10, 0, 4e5, 0, -10, 5e6)) as d:
        rng = np.random.default_rng(0)
        for r in range(0, size, 512):
            d.write(rng.random((4, 512, size), dtype=np.float32), window=Window(0, r, size, 512))
    with rasterio.Env(GDAL_CACHEMAX=128):
        rasterio.shutil.copy(tiled, src, driver="COG", compress="NONE", BIGTIFF="YES",
                             OVERVIEWS="NONE")
    os.remove(tiled)
    """
)

STREAM = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np, rasterio
    from rasterio.windows import Window
    import georax as gx
    from georax.patch import Patcher, Patchwise
    from georax.patch.streaming import stream_patchwise
    src, dst = sys.argv[1], sys.argv[2]

    def peak_kb():
        # VmHWM: this process image's own peak RSS. ru_maxrss is not used: Linux carries the
        # RSS of the forked parent (the benchmark, ~1.4 GiB with jax and torch loaded) over
        # exec into the child's ru_maxrss.
        try:
            with open("/proc/self/status") as f:
                return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:"))
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    before = peak_kb()
    pw = Patchwise(Patcher.regular(256, 224, window="hann"), gx.Lambda(lambda c: 2 * c + 1), 8)
    t0 = time.perf_counter()
    stream_patchwise(pw, src, dst, strip_rows=448, compress="NONE", gdal_cache_mb=128)
    run_s = time.perf_counter() - t0
    peak = peak_kb()
    with rasterio.open(dst) as o, rasterio.open(src) as i:
        n = i.height
        ok = True  # corners, centre and a strip seam (rows 447..449 at strip_rows 448)
        for r, c in ((0, 0), (n - 64, n - 64), (n // 2, n // 2), (440, 100), (0, n - 64)):
            w = Window(c, r, 64, 64)
            ok &= bool(np.allclose(o.read(window=w), 2 * i.read(window=w) + 1, atol=1e-5))
    print(json.dumps({"peak_kb": peak, "before_kb": before, "run_s": run_s, "ok": ok}))
    """
)


def stream_memory(size: int) -> dict[str, Any]:
    """Generate a ``4 x size x size`` float32 COG in one subprocess, stream it in another.

    The streaming subprocess's peak RSS (``VmHWM`` of its own image, see ``STREAM``) covers only
    its imports and the streaming pass, not the generator or this process. Files live in
    ``$BENCH_TMP`` (default: the system temp dir) and are deleted afterwards.
    """
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        src, dst = f"{d}/in_cog.tif", f"{d}/out_cog.tif"
        t0 = time.perf_counter()
        gen = subprocess.run(
            [sys.executable, "-c", GENERATE, str(size), src], capture_output=True, text=True
        )
        if gen.returncode != 0:
            raise RuntimeError(gen.stderr[-3000:])
        gen_s = time.perf_counter() - t0
        res = subprocess.run(
            [sys.executable, "-c", STREAM, src, dst], capture_output=True, text=True
        )
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-3000:])
    return {**json.loads(res.stdout.strip().splitlines()[-1]), "gen_s": gen_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--big", action="store_true", help="stream a 4x16384x16384 COG (~4 GiB)")
    args = ap.parse_args()
    runs = max(5, args.runs)

    x = jax.random.uniform(jax.random.key(0), (BANDS, SIZE, SIZE), jnp.float32)
    x = block(x)
    xn = np.asarray(x)
    patcher = Patcher(Rectangular(CHIP), RegularStride(STRIDE), Hann(), OverlapAdd())
    n_chips = len(patcher.layout((SIZE, SIZE))[0])
    redundancy = n_chips * CHIP * CHIP / (SIZE * SIZE)

    point = gx.Lambda(lambda v: 2 * v + 1, name="2x+1")
    unpatched = jax.jit(point)
    fused = jax.jit(Patchwise(patcher, point, batch_size=8))
    three = jax.jit(gx.Sequential([GridSampler(patcher), ApplyToChips(point, 8), Stitch()]))
    net = ConvNet(jax.random.key(1))
    model = gx.ModelOp(net)
    net_full = eqx.filter_jit(model)
    net_patched = eqx.filter_jit(Patchwise(patcher, model, batch_size=8))
    gauss = Patcher(Rectangular(CHIP), RegularStride(STRIDE), Gaussian(0.125), OverlapAdd())
    net_patched_g = eqx.filter_jit(Patchwise(gauss, model, batch_size=8))
    net_patched_all = eqx.filter_jit(Patchwise(patcher, model, batch_size=n_chips))

    np.testing.assert_allclose(fused(x), 2 * xn + 1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(three(x), 2 * xn + 1, rtol=1e-5, atol=1e-5)

    rows: list[tuple[str, float | str, str]] = []
    t = round_robin_ms(
        {
            "un": lambda: block(unpatched(x)),
            "fused": lambda: block(fused(x)),
            "three": lambda: block(three(x)),
            "np": lambda: numpy_patcher(xn, lambda c: 2 * c + 1),
        },
        runs,
    )
    t_un, t_fused, t_three, t_np = t["un"], t["fused"], t["three"], t["np"]
    rows += [
        ("pointwise 2x+1, unpatched (jit)", t_un, "1.00x (reference A)"),
        ("pointwise, Patchwise fused (jit)", t_fused, f"{t_fused / t_un:.2f}x A (target <= 5x)"),
        ("pointwise, GridSampler>Apply>Stitch", t_three, f"{t_three / t_un:.2f}x A"),
        ("pointwise, NumPy loop patcher", t_np, f"{t_np / t_un:.2f}x A"),
    ]  # fmt: skip
    monai = monai_runner(net, xn)
    conv_runs = {
        "full": lambda: block(net_full(x)),
        "hann": lambda: block(net_patched(x)),
        "gauss": lambda: block(net_patched_g(x)),
        "all": lambda: block(net_patched_all(x)),
    }
    if not isinstance(monai, str):  # in the same interleaved rounds as ours
        conv_runs["monai"] = monai
    t = round_robin_ms(conv_runs, runs)
    t_net, t_net_p, t_net_g, t_net_all = t["full"], t["hann"], t["gauss"], t["all"]
    ref_b = t_net * redundancy
    rows += [
        ("conv net 4-16-1, unpatched (jit)", t_net, f"1.00x; x redundancy {redundancy:.2f} = "
         f"{ref_b:.1f} ms (reference B)"),
        ("conv net, Patchwise Hann (jit)", t_net_p, f"{t_net_p / ref_b:.2f}x B (target <= 1.15)"),
        ("conv net, Patchwise Gaussian (jit)", t_net_g, f"{t_net_g / ref_b:.2f}x B"),
        (f"conv net, Patchwise Hann, batch {n_chips}", t_net_all, f"{t_net_all / ref_b:.2f}x B"),
    ]  # fmt: skip
    if isinstance(monai, str):
        rows.append(("conv net, MONAI sliding_window (torch)", "-", monai))
        agree = ""
    else:
        t_m, y_m, y_m_default = t["monai"], monai()[0].numpy(), monai(None)[0].numpy()
        ours = np.asarray(net_patched_g(x))
        full = np.asarray(net_full(x))
        interior = (slice(None), slice(8, -8), slice(8, -8))
        d = np.abs(ours[interior] - y_m[interior])
        scale = float(np.abs(full).max())
        agree = (
            f"MONAI vs ours, same grid and window (our Gaussian sigma 0.125 passed as "
            f"roi_weight_map): interior |diff| max {d.max():.2e}, everywhere "
            f"{np.abs(ours - y_m).max():.2e} (output scale {scale:.2f}); ours vs unpatched "
            f"{np.abs(ours - full).max():.2e}, MONAI vs unpatched {np.abs(y_m - full).max():.2e}"
            f"\n# MONAI with its default Gaussian map (weights clamped up to >= 1e-3, so the "
            f"zero-padded chip-edge pixels weigh up to ~1000x more in the 4-chip corners): vs "
            f"ours {np.abs(ours[interior] - y_m_default[interior]).max():.2e}, vs unpatched "
            f"{np.abs(y_m_default - full).max():.2e}"
        )
        rows.append(
            ("conv net, MONAI sliding_window (torch)", t_m,
             f"{t_m / t_net_g:.2f}x ours Gaussian (target >= 1.5)")
        )  # fmt: skip

    print(f"# bench_patch: {BANDS}x{SIZE}x{SIZE} float32, chip {CHIP}, stride {STRIDE}, "
          f"{n_chips} chips, Hann, batch 8, median of {runs} runs")  # fmt: skip
    print(f"# machine: {platform.machine()} {os.cpu_count()} CPUs, python "
          f"{platform.python_version()}, jax {jax.__version__}, equinox {eqx.__version__}, "
          f"backend {jax.default_backend()}")  # fmt: skip
    print(f"| {'run':<40} | {'median ms':>9} | ratio |")
    print(f"|{'-' * 42}|{'-' * 11}|-------|")
    for name, ms, ratio in rows:
        cell = f"{ms:9.1f}" if isinstance(ms, float) else f"{ms:>9}"
        print(f"| {name:<40} | {cell} | {ratio} |")
    if agree:
        print(f"# {agree}")

    io_bytes = 2 * x.size * 4  # input + output, both 4x2048x2048 float32
    for name, f in (("Patchwise fused", fused), ("GridSampler>Apply>Stitch", three)):
        mem = f.lower(x).compile().memory_analysis()
        total = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
        print(f"# in-memory peak (XLA buffers, {name}): {total / 2**20:.0f} MiB = "
              f"{total / io_bytes:.2f}x input+output bytes (target <= 3x)")  # fmt: skip
    sizes = [4096] + ([16384] if args.big else [])
    for size in sizes:
        r = stream_memory(size)
        scene_mib = 4 * size * size * 4 / 2**20
        print(f"# streaming 4x{size}x{size} float32 COG ({scene_mib:.0f} MiB in, as much out): "
              f"peak RSS {r['peak_kb'] / 2**20:.2f} GiB (target <= 1.5 GiB; "
              f"{r['before_kb'] / 2**20:.2f} GiB after imports), {r['run_s']:.1f} s "
              f"(+{r['gen_s']:.0f} s generating the input), "
              f"output check {'ok' if r['ok'] else 'FAILED'}")  # fmt: skip
    if not args.big:
        print("# (pass --big for the 4x16384x16384 streaming run)")


if __name__ == "__main__":
    main()
