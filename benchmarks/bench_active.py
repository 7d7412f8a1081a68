"""Benchmark: scoring an active-learning pool with ``ActiveSampler`` against the ways around it.

The pool: ``--n`` chips (default 4096) of 6 x 64 x 64 float32. Two score operators:

- **heavy**: mean BALD of a small conv net with dropout, 16 Monte-Carlo dropout samples
  (``Sequential([MCDropout(net, samples=16), BALD(), MeanScalar()])``);
- **light**: mean predictive entropy of a per-pixel linear softmax classifier
  (``Sequential([Predictive(conv1x1), PredictiveEntropy(), MeanScalar()])``).

Every row is a chips/s rate; the references are computed in the same run (median of
``--repeats`` runs; the slow loops are timed on a subset and compared per chip):

- ``eager loop``: the seed's way, a Python loop over chips calling the pipeline eagerly;
- ``jit loop``: a Python loop over chips calling the same ``jax.jit``-compiled one-chip score;
- ``roofline``: the bare batched forward, one ``jax.jit(jax.vmap(score))`` over ``--roof``
  chips at once (default 512: all 4096 at once need ~8 GiB of temporaries for the heavy net) --
  no batching logic, no selection; compared per chip;
- ``ActiveSampler``: the sampler (``mode="top"``, k = 64), scoring and selection in one program.

Targets (issue 11): sampler >= 20x the eager loop (heavy), >= 1.0x the jit loop (heavy),
>= 1.5x the jit loop (light), sampler time <= 1.2x the roofline. Peak memory: XLA's temporary
buffers (``compiled.memory_analysis()``, nothing is run) for the sampler with its batches and
for one ``vmap`` over the whole pool. ``--sweep`` times the sampler for several batch sizes
(how ``georax.learn.active.DEFAULT_BATCH_SIZE`` was chosen for the backend).

baal (MC dropout on a torch twin) is compared only when torch and baal are importable.

Run: ``python benchmarks/bench_active.py [--n 4096] [--repeats 3] [--sweep]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import georax as gx
from georax.learn.active import ActiveSampler
from georax.learn.uncertainty import BALD, MCDropout, MeanScalar, Predictive, PredictiveEntropy

from _util import median_time, print_table

BANDS, SIDE, CLASSES, SAMPLES = 6, 64, 4, 16


class DropoutNet(eqx.Module):
    """conv3x3 (6 -> 8) -> relu -> dropout -> conv3x3 (8 -> 8) -> relu -> dropout -> 1x1 -> 4."""

    c1: eqx.nn.Conv2d
    c2: eqx.nn.Conv2d
    head: eqx.nn.Conv2d
    drop: eqx.nn.Dropout

    def __init__(self, key: jax.Array) -> None:
        k1, k2, k3 = jax.random.split(key, 3)
        self.c1 = eqx.nn.Conv2d(BANDS, 8, 3, padding=1, key=k1)
        self.c2 = eqx.nn.Conv2d(8, 8, 3, padding=1, key=k2)
        self.head = eqx.nn.Conv2d(8, CLASSES, 1, key=k3)
        self.drop = eqx.nn.Dropout(0.2)

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        k1, k2 = (None, None) if key is None else jax.random.split(key)
        h = self.drop(jax.nn.relu(self.c1(x)), key=k1)
        h = self.drop(jax.nn.relu(self.c2(h)), key=k2)
        return self.head(h)


def scores() -> dict[str, tuple[gx.Operator, bool]]:
    """The two score operators and whether each needs a key."""
    key = jax.random.key(0)
    heavy = gx.Sequential([MCDropout(DropoutNet(key), samples=SAMPLES), BALD(), MeanScalar()])
    linear = eqx.nn.Conv2d(BANDS, CLASSES, 1, key=jax.random.fold_in(key, 1))
    light = gx.Sequential([Predictive(linear), PredictiveEntropy(), MeanScalar()])
    return {"heavy": (heavy, True), "light": (light, False)}


def chip_fn(
    op: gx.Operator, needs_key: bool
) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    """``f(chip, key, i)``: the operator's score of one chip, keyed per chip like the sampler."""

    def f(chip: jax.Array, key: jax.Array, i: jax.Array) -> jax.Array:
        if needs_key:
            return op(chip, key=jax.random.fold_in(key, i))
        return op(chip)

    return f


def loop_rate(f: Callable[..., Any], pool: jax.Array, key: jax.Array, m: int, reps: int) -> float:
    """Chips/s of a Python loop of ``f(chip, key, i)`` over the first ``m`` chips."""

    def run() -> Any:
        out = [f(pool[i], key, jnp.int32(i)) for i in range(m)]
        return jax.block_until_ready(out)

    return m / median_time(run, repeats=reps)


def temp_bytes(fn: Callable[..., Any], *args: Any) -> int:
    """XLA's temporary buffer bytes of ``jax.jit(fn)`` on ``args`` (compiled, never run)."""
    stats = jax.jit(fn).lower(*args).compile().memory_analysis()
    return int(stats.temp_size_in_bytes) if stats is not None else -1


def baal_rate(pool: np.ndarray, m: int, batch: int, reps: int) -> float | None:
    """Chips/s of baal's MC dropout on a torch twin of the heavy net, or None if unavailable."""
    try:
        import torch
        from baal.bayesian.dropout import MCDropoutModule
    except ImportError:
        return None
    net = torch.nn.Sequential(
        torch.nn.Conv2d(BANDS, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.2),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.2),
        torch.nn.Conv2d(8, CLASSES, 1),
    )
    model = MCDropoutModule(net).eval()
    x = torch.from_numpy(pool[:m])

    def run() -> None:
        with torch.no_grad():
            for lo in range(0, m, batch):
                xb = x[lo : lo + batch]
                rep = xb.repeat(SAMPLES, 1, 1, 1)  # baal's way: replicate the batch per sample
                p = torch.softmax(model(rep), 1).view(SAMPLES, xb.shape[0], CLASSES, SIDE, SIDE)
                pm = p.mean(0)
                h = -(pm * torch.log(pm.clamp_min(1e-12))).sum(1)
                e = -(p * torch.log(p.clamp_min(1e-12))).sum(2).mean(0)
                (h - e).mean((1, 2))

    times = []
    run()
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return m / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096, help="pool chips")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eager", type=int, default=8, help="chips timed for the eager loop")
    ap.add_argument("--loop", type=int, default=256, help="chips timed for the jit loop")
    ap.add_argument("--roof", type=int, default=512, help="chips of the roofline's one vmap")
    ap.add_argument("--batch", type=int, default=None, help="sampler batch (default: backend)")
    ap.add_argument("--sweep", action="store_true", help="also time batch sizes 4..256")
    ap.add_argument("--only", choices=("heavy", "light"), default=None, help="one score only")
    args = ap.parse_args()
    n, reps = args.n, args.repeats

    key = jax.random.key(1)
    pool = jax.random.uniform(jax.random.key(2), (n, BANDS, SIDE, SIDE), jnp.float32)
    ops = scores()
    rows: list[list[str]] = []
    verdicts: list[str] = []
    for name, (op, needs_key) in ops.items():
        if args.only not in (None, name):
            continue
        f = chip_fn(op, needs_key)
        jf = jax.jit(f)
        sampler = ActiveSampler(op, k=64, mode="top", batch_size=args.batch)
        batch = sampler.batch_for(n)
        sampler_key = key if needs_key else None
        t_sampler = median_time(lambda s=sampler, k=sampler_key: s(pool, key=k), repeats=reps)

        m_roof = min(args.roof, n)

        def bare(p: jax.Array, k: jax.Array, f: Callable[..., Any] = f) -> jax.Array:
            return jax.vmap(f, (0, None, 0))(p, k, jnp.arange(p.shape[0], dtype=jnp.int32))

        roof = jax.jit(bare)
        t_roof = median_time(lambda r=roof, m=m_roof: r(pool[:m], key), repeats=reps) * n / m_roof
        rate = n / t_sampler
        jit_rate = loop_rate(jf, pool, key, min(args.loop, n), reps)
        rows += [
            [name, "ActiveSampler", f"{rate:,.0f}", "1.00x", f"batch {batch}, n={n}"],
            [name, "roofline", f"{n / t_roof:,.0f}", f"{t_roof / t_sampler:.2f}x", f"{m_roof}"],
            [name, "jit loop", f"{jit_rate:,.0f}", f"{rate / jit_rate:.2f}x", f"{args.loop}"],
        ]
        jit_target = 1.0 if name == "heavy" else 1.5
        verdicts.append(
            f"{name}: sampler / jit loop = {rate / jit_rate:.2f}x (target >= {jit_target}x) "
            f"{'MET' if rate / jit_rate >= jit_target else 'MISSED'}; sampler / roofline time "
            f"= {t_sampler / t_roof:.2f}x (target <= 1.2x) "
            f"{'MET' if t_sampler / t_roof <= 1.2 else 'MISSED'}"
        )
        if name == "heavy":
            eager_rate = loop_rate(f, pool, key, min(args.eager, n), 1)
            rows.append(
                [name, "eager loop (seed)", f"{eager_rate:,.1f}", f"{rate / eager_rate:.0f}x", ""]
            )
            verdicts.append(
                f"heavy: sampler / eager loop = {rate / eager_rate:.0f}x (target >= 20x) "
                f"{'MET' if rate / eager_rate >= 20 else 'MISSED'}"
            )
            b_rate = baal_rate(np.asarray(pool), min(args.loop, n), 16, reps)
            if b_rate is None:
                verdicts.append("baal: torch/baal not installed; not compared")
            else:
                rows.append([name, "baal (torch)", f"{b_rate:,.0f}", f"{rate / b_rate:.2f}x", ""])
            mem_sampler = temp_bytes(lambda p, k, s=sampler: s(p, key=k).indices, pool, key)
            mem_all = temp_bytes(
                lambda p, k, f=f: jax.vmap(f, (0, None, 0))(p, k, jnp.arange(n)), pool, key
            )
            verdicts.append(
                f"heavy peak temporaries: sampler (batches of {batch}) {mem_sampler / 2**20:,.0f}"
                f" MiB, one vmap over all {n} chips {mem_all / 2**20:,.0f} MiB"
            )
        if args.sweep:
            for b in (4, 16, 64, 256):
                s = ActiveSampler(op, k=64, mode="top", batch_size=b)
                t = median_time(lambda s=s, k=sampler_key: s(pool, key=k), repeats=reps)
                rows.append(
                    [name, f"sampler batch {b}", f"{n / t:,.0f}", f"{t_sampler / t:.2f}x", ""]
                )

    print_table(
        f"Active-learning pool scoring, {n} chips of {BANDS}x{SIDE}x{SIDE} (chips/s; x = the "
        "sampler's speed-up over the row)",
        ["score", "method", "chips/s", "sampler vs row", "note"],
        rows,
    )
    print()
    for v in verdicts:
        print(v)


if __name__ == "__main__":
    main()
