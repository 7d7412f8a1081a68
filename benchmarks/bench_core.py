"""Does the operator abstraction cost anything once compiled?

1. A 20-step elementwise Sequential on a 4x2048x2048 float32 array under ``jax.jit`` vs the same
   math hand-written as one jitted ``jax.numpy`` function (target ratio <= 1.05).
2. Eager (op-by-op) vs jitted pipeline.
3. Compile time of 20-, 100- and 400-step pipelines (target: roughly linear growth).

Run: ``python benchmarks/bench_core.py [--repeats 7]``
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import georax as gx
from georax.core import leaf, map_values

from _util import median_time, print_table


class Affine1D(gx.Operator):
    """y = tanh(a * x + b) -- an elementwise step with two learnable leaves."""

    a: jax.Array = leaf(1.0)
    b: jax.Array = leaf(0.0)

    def __call__(self, x, *, key=None):  # type: ignore[no-untyped-def]
        return map_values(lambda v: jnp.tanh(v * self.a + self.b), x)


def make_pipeline(n: int) -> gx.Sequential:
    return gx.Sequential([Affine1D(1.0 + 0.01 * i, 0.001 * i) for i in range(n)])


def hand_written(n: int):  # type: ignore[no-untyped-def]
    coeffs = [(1.0 + 0.01 * i, 0.001 * i) for i in range(n)]

    @jax.jit
    def f(x):  # type: ignore[no-untyped-def]
        for a, b in coeffs:
            x = jnp.tanh(x * a + b)
        return x

    return f


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    x = jax.random.uniform(jax.random.key(0), (4, 2048, 2048), jnp.float32)
    pipe = make_pipeline(20)
    jitted = jax.jit(pipe)
    ref = hand_written(20)
    t_ref = median_time(lambda: ref(x), repeats=args.repeats)
    t_jit = median_time(lambda: jitted(x), repeats=args.repeats)
    t_eager = median_time(lambda: pipe(x), repeats=max(3, args.repeats // 2))
    err = float(jnp.max(jnp.abs(jitted(x) - ref(x))))
    print_table(
        "20-step elementwise pipeline, 4x2048x2048 float32 (median of runs)",
        ["variant", "median ms", "ratio vs hand-written jnp (jit)"],
        [
            ["hand-written jnp, jit (reference)", f"{t_ref * 1e3:.1f}", "1.00"],
            [
                "georax Sequential, jax.jit",
                f"{t_jit * 1e3:.1f}",
                f"{t_jit / t_ref:.3f}  (target <= 1.05)",
            ],
            [
                "georax Sequential, eager",
                f"{t_eager * 1e3:.1f}",
                f"{t_eager / t_ref:.2f}  (eager/jit = {t_eager / t_jit:.1f}x)",
            ],
        ],
    )
    print(f"max |georax - reference| = {err:.2e}")

    small = jnp.ones((4, 256, 256), jnp.float32)
    rows = []
    base = None
    for n in (20, 100, 400):
        p = make_pipeline(n)
        t0 = time.perf_counter()
        jax.jit(p).lower(small).compile()
        dt = time.perf_counter() - t0
        base = base or dt / n
        rows.append([str(n), f"{dt * 1e3:.0f}", f"{dt / n * 1e3:.2f}", f"{(dt / n) / base:.2f}"])
    print_table(
        "Trace + compile time vs pipeline length (one run each)",
        ["steps", "compile ms", "ms per step", "per-step ratio vs 20 steps (linear = ~1)"],
        rows,
    )


if __name__ == "__main__":
    main()
