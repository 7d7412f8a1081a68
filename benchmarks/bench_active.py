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

The heavy score is measured twice, each against references keyed the same way: with independent
draws per chip (``consistent=False``: chip ``i`` gets ``fold_in(key, i)``; rows "heavy") and with
the sampler's default ``consistent=True`` (every chip the same key: BatchBALD's consistent MC
dropout, the draws made once per batch; rows "heavy consistent"). The loops and the roofline
compute exactly the sampler's scores (checked on the loop's chips).

Targets (issue 11): sampler >= 20x the eager loop (heavy), >= 1.0x the jit loop (heavy),
>= 1.5x the jit loop (light), sampler time <= 1.2x the roofline. Peak memory: XLA's temporary
buffers (``compiled.memory_analysis()``, nothing is run) for the sampler with its batches and
for one ``vmap`` over the whole pool. ``--sweep`` times the sampler for several batch sizes
(how ``georax.learn.active.DEFAULT_BATCH_SIZE`` was chosen for the backend).

baal (MC dropout on a torch twin: ``ModelWrapper.predict_on_batch`` replicating each batch 16
times, then baal's ``BALD(reduction="mean")``) is compared only when torch and baal are
importable (``pip install baal``).

Run: ``python benchmarks/bench_active.py [--n 4096] [--repeats 3] [--sweep]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import georax as gx
from georax.learn.active import ActiveSampler, chip_key
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
    op: gx.Operator, needs_key: bool, consistent: bool = False
) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    """``f(chip, key, i)``: the operator's score of one chip, keyed per chip like the sampler."""

    def f(chip: jax.Array, key: jax.Array, i: jax.Array) -> jax.Array:
        if needs_key:
            return op(chip, key=chip_key(key, i, consistent))
        return op(chip)

    return f


def loop_rate(
    f: Callable[..., Any], pool: jax.Array, key: jax.Array, m: int, reps: int, sync: bool = False
) -> float:
    """Chips/s of a Python loop of ``f(chip, key, i)`` over the first ``m`` chips.

    ``sync``: the seed's way, ``float(score)`` per chip (the seed's stand-in sorts Python floats).
    """

    def run() -> Any:
        if sync:
            return [float(f(pool[i], key, jnp.int32(i))) for i in range(m)]
        return jax.block_until_ready([f(pool[i], key, jnp.int32(i)) for i in range(m)])

    return m / median_time(run, repeats=reps)


def temp_bytes(fn: Callable[..., Any], *args: Any) -> int:
    """XLA's temporary buffer bytes of ``jax.jit(fn)`` on ``args`` (compiled, never run)."""
    stats = jax.jit(fn).lower(*args).compile().memory_analysis()
    return int(stats.temp_size_in_bytes) if stats is not None else -1


def baal_rate(pool: np.ndarray, m: int, batch: int, reps: int) -> float | None:
    """Chips/s of baal's MC dropout + BALD on a torch twin of the heavy net, or None."""
    try:
        import torch
        from baal.active import heuristics
        from baal.bayesian.dropout import MCDropoutModule
        from baal.modelwrapper import ModelWrapper, TrainingArgs
    except ImportError:
        return None
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(BANDS, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.2),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.2),
        torch.nn.Conv2d(8, CLASSES, 1),
    )
    wrapper = ModelWrapper(
        MCDropoutModule(net), TrainingArgs(use_cuda=False, replicate_in_memory=True)
    )
    heuristic = heuristics.BALD(reduction="mean")
    x = torch.from_numpy(np.array(pool[:m]))  # a writable copy

    def run() -> np.ndarray:
        out = []
        for lo in range(0, m, batch):  # baal's way: each batch replicated SAMPLES times
            logits = wrapper.predict_on_batch(x[lo : lo + batch], iterations=SAMPLES)
            out.append(heuristic.get_uncertainties(logits))  # softmax, BALD, mean per chip
        return np.concatenate(out)

    return m / median_time(run, repeats=reps)


def measure(
    name: str,
    op: gx.Operator,
    needs_key: bool,
    consistent: bool,
    pool: jax.Array,
    key: jax.Array,
    args: argparse.Namespace,
) -> tuple[list[list[str]], list[str], float]:
    """Rows, verdicts and the sampler's time for one score (and one key policy)."""
    n, reps = int(pool.shape[0]), args.repeats
    label = f"{name}{' consistent' if consistent else ''}"
    f = chip_fn(op, needs_key, consistent)
    sampler = ActiveSampler(op, k=64, mode="top", batch_size=args.batch, consistent=consistent)
    sampler_key = key if needs_key else None
    t_sampler = median_time(lambda: sampler(pool, key=sampler_key), repeats=reps)

    # The loops and the roofline score with the sampler's scoring key (the 4th of the 6 keys it
    # splits its key into), so they compute the very scores the sampler does.
    k_score = jax.random.split(key, 6)[3]
    m = min(args.loop, n)
    jf = jax.jit(f)
    looped = np.asarray([jf(pool[i], k_score, jnp.int32(i)) for i in range(m)])
    got = np.asarray(sampler(pool, key=sampler_key).pool_scores[:m])
    np.testing.assert_allclose(got, looped, rtol=1e-4, atol=1e-6)
    jit_rate = loop_rate(jf, pool, k_score, m, reps)

    def bare(p: jax.Array, k: jax.Array) -> jax.Array:
        return jax.vmap(f, (0, None, 0))(p, k, jnp.arange(p.shape[0], dtype=jnp.int32))

    m_roof = min(args.roof, n)
    roof = jax.jit(bare)
    t_roof = median_time(lambda: roof(pool[:m_roof], k_score), repeats=reps) * n / m_roof
    rate = n / t_sampler
    b = sampler.batch_for(n)
    rows = [
        [label, "ActiveSampler", f"{rate:,.0f}", "1.00x", f"batch {b}, n={n}"],
        [label, "roofline", f"{n / t_roof:,.0f}", f"{t_roof / t_sampler:.2f}x", f"{m_roof}"],
        [label, "jit loop", f"{jit_rate:,.0f}", f"{rate / jit_rate:.2f}x", f"{m}"],
    ]
    target = 1.0 if name == "heavy" else 1.5
    verdicts = [
        f"{label}: sampler / jit loop = {rate / jit_rate:.2f}x (target >= {target}x) "
        f"{'MET' if rate / jit_rate >= target else 'MISSED'}; sampler / roofline time "
        f"= {t_sampler / t_roof:.2f}x (target <= 1.2x) "
        f"{'MET' if t_sampler / t_roof <= 1.2 else 'MISSED'}"
    ]
    if name == "heavy":
        mem = temp_bytes(lambda p, k: sampler(p, key=k).indices, pool, key)
        verdicts.append(
            f"{label} peak temporaries: sampler (batches of {b}) {mem / 2**20:,.0f} MiB"
        )
    if args.sweep:
        for sb in (2, 4, 8, 16, 32, 64):
            s = ActiveSampler(op, k=64, mode="top", batch_size=sb, consistent=consistent)
            t = median_time(lambda s=s: s(pool, key=sampler_key), repeats=reps)
            rows.append(
                [label, f"sampler batch {sb}", f"{n / t:,.0f}", f"{t_sampler / t:.2f}x", ""]
            )
    return rows, verdicts, t_sampler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096, help="pool chips")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eager", type=int, default=8, help="chips timed for the eager loop")
    ap.add_argument("--loop", type=int, default=256, help="chips timed for the jit loop")
    ap.add_argument("--roof", type=int, default=512, help="chips of the roofline's one vmap")
    ap.add_argument("--batch", type=int, default=None, help="sampler batch (default: backend)")
    ap.add_argument("--sweep", action="store_true", help="also time batch sizes 2..64")
    ap.add_argument("--only", choices=("heavy", "light"), default=None, help="one score only")
    args = ap.parse_args()
    n = args.n

    key = jax.random.key(1)
    pool = jax.random.uniform(jax.random.key(2), (n, BANDS, SIDE, SIDE), jnp.float32)
    rows: list[list[str]] = []
    verdicts: list[str] = []
    for name, (op, needs_key) in scores().items():
        if args.only not in (None, name):
            continue
        times: dict[bool, float] = {}
        for consistent in (False, True) if needs_key else (False,):
            r, v, times[consistent] = measure(name, op, needs_key, consistent, pool, key, args)
            rows += r
            verdicts += v
        if name != "heavy":
            continue
        f = chip_fn(op, needs_key)
        eager_rate = loop_rate(f, pool, key, min(args.eager, n), 1, sync=True)
        rows.append([name, "eager loop (seed)", f"{eager_rate:,.1f}", "", f"{args.eager}"])
        for consistent, t in times.items():
            x = n / t / eager_rate
            verdicts.append(
                f"heavy{' consistent' if consistent else ''}: sampler / eager loop = {x:.1f}x "
                f"(target >= 20x) {'MET' if x >= 20 else 'MISSED'}"
            )
        b_rate = baal_rate(np.asarray(pool), min(args.loop, n), 16, args.repeats)
        if b_rate is None:
            verdicts.append("baal: torch/baal not installed; not compared")
        else:
            rows.append([name, "baal (torch)", f"{b_rate:,.1f}", "", f"{min(args.loop, n)}"])
            ratios = ", ".join(
                f"{n / t / b_rate:.2f}x{' (consistent)' if c else ''}" for c, t in times.items()
            )
            verdicts.append(f"heavy: sampler / baal = {ratios} (target >= 1.0x)")
        mem_all = temp_bytes(
            lambda p, k, f=f: jax.vmap(f, (0, None, 0))(p, k, jnp.arange(n)), pool, key
        )
        verdicts.append(
            f"heavy peak temporaries: one vmap over all {n} chips {mem_all / 2**20:,.0f} MiB"
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
