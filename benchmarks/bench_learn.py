"""Benchmark: georax.learn train steps vs PyTorch, and Patchwise inference vs MONAI.

The net is :class:`georax.learn.nets.SegNet` (flax nnx; 4 bands -> 16 -> 16 -> 16 -> 1, 3x3
convolutions with dilations 1, 2, 4, ReLU, 1x1 head; ~5k weights) and its PyTorch twin with the
same weights (checked: the same losses and updates, and patchwise outputs agreeing to 1e-4).

1. **Train-step throughput**: one step = forward, sigmoid cross-entropy, backward, Adam update on
   a batch of 16 x 4 x 64 x 64 float32. georax: ``georax.learn.make_train_step`` (one
   ``eqx.filter_jit`` program); PyTorch: the usual eager loop (``zero_grad``, ``backward``,
   ``step``). Target: georax >= 1.0x torch.
2. **Patchwise inference** on a 4 x 2048 x 2048 float32 scene: chips 256, stride 224 (81 chips),
   Gaussian window (sigma 0.125), batches of 8. georax: ``Patchwise`` compiled once; MONAI:
   ``sliding_window_inference`` with the torch twin, the same grid and our window passed as
   ``roi_weight_map`` (so both blend identically). Target: MONAI / georax >= 1.5x. The inference
   part is measured again in a child process with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` for
   both (transparent huge pages for glibc's malloc, which helps torch's large allocations).

Ratios come from the same run: variants are timed in interleaved rounds (medians), so load from
other processes on a shared machine hits them alike.

    python benchmarks/bench_learn.py                 # both parts + the hugetlb rerun
    python benchmarks/bench_learn.py --part train    # or: --part infer; --no-hugetlb

Needs the ``train`` extra (flax) and, for the reference rows, the ``bench`` extra
(``pip install torch==2.13.0`` first -- a CPU wheel -- then ``monai``); without torch/monai the
reference rows say so and the script exits 0.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import equinox as eqx
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import georax as gx
from georax import learn as gl
from georax.learn.nets import SegNet
from georax.patch import (
    Gaussian,
    OverlapAdd,
    Patcher,
    Patchwise,
    Rectangular,
    RegularStride,
    window_2d,
)

from _util import round_robin_ms

BANDS, WIDTH, DILATIONS = 4, 16, (1, 2, 4)
BATCH, CHIP_TRAIN = 16, 64
SIZE, CHIP, STRIDE, SW_BATCH = 2048, 256, 224, 8
LR = 1e-3


def torch_twin(net: SegNet) -> Any:
    """The same net in PyTorch with ``net``'s weights, or why torch is not available."""
    try:
        import torch
    except ImportError as e:
        return f"skipped: {e} (pip install torch==2.13.0)"
    layers: list[Any] = []
    sizes = [BANDS] + [WIDTH] * len(DILATIONS)
    for a, b, d in zip(sizes[:-1], sizes[1:], DILATIONS, strict=True):
        layers += [torch.nn.Conv2d(a, b, 3, padding=d, dilation=d), torch.nn.ReLU()]
    layers.append(torch.nn.Conv2d(WIDTH, 1, 1))
    twin = torch.nn.Sequential(*layers)
    convs = [*net.convs, net.head]
    with torch.no_grad():
        for layer, conv in zip(twin[::2], convs, strict=True):
            # flax kernels are (kh, kw, in, out); torch weights (out, in, kh, kw)
            layer.weight.copy_(torch.from_numpy(np.asarray(conv.kernel[...]).transpose(3, 2, 0, 1)))
            layer.bias.copy_(torch.from_numpy(np.asarray(conv.bias[...])))
    return twin


def monai_runner(twin: Any, x: np.ndarray) -> Callable[[], Any] | str:
    """MONAI's ``sliding_window_inference`` of ``twin`` over ``x`` on our grid and window (our
    Gaussian passed as ``roi_weight_map``: MONAI's own map clamps weights below 1e-3), or why
    it is skipped."""
    if isinstance(twin, str):
        return twin
    try:
        import torch
        from monai.inferers import sliding_window_inference
    except ImportError as e:
        return f"skipped: {e} (pip install torch==2.13.0, then monai)"
    twin.eval()
    xt = torch.from_numpy(x)[None]
    weights = torch.from_numpy(window_2d("gaussian", (CHIP, CHIP), 0.125))

    def run() -> Any:
        with torch.inference_mode():
            return sliding_window_inference(
                xt, (CHIP, CHIP), SW_BATCH, twin, overlap=1 - STRIDE / CHIP,
                mode="gaussian", sigma_scale=0.125, roi_weight_map=weights,
            )  # fmt: skip

    return run


def header() -> None:
    try:
        import torch

        tv = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        tv = "torch not installed"
    print(
        f"# machine: {platform.machine()} {os.cpu_count()} CPUs, python "
        f"{platform.python_version()}, jax {jax.__version__} ({jax.default_backend()}), "
        f"flax {flax.__version__}, {tv}; "
        f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}"
    )


def table(rows: list[tuple[str, float | str, str]]) -> None:
    print(f"| {'run':<44} | {'median ms':>9} | ratio |")
    print(f"|{'-' * 46}|{'-' * 11}|-------|")
    for name, ms, ratio in rows:
        cell = f"{ms:9.1f}" if isinstance(ms, float) else f"{ms:>9}"
        print(f"| {name:<44} | {cell} | {ratio} |")


def bench_train(runs: int, steps: int) -> None:
    net = SegNet(BANDS, WIDTH, DILATIONS, rngs=nnx.Rngs(0))
    pipe = gx.Sequential([gx.ModelOp(net)])
    step = gl.make_train_step(pipe, gl.sigmoid_cross_entropy, optax.adam(LR))
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, BANDS, CHIP_TRAIN, CHIP_TRAIN), dtype=np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0.8).astype(np.float32)
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    twin = torch_twin(net)

    state = {"s": step.init(pipe)}

    def georax_steps() -> None:
        s = state["s"]
        for _ in range(steps):
            s, loss = step(s, (xj, yj))
        jax.block_until_ready(loss)
        state["s"] = s

    fns: dict[str, Callable[[], Any]] = {"georax": georax_steps}
    rows: list[tuple[str, float | str, str]] = []
    if not isinstance(twin, str):
        import torch

        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        # agreement first: the same three updates from the same weights
        ref = gl.make_train_step(pipe, gl.sigmoid_cross_entropy, optax.adam(LR))
        s = ref.init(pipe)
        opt = torch.optim.Adam(twin.parameters(), lr=LR)
        ours_l, theirs_l = [], []
        for _ in range(3):
            s, loss = ref(s, (xj, yj))
            ours_l.append(float(loss))
            opt.zero_grad()
            lt = torch.nn.functional.binary_cross_entropy_with_logits(twin(xt)[:, 0], yt)
            lt.backward()
            opt.step()
            theirs_l.append(lt.item())
        np.testing.assert_allclose(ours_l, theirs_l, rtol=1e-4)
        head = s.pipeline.operators[0].module.head.kernel[...]
        np.testing.assert_allclose(
            np.asarray(head)[0, 0, :, 0], twin[-1].weight.detach().numpy()[0, :, 0, 0], atol=1e-5
        )

        def torch_steps() -> None:
            for _ in range(steps):
                opt.zero_grad()
                lt = torch.nn.functional.binary_cross_entropy_with_logits(twin(xt)[:, 0], yt)
                lt.backward()
                opt.step()
            lt.item()

        fns["torch"] = torch_steps
    t = round_robin_ms(fns, runs)
    per = {k: v / steps for k, v in t.items()}
    print(
        f"\n# train step: batch {BATCH}x{BANDS}x{CHIP_TRAIN}x{CHIP_TRAIN} float32, SegNet "
        f"{BANDS}-{WIDTH}x{len(DILATIONS)}-1, sigmoid cross-entropy, Adam; median of {runs} "
        f"rounds of {steps} steps"
    )
    rows.append(("train step, georax make_train_step (jit)", per["georax"], "1.00x"))
    if isinstance(twin, str):
        rows.append(("train step, PyTorch eager", "-", twin))
    else:
        rows.append(
            ("train step, PyTorch eager (same net/weights)", per["torch"],
             f"torch/georax {per['torch'] / per['georax']:.2f}x (target >= 1.0)")
        )  # fmt: skip
        print(f"# agreement: first 3 losses georax {ours_l} vs torch {theirs_l} (rtol 1e-4)")
    table(rows)


def bench_infer(runs: int) -> None:
    net = SegNet(BANDS, WIDTH, DILATIONS, rngs=nnx.Rngs(1))
    model = gx.ModelOp(net)
    x = np.random.default_rng(1).random((BANDS, SIZE, SIZE), dtype=np.float32)
    xj = jax.block_until_ready(jnp.asarray(x))
    patcher = Patcher(Rectangular(CHIP), RegularStride(STRIDE), Gaussian(0.125), OverlapAdd())
    n_chips = len(patcher.layout((SIZE, SIZE))[0])
    t0 = time.perf_counter()
    infer = eqx.filter_jit(Patchwise(patcher, model, batch_size=SW_BATCH)).lower(xj).compile()
    compile_s = time.perf_counter() - t0
    fns: dict[str, Callable[[], Any]] = {"georax": lambda: jax.block_until_ready(infer(xj))}
    twin = torch_twin(net)
    monai = monai_runner(twin, x)
    if not isinstance(monai, str):
        fns["monai"] = monai
    t = round_robin_ms(fns, runs)
    print(
        f"\n# patchwise inference: {BANDS}x{SIZE}x{SIZE} float32, chip {CHIP}, stride {STRIDE} "
        f"({n_chips} chips), Gaussian 0.125, batch {SW_BATCH}; median of {runs} runs; georax "
        f"compiled once ({compile_s:.1f} s, not timed)"
    )
    rows: list[tuple[str, float | str, str]] = [
        ("inference, georax Patchwise (jit)", t["georax"], "1.00x")
    ]
    if isinstance(monai, str):
        rows.append(("inference, MONAI sliding_window_inference", "-", monai))
        table(rows)
        return
    ours = np.asarray(infer(xj))
    theirs = monai()[0].numpy()
    diff = float(np.abs(ours - theirs).max())
    scale = float(np.abs(ours).max())
    rows.append(
        ("inference, MONAI sliding_window_inference", t["monai"],
         f"MONAI/georax {t['monai'] / t['georax']:.2f}x (target >= 1.5)")
    )  # fmt: skip
    table(rows)
    print(f"# agreement: max |georax - MONAI| = {diff:.2e} (output scale {scale:.2f}; need 1e-4)")
    if diff > 1e-4 * max(1.0, scale):
        raise SystemExit(f"georax and MONAI outputs differ by {diff:.2e}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("train", "infer", "all"), default="all")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10, help="train steps per timed round")
    ap.add_argument("--no-hugetlb", action="store_true", help="skip the hugetlb inference rerun")
    args = ap.parse_args()
    runs = max(5, args.runs)
    header()
    if args.part in ("train", "all"):
        bench_train(runs, args.steps)
    if args.part in ("infer", "all"):
        bench_infer(runs)
        if not args.no_hugetlb and "hugetlb" not in os.environ.get("GLIBC_TUNABLES", ""):
            print("\n# again, in a child process with GLIBC_TUNABLES=glibc.malloc.hugetlb=1:")
            sys.stdout.flush()
            env = {**os.environ, "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
            cmd = [sys.executable, __file__, "--part", "infer", "--runs", str(runs)]
            return subprocess.run(cmd, env=env).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
