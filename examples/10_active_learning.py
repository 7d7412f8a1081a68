"""Active learning: label -> retrain -> score -> select, with the whole pool scored in one program.

The seeds' case 10. A land-cover segmentation net (a small conv net with dropout) learns from
labelled 32 x 32 chips of a synthetic Sentinel-2 scene (``gx.data``: six reflectance bands, the
generator's land-cover truth as labels: water, vegetation, bare soil, urban). Every round:

1. **retrain** the net from scratch on the chips labelled so far (optax Adam, one compiled loop);
2. **score** every chip of the pool scene by its mean BALD (mutual information of 8 Monte-Carlo
   dropout passes): ``ActiveSampler`` cuts the scene into chips *inside* one compiled program
   (``patcher``), scores them in ``vmap``-ed batches and picks with ``lax.top_k``; the chips
   already labelled stay in the pool (``exclude=``), so nothing recompiles between rounds;
3. **select** ``k`` chips to "send to the annotator" (their truth is revealed) three ways:
   ``random`` (the baseline), ``top`` (the most uncertain) and ``diverse`` (the most uncertain
   candidates spread out by k-centre greedy on chip embeddings).

The held-out mean IoU (the rare classes weigh as much as the common ones) is measured after
each round. The script asserts that in the first round (same model, only the selection rule
differs) the diverse picks cover more land-cover classes than the top picks -- the
under-exploration the seed warns about: the most uncertain chips of a large pool are many
near-copies of one kind of place.

Run: ``python examples/10_active_learning.py [OUTPUT_DIR] [--rounds N] [--k K] [--seed S]``
(default output folder ``./georax-out/10``). Writes ``10_accuracy.png`` (held-out mean IoU against
labelled chips, per strategy), ``10_picks.png`` (the pool scene with each strategy's picks and the
first round's BALD score raster), ``10_history.csv`` and ``10_summary.json``.

Training here is the smallest clear form (``eqx.filter_jit`` + optax in a ``lax.fori_loop``);
``georax.learn.make_train_step`` does the same as a reusable piece.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle

import georax as gx
from georax.array.metrics import confusion_matrix, mean_iou
from georax.learn.active import ActiveSampler
from georax.learn.uncertainty import BALD, MCDropout, MeanScalar
from georax.patch import Patcher

CHIP = 32
CLASSES = gx.data.LANDCOVER_CLASSES  # {0: water, 1: vegetation, 2: bare_soil, 3: urban}
STRATEGIES = ("random", "top", "diverse")
COLOURS = {"random": "tab:gray", "top": "tab:red", "diverse": "tab:blue"}


# ----------------------------------------------------------------------------- data
def scene(size: int, seed: int) -> tuple[gx.GeoTensor, np.ndarray]:
    """Six reflectance bands (float32, DN x 1e-4) and the land-cover truth of one scene."""
    kw = {"seed": seed, "cloud_cover": 0.0, "cirrus_cover": 0.0}
    l1c = gx.data.sentinel2_l1c(size, **kw)
    x = l1c.replace(values=jnp.asarray(l1c.values[:6], jnp.float32) * 1e-4, band_names=None)
    return x, np.asarray(gx.data.sentinel2_truth(size, **kw).landcover)


# ----------------------------------------------------------------------------- model
class Net(eqx.Module):
    """conv3x3 (6 -> 24) -> relu -> dropout -> conv3x3 (24 -> 24) -> relu -> dropout -> 1x1 -> 4."""

    c1: eqx.nn.Conv2d
    c2: eqx.nn.Conv2d
    head: eqx.nn.Conv2d
    drop: eqx.nn.Dropout

    def __init__(self, key: jax.Array) -> None:
        k1, k2, k3 = jax.random.split(key, 3)
        self.c1 = eqx.nn.Conv2d(6, 24, 3, padding=1, key=k1)
        self.c2 = eqx.nn.Conv2d(24, 24, 3, padding=1, key=k2)
        self.head = eqx.nn.Conv2d(24, len(CLASSES), 1, key=k3)
        self.drop = eqx.nn.Dropout(0.3)

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        k1, k2 = (None, None) if key is None else jax.random.split(key)
        x = (x - 0.15) / 0.1  # reflectance to roughly unit scale
        h = self.drop(jax.nn.relu(self.c1(x)), key=k1)
        h = self.drop(jax.nn.relu(self.c2(h)), key=k2)
        return self.head(h)


@eqx.filter_jit
def train(
    chips: jax.Array,
    labels: jax.Array,
    labelled: jax.Array,
    count: jax.Array,
    key: jax.Array,
    steps: int,
) -> Net:
    """A fresh net trained on the first ``count`` entries of ``labelled`` (indices into chips).

    ``labelled`` has a fixed length (the final budget), so one compiled program serves every
    round; each step draws a batch of 8 labelled chips with its own key.
    """
    k_init, k_loop = jax.random.split(key)
    net = Net(k_init)
    optimizer = optax.adam(3e-3)
    params, static = eqx.partition(net, eqx.is_inexact_array)
    opt_state = optimizer.init(params)

    def loss_fn(p: Net, x: jax.Array, y: jax.Array, k: jax.Array) -> jax.Array:
        model = eqx.combine(p, static)
        logits = jax.vmap(lambda xi, ki: model(xi, key=ki))(x, jax.random.split(k, x.shape[0]))
        logp = jax.nn.log_softmax(logits, axis=1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    def step(i: jax.Array, carry: tuple[Net, optax.OptState]) -> tuple[Net, optax.OptState]:
        p, s = carry
        k_batch, k_drop = jax.random.split(jax.random.fold_in(k_loop, i))
        pick = labelled[jax.random.randint(k_batch, (8,), 0, count)]
        grads = jax.grad(loss_fn)(p, chips[pick], labels[pick], k_drop)
        updates, s = optimizer.update(grads, s, p)
        return optax.apply_updates(p, updates), s

    params, _ = jax.lax.fori_loop(0, steps, step, (params, opt_state))
    return eqx.combine(params, static)


@eqx.filter_jit
def held_out_miou(net: Net, x: jax.Array, truth: jax.Array) -> jax.Array:
    """Mean IoU over the land-cover classes of the dropout-free net on a held-out scene.

    Mean IoU rather than pixel accuracy: the rare classes (bare soil, urban) weigh as much as
    the common ones, and they are what the labelling budget has to find.
    """
    pred = jnp.argmax(eqx.nn.inference_mode(net)(x), axis=0)
    return mean_iou(confusion_matrix(truth, pred, len(CLASSES)))


# ----------------------------------------------------------------------------- the loop
def dominant_classes(labels: np.ndarray, picks: np.ndarray) -> set[int]:
    """The majority land-cover class of each picked chip."""
    return {int(np.bincount(labels[i].ravel(), minlength=len(CLASSES)).argmax()) for i in picks}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default=os.path.join("georax-out", "10"))
    ap.add_argument("--rounds", type=int, default=4, help="selection rounds after the first fit")
    ap.add_argument("--k", type=int, default=6, help="chips labelled per round")
    ap.add_argument("--initial", type=int, default=4, help="randomly labelled chips to start")
    ap.add_argument("--size", type=int, default=512, help="pool scene side (pixels)")
    ap.add_argument("--steps", type=int, default=200, help="training steps per round")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    t_start = time.perf_counter()

    pool_x, pool_lc = scene(args.size, seed=args.seed + 3)
    test_x, test_lc = scene(256, seed=args.seed + 12)
    patcher = Patcher.regular(CHIP, aggregation="by_index")
    chips = patcher(pool_x)  # the labelling view: chip i of the pool is chips.values[i]
    n = len(chips)
    labels = np.asarray(patcher(jnp.asarray(pool_lc[None], jnp.int32)).values[:, 0])
    budget = args.initial + args.rounds * args.k
    if budget > n:
        sys.exit(f"budget of {budget} chips is larger than the pool of {n} chips")
    print(f"pool: {n} chips of {CHIP}x{CHIP} from a {args.size}x{args.size} scene, k={args.k}")

    score = gx.Sequential([MCDropout(Net(jax.random.key(0)), samples=8), BALD(), MeanScalar()])
    samplers = {
        mode: ActiveSampler(score, k=args.k, mode=mode, beta=4.0, patcher=patcher)
        for mode in STRATEGIES
    }
    root = jax.random.key(args.seed)
    first = np.asarray(jax.random.permutation(jax.random.fold_in(root, 0), n)[: args.initial])
    chips_j, labels_j = jnp.asarray(chips.values), jnp.asarray(labels, jnp.int32)

    history: list[dict[str, float | int | str]] = []
    picks: dict[str, list[np.ndarray]] = {m: [] for m in STRATEGIES}
    first_raster = None
    first_net = None  # round 0 is the same for every mode (same labels, same key): fit it once
    for mode, sampler in samplers.items():
        labelled = list(first)
        for r in range(args.rounds + 1):
            padded = jnp.asarray(labelled + [0] * (budget - len(labelled)), jnp.int32)
            if r > 0 or first_net is None:
                net = train(
                    chips_j,
                    labels_j,
                    padded,
                    jnp.int32(len(labelled)),
                    jax.random.fold_in(root, 1000 + r),  # same init and batches for every mode
                    args.steps,
                )
                first_net = net if r == 0 else first_net
            else:
                net = first_net
            miou = float(held_out_miou(net, test_x.values, jnp.asarray(test_lc)))
            history.append({"mode": mode, "round": r, "labels": len(labelled), "miou": miou})
            print(f"  {mode:<8} round {r}: {len(labelled):>3} labelled chips, mean IoU {miou:.3f}")
            if r == args.rounds:
                break
            exclude = np.zeros(n, bool)
            exclude[labelled] = True
            sampler = eqx.tree_at(lambda s: s.score_op.operators[0].model.model, sampler, net)
            sel = sampler(pool_x, key=jax.random.fold_in(root, 2000 + r), exclude=exclude)
            new = np.asarray(sel.indices)
            assert not exclude[new].any() and len(set(new.tolist())) == args.k
            picks[mode].append(new)
            labelled += new.tolist()  # "the annotator labels them": truth revealed
            if mode == "top" and r == 0:
                first_raster = np.asarray(sampler.score_raster(pool_x, sel).values)

    covered = {m: dominant_classes(labels, picks[m][0]) for m in ("top", "diverse")}
    names = {m: sorted(CLASSES[c] for c in covered[m]) for m in covered}
    print(f"first-round picks cover: top {names['top']}, diverse {names['diverse']}")
    assert len(covered["diverse"]) > len(covered["top"]), (
        f"diverse should cover more land-cover classes than top in the first round: {names}"
    )

    write_outputs(args.out, history, picks, first_raster, pool_x, n, chips, covered)
    print(f"done in {time.perf_counter() - t_start:.0f} s; outputs in {args.out}")


# ----------------------------------------------------------------------------- outputs
def write_outputs(
    out: str,
    history: list[dict[str, float | int | str]],
    picks: dict[str, list[np.ndarray]],
    raster: np.ndarray | None,
    pool_x: gx.GeoTensor,
    n: int,
    chips: gx.patch.Chips,
    covered: dict[str, set[int]],
) -> None:
    with open(os.path.join(out, "10_history.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["mode", "round", "labels", "miou"])
        w.writeheader()
        w.writerows(history)
    final = {m: [h["miou"] for h in history if h["mode"] == m][-1] for m in STRATEGIES}
    summary = {
        "pool_chips": n,
        "final_mean_iou": final,
        "first_round_classes": {m: sorted(CLASSES[c] for c in v) for m, v in covered.items()},
        "picks": {m: [p.tolist() for p in v] for m, v in picks.items()},
    }
    with open(os.path.join(out, "10_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)

    fig, ax = plt.subplots(figsize=(6, 4))
    for m in STRATEGIES:
        rows = [h for h in history if h["mode"] == m]
        ax.plot(
            [h["labels"] for h in rows],
            [h["miou"] for h in rows],
            "o-",
            label=m,
            color=COLOURS[m],
        )
    ax.set_xlabel("labelled chips")
    ax.set_ylabel("held-out mean IoU (4 classes)")
    ax.set_title("Active learning on synthetic Sentinel-2 land cover")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "10_accuracy.png"), dpi=120)
    plt.close(fig)

    rgb = np.asarray(pool_x.values)[[2, 1, 0]].transpose(1, 2, 0)
    rgb = np.clip(rgb / np.percentile(rgb, 99), 0, 1)
    pos = np.asarray(chips.scene_positions())
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.5))
    axes[0].imshow(rgb)
    for m in STRATEGIES:
        for r, p in enumerate(picks[m]):
            for i in p:
                row, col = pos[i]
                axes[0].add_patch(
                    Rectangle(
                        (col, row),
                        CHIP,
                        CHIP,
                        fill=False,
                        lw=1.5,
                        ec=COLOURS[m],
                        alpha=1.0 - 0.15 * r,
                    )
                )
    axes[0].set_title("picks: " + ", ".join(f"{m} ({COLOURS[m][4:]})" for m in STRATEGIES))
    if raster is not None:
        im = axes[1].imshow(raster, cmap="magma")
        fig.colorbar(im, ax=axes[1], fraction=0.046, label="mean BALD (nats)")
    axes[1].set_title("where the first model is unsure (score raster)")
    for a in axes:
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    fig.savefig(os.path.join(out, "10_picks.png"), dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
