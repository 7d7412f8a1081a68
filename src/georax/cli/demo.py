"""``georax demo``: build, compile and run a pipeline, printing its summary and timings."""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import georax as gx


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser("demo", help="run the demo pipeline and print summary and timings")
    p.add_argument("--size", type=int, default=512, help="scene height and width in pixels")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build a small pipeline, jit it, run it on a generated scene, print summary and timings."""
    from georax.core.combinators import Identity

    x = jax.random.uniform(jax.random.key(0), (4, args.size, args.size), jnp.float32)
    pipe = gx.Sequential([gx.Lambda(lambda v: v * 2.0 + 1.0, name="2x+1"), Identity()])
    print(pipe.summary(x))
    t0 = time.perf_counter()
    compiled = jax.jit(pipe).lower(x).compile()
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(x))
    t_run = time.perf_counter() - t0
    print(
        f"compile {t_compile * 1e3:.1f} ms, run {t_run * 1e3:.1f} ms, mean {float(out.mean()):.4f}"
    )
    return 0
