"""Active learning: score a whole pool of chips in one compiled program and pick what to label.

The seeds' case 10 scores the pool one scene at a time in a Python loop and warns that scoring
then dominates the labelling budget, and that pure top-k under-explores. Here
:class:`ActiveSampler` scores the pool as **one compiled program**: a score operator (any georax
pipeline ending in a scalar, e.g. ``Sequential([MCDropout(net), BALD(), MeanScalar()])``) is
``vmap``-ed over a batch of chips and batches run one after another
(:func:`georax.patch.map_chips`: unrolled while there are few batches, ``jax.lax.map`` beyond),
so memory is one batch's working set whatever the pool size; the picks come from
``jax.lax.top_k``.

Selection, in this order (every step optional except scoring):

1. **random sub-sampling** (``subsample=m``): score only ``m`` chips drawn without replacement
   (the seeds' "score 10 % of the pool");
2. **tiered scoring** (``prefilter=cheap_op, survivors=s``): score with a cheap operator first,
   keep the ``s`` best, score only those with ``score_op``;
3. **pick** ``k`` with ``mode``:

   - ``"top"``: the ``k`` highest scores;
   - ``"diverse"``: the ``ceil(beta * k)`` highest scores are candidates; their embeddings
     (``embed_op``, default :func:`chip_moments`), computed in the same program, standardised per
     dimension over the candidates, are spread out by k-centre greedy (:func:`k_center_greedy`,
     starting from the best-scoring candidate), so the picks are uncertain *and* unlike each
     other -- not a top-100 that is all one land cover;
   - ``"random"``: ``k`` chips uniformly without replacement (the baseline; nothing is scored).

Pools: a chip stack ``(n, *band, h, w)``, a :class:`georax.patch.Chips`, a scene cut by the
sampler's ``patcher`` (chips are cut batch by batch inside the program; :meth:`ActiveSampler.
score_raster` paints the scores back onto the scene so one can see where the model is unsure),
or any sequence of slices with a loader (:meth:`ActiveSampler.select_from`, e.g. catalog
``GeoSlice`` values with :func:`georax.catalog.load_raster`), loaded and scored in host batches.

**Consistent draws (the default).** A stochastic score sees the *same* random draws on every chip:
every chip is scored with the scoring key ``key_score`` itself, so for MC dropout the same
``samples`` sub-networks score the whole pool (the "consistent MC dropout" of BatchBALD, Kirsch
et al. 2019; baal's ``ConsistentMCDropout``). Each chip's score is still an MC estimate of the same
quantity, but the chips are compared on common random numbers, so a difference between two scores
is not noise from different draws. It is also much cheaper: inside a ``vmap``-ed batch the draws
do not depend on the chip, so JAX makes them once per batch instead of once per chip (for the
16-sample dropout net of ``benchmarks/bench_active.py`` on XLA:CPU, drawing the dropout masks
costs more than the convolutions: 2.8-4x faster scoring). ``consistent=False`` gives each chip
independent draws: chip ``i`` gets ``jax.random.fold_in(key_score, i)``.

**Determinism.** Either way a chip's key is a function of the scoring key and its index in the pool
only: the same key gives the same scores and picks whatever the batch size, the sub-sample or the
kind of pool (a stack and the same chips as slices give the same selection). Ties go to the lower
pool index.

**Batch size.** ``batch_size=None`` uses :data:`DEFAULT_BATCH_SIZE` for the backend, chosen by
measurement (``benchmarks/bench_active.py`` sweeps it): on XLA:CPU a batch whose working set stays
in cache beats a wide ``vmap`` (large buffers are slow there), and up to
:data:`~georax.patch.stitch.MAX_UNROLLED_BATCHES` batches are unrolled so convolutions get XLA:CPU's
fast kernels; on accelerators wide batches fill the device. For a pool of more than
``MAX_UNROLLED_BATCHES`` default batches the default batch grows (up to
:data:`MAX_BATCH_GROWTH` x) so the loop stays unrolled: a ``scan`` would put the convolutions
on XLA:CPU's naive kernel (:meth:`ActiveSampler.batch_for`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, Shaped

from georax.core.carrier import Carrier, values_of
from georax.core.errors import DataError, MissingKeyError, ShapeError
from georax.core.operator import Operator, static
from georax.core.sandbox import Limits
from georax.patch.chips import Chips
from georax.patch.extract import crop_padding, pad_scene
from georax.patch.operators import has_batch_loop
from georax.patch.patcher import Patcher
from georax.patch.pricing import check_trace_steps, inner_limits
from georax.patch.stitch import MAX_UNROLLED_BATCHES, map_chips, stitch, unrolled_batches

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MAX_BATCH_GROWTH",
    "MODES",
    "ActiveSampler",
    "Selection",
    "chip_key",
    "chip_moments",
    "chips_score_raster",
    "default_batch_size",
    "k_center_greedy",
    "random_subset",
    "score_chips",
    "standardize",
    "top_k",
]

MODES = ("top", "diverse", "random")

DEFAULT_BATCH_SIZE: dict[str, int] = {"cpu": 8, "gpu": 256, "tpu": 256}
"""Chips per ``vmap``-ed batch when ``batch_size=None``, per JAX backend (measured with
``benchmarks/bench_active.py``; see there for the sweep). Other backends use the GPU value."""

MAX_BATCH_GROWTH = 4
"""``batch_size=None`` grows the backend's default batch up to this factor for large pools."""

_N_KEYS = 6  # positions, subsample, prefilter, score, embed, random: a fixed split of `key`


def default_batch_size(backend: str | None = None) -> int:
    """:data:`DEFAULT_BATCH_SIZE` for ``backend`` (default: ``jax.default_backend()``)."""
    backend = jax.default_backend() if backend is None else backend
    return DEFAULT_BATCH_SIZE.get(backend, DEFAULT_BATCH_SIZE["gpu"])


# --------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------
def top_k(scores: Float[Array, " n"], k: int) -> tuple[Float[Array, " k"], Int[Array, " k"]]:
    """The ``k`` largest scores and their positions (``jax.lax.top_k``), NaN ranked lowest.

    Ties go to the lower position. NaN (an unscored chip) never outranks a number.
    """
    s = jnp.asarray(scores, jnp.float32)
    s = jnp.where(jnp.isnan(s), -jnp.inf, s)
    values, idx = jax.lax.top_k(s, k)
    return values, idx.astype(jnp.int32)


def random_subset(key: PRNGKeyArray, n: int, m: int) -> Int[Array, " m"]:
    """``m`` distinct indices of ``range(n)``, uniformly at random, in increasing order.

    The ``m`` largest of ``n`` i.i.d. uniforms (``jax.random.uniform(key, (n,))``), sorted.
    """
    u = jax.random.uniform(key, (n,))
    return jnp.sort(jax.lax.top_k(u, m)[1]).astype(jnp.int32)


def standardize(x: Float[Array, "m d"], eps: float = 1e-6) -> Float[Array, "m d"]:
    """Per-column z-scores ``(x - mean) / (std + eps)`` over the rows.

    So that no embedding dimension dominates the distances just by its units (a mean
    reflectance next to a texture statistic).
    """
    x = jnp.asarray(x, jnp.float32)
    return (x - x.mean(axis=0)) / (x.std(axis=0) + eps)


def k_center_greedy(
    embeddings: Float[Array, "m d"], k: int, valid: Bool[Array, " m"] | None = None
) -> Int[Array, " k"]:
    """Greedy k-centre: rows of ``embeddings`` that cover them with the smallest radius.

    Start from row 0; then repeatedly add the row farthest (squared Euclidean distance) from
    every row chosen so far. A 2-approximation of the minimax-radius cover (Gonzalez 1985), the
    "core-set" rule of Sener & Savarese (2018). Deterministic: ties go to the lower row; a chosen
    row is never chosen again (duplicates included). A ``lax.fori_loop`` of ``k - 1`` steps of
    ``O(m d)`` each.

    **Arguments:**

    - `embeddings`: ``(m, d)``, ``m >= k``; put the row to start from first.
    - `k`: rows to choose.
    - `valid`: rows that may be chosen (default all); row 0 is always the first choice. With
      fewer than ``k`` valid rows, invalid ones fill the remaining places (lowest rows first).

    **Returns:** ``(k,)`` int32 row indices in the order chosen.
    """
    e = jnp.asarray(embeddings, jnp.float32)
    m = e.shape[0]
    if k > m:
        raise ShapeError(f"k_center_greedy: cannot choose k={k} of {m} rows")

    def dist(j: Array) -> Array:
        return jnp.sum((e - e[j]) ** 2, axis=1)

    chosen = jnp.zeros((k,), jnp.int32)
    nearest = dist(0)
    if valid is not None:  # invalid rows rank below every valid one, and are still distinct
        nearest = jnp.where(jnp.asarray(valid), nearest, -jnp.finfo(jnp.float32).max)
    nearest = nearest.at[0].set(-jnp.inf)

    def body(i: Array, carry: tuple[Array, Array]) -> tuple[Array, Array]:
        chosen, nearest = carry
        j = jnp.argmax(nearest).astype(jnp.int32)
        nearest = jnp.minimum(nearest, dist(j)).at[j].set(-jnp.inf)
        return chosen.at[i].set(j), nearest

    return jax.lax.fori_loop(1, k, body, (chosen, nearest))[0]


def chip_moments(chip: Shaped[Array, "*band h w"]) -> Float[Array, " d"]:
    """The default chip embedding: per-band mean and standard deviation over the pixels.

    ``(*band, h, w) -> (2 * prod(band),)``: cheap, and enough to tell land covers (water, crops,
    bare soil, towns) apart spectrally and by texture.
    """
    v = jnp.asarray(chip, jnp.float32)
    v = v.reshape(-1, v.shape[-2] * v.shape[-1])
    return jnp.concatenate([v.mean(axis=1), v.std(axis=1)])


def _scalar(out: Any, who: str) -> Array:
    s = values_of(out)
    if jnp.ndim(s) != 0:
        raise ShapeError(
            f"{who} must return one scalar per chip, got shape {tuple(jnp.shape(s))}; end it "
            "with a reduction such as georax.learn.uncertainty.MeanScalar()"
        )
    return jnp.asarray(s, jnp.float32)


def chip_key(
    key: PRNGKeyArray | None, index: Int[Array, ""], consistent: bool
) -> PRNGKeyArray | None:
    """The key pool chip ``index`` is scored with: ``fold_in(key, index)``, or ``key`` itself when
    ``consistent`` (then, under ``vmap``, the key is not batched and neither are the draws made
    from it: they are made once per batch). None without a key.
    """
    if key is None or consistent:
        return key
    return jax.random.fold_in(key, index)


def score_chips(
    score: Callable[[Array, PRNGKeyArray | None], Array],
    get_chip: Callable[[Array], Array],
    ids: Int[Array, " m"],
    *,
    key: PRNGKeyArray | None,
    batch_size: int,
    max_unrolled: int | None = None,
    consistent: bool = False,
) -> Shaped[Array, "m ..."]:
    """``score(get_chip(j), fold_in(key, ids[j]))`` for ``j < m``, in ``vmap``-ed batches.

    The batch loop is :func:`georax.patch.map_chips` over positions ``0..m-1``: one batch's
    chips and intermediates are alive at a time. Chip ``j`` gets the key
    ``jax.random.fold_in(key, ids[j])`` (``None`` without a key), a function of its pool index
    only, so scores do not depend on the batch size or on which other chips are scored; with
    ``consistent=True`` every chip gets ``key`` itself (:func:`chip_key`).

    **Arguments:**

    - `score`: ``score(chip, key_or_None) -> scalar`` (or any per-chip array: the sampler
      computes its ``"diverse"`` embeddings through here too, keyed the same way).
    - `get_chip`: ``get_chip(j) -> chip`` for a traced position ``j``.
    - `ids`: ``(m,)`` pool indices of the chips (for their keys).
    - `key`: the scoring key, or None.
    - `batch_size`: chips per batch; `max_unrolled`: see :func:`georax.patch.map_chips`.
    - `consistent`: the same key for every chip.

    **Returns:** the ``(m, ...)`` stacked outputs: ``(m,)`` scores.
    """
    ids = jnp.asarray(ids, jnp.int32)

    def one(j: Array, _: Any) -> Array:
        return score(get_chip(j), chip_key(key, ids[j], consistent))

    pos = jnp.arange(ids.shape[0], dtype=jnp.int32)
    return map_chips(one, pos, batch_size=batch_size, max_unrolled=max_unrolled)


# --------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------
class Selection(eqx.Module):
    """What :class:`ActiveSampler` picked (a pytree: it comes out of ``jit``).

    **Fields:**

    - `indices`: ``(k,)`` int32 pool indices of the picks, in pick order (descending score for
      ``"top"``, greedy order for ``"diverse"``, random order for ``"random"``).
    - `scores`: ``(k,)`` float32 score of each pick (NaN for ``"random"``: nothing is scored).
    - `pool_scores`: ``(n,)`` float32 score of every pool chip, NaN where it was not scored
      (sub-sampled out, filtered out by the cheap tier, or ``"random"`` mode).
    - `positions`: ``(n, 2)`` int32 top-left ``(row, col)`` of each chip in its scene (scene and
      :class:`~georax.patch.Chips` pools), else None.
    """

    indices: Int[Array, " k"]
    scores: Float[Array, " k"]
    pool_scores: Float[Array, " n"]
    positions: Int[Array, "n 2"] | None = None


# --------------------------------------------------------------------------------------
# The sampler
# --------------------------------------------------------------------------------------
def _score_fn(op: Operator, who: str) -> Callable[[Array, PRNGKeyArray | None], Array]:
    def fn(chip: Array, key: PRNGKeyArray | None) -> Array:
        return _scalar(op(chip) if key is None else op(chip, key=key), who)

    return fn


def _embed_fn(op: Operator | None) -> Callable[[Array, PRNGKeyArray | None], Array]:
    if op is None:
        return lambda chip, key: chip_moments(chip)

    def fn(chip: Array, key: PRNGKeyArray | None) -> Array:
        e = jnp.asarray(values_of(op(chip) if key is None else op(chip, key=key)), jnp.float32)
        return e.reshape(-1)

    return fn


def _cap(op: Operator | None) -> int | None:
    return 0 if op is not None and has_batch_loop(op) else None


class ActiveSampler(Operator):
    """Score a pool of chips in one compiled program and pick ``k`` of them to label.

    See the module docstring for the steps, modes, pools and determinism. Calling it on a pool
    returns a :class:`Selection`; it compiles itself (``eqx.filter_jit``), so a new model's
    weights (after retraining) reuse the compiled program.

    **Arguments:**

    - `score_op`: maps one chip ``(*band, h, w)`` to a scalar (higher = more worth labelling).
      A stochastic one (MC dropout) needs ``key=`` at the call.
    - `k`: chips to pick.
    - `mode`: ``"top"``, ``"diverse"`` or ``"random"``.
    - `beta`: ``"diverse"`` considers the ``ceil(beta * k)`` best-scored chips (``>= 1``).
    - `embed_op`: ``"diverse"``: maps a chip to an embedding (flattened); default
      :func:`chip_moments`.
    - `subsample`: score only this many chips, drawn at random (needs ``key``); None: all.
    - `prefilter`: a cheap score operator run first (tiered scoring); needs `survivors`.
    - `survivors`: how many of the best ``prefilter`` scores ``score_op`` then scores.
    - `patcher`: cut a scene into the pool (regular or random sampler); the call then takes a
      scene and the chips are cut inside the program, batch by batch.
    - `batch_size`: chips per ``vmap``-ed batch; None: :data:`DEFAULT_BATCH_SIZE` of the
      backend, grown for large pools (:meth:`batch_for`).
    - `consistent`: score (and embed) every chip with the same key: the same random draws for
      the whole pool (consistent MC dropout, see the module docstring; cheaper, since the draws
      are made once per batch); False: independent draws, chip ``i`` gets ``fold_in(key, i)``.
    """

    score_op: Operator
    k: int = static()
    mode: str = static(default="top")
    beta: float = static(default=4.0)
    embed_op: Operator | None = None
    subsample: int | None = static(default=None, bounded=False)
    prefilter: Operator | None = None
    survivors: int | None = static(default=None, bounded=False)
    patcher: Patcher | None = None
    batch_size: int | None = static(default=None)
    consistent: bool = static(default=True)

    def __check_init__(self) -> None:
        for name in ("k", "subsample", "survivors", "batch_size"):
            v = getattr(self, name)
            if v is None and name != "k":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                self.fail(name, "must be a positive int" + ("" if name == "k" else " or None"))
        if self.mode not in MODES:
            self.fail("mode", f"must be one of {MODES}")
        if isinstance(self.beta, bool) or not isinstance(self.beta, int | float):
            self.fail("beta", "must be a number >= 1")
        if not self.beta >= 1:
            self.fail("beta", "must be >= 1 (the candidates include the k picks)")
        if (self.prefilter is None) != (self.survivors is None):
            self.fail("survivors", "prefilter and survivors go together (tiered scoring)")
        for name in ("subsample", "survivors"):
            v = getattr(self, name)
            if v is not None and v < self.k:
                self.fail(name, f"must be >= k={self.k} (the picks come from these chips)")
        sub, surv = self.subsample, self.survivors
        if sub is not None and surv is not None and surv > sub:
            self.fail("survivors", f"must be <= subsample={self.subsample}")

    # ---------------------------------------------------------------- sizes
    @property
    def candidates(self) -> int:
        """``ceil(beta * k)``: the candidates of ``"diverse"`` before the pool size caps it."""
        return math.ceil(self.beta * self.k)

    def batch_for(self, n: int) -> int:
        """Chips per batch for a pool of ``n``: `batch_size`, or the backend's default grown so
        the batch loop stays unrolled (at most ``MAX_UNROLLED_BATCHES`` batches), up to
        :data:`MAX_BATCH_GROWTH` times the default.

        Why grow it: a loop of more batches becomes a ``scan``, and XLA:CPU runs a convolution
        inside a loop body with its naive kernel (see :data:`georax.patch.stitch.
        MAX_UNROLLED_BATCHES`), several times slower than a per-chip jitted loop. Past the cap
        the memory bound wins and the loop is a ``scan``.
        """
        if self.batch_size is not None:
            return self.batch_size
        b = default_batch_size()
        return min(max(b, -(-n // MAX_UNROLLED_BATCHES)), MAX_BATCH_GROWTH * b)

    def scored_count(self, n: int) -> int:
        """How many chips ``score_op`` scores in a pool of ``n`` (0 in ``"random"`` mode).

        **Raises:** :class:`~georax.errors.ShapeError` when the pool is too small for `k`,
        `subsample` or `survivors`.
        """
        m = n
        for name in ("subsample", "survivors"):
            v = getattr(self, name)
            if v is not None:
                if v > m:
                    raise ShapeError(
                        f"ActiveSampler.{name}={v} is larger than the {m} chips it draws from "
                        f"(pool of {n})"
                    )
                m = v
        if self.k > m:
            raise ShapeError(f"ActiveSampler.k={self.k}: cannot pick {self.k} of {m} chips")
        return 0 if self.mode == "random" else m

    def _keys(self, key: PRNGKeyArray | None, needs: bool) -> list[PRNGKeyArray | None]:
        if key is None:
            if needs:
                raise MissingKeyError(
                    f"ActiveSampler(mode={self.mode!r}, subsample={self.subsample}) draws at "
                    "random and needs an explicit `key=` (jax.random.key(...))"
                )
            return [None] * _N_KEYS
        return list(jax.random.split(key, _N_KEYS))

    def _needs_key(self) -> bool:
        random_patcher = self.patcher is not None and self.patcher.sampler.requires_key
        return self.mode == "random" or self.subsample is not None or random_patcher

    # ---------------------------------------------------------------- selection logic
    def _choose(
        self,
        n: int,
        keys: list[PRNGKeyArray | None],
        score: Callable[[Operator, Array, PRNGKeyArray | None], Array],
        embed: Callable[[Array, PRNGKeyArray | None], Array],
        exclude: Array | None = None,
    ) -> tuple[Array, Array, Array]:
        """Subsample -> prefilter -> score -> pick, given how to score/embed pool indices.

        ``score(op, ids, key)`` returns ``op``'s score of the chips ``ids``; ``embed(ids, key)``
        their embeddings. Shared by the compiled pool path and the host-batched slice path.
        """
        _, k_sub, k_pre, k_score, k_embed, k_rand = keys
        self.scored_count(n)
        ids = jnp.arange(n, dtype=jnp.int32)
        if self.subsample is not None:
            ids = random_subset(k_sub, n, self.subsample)
        excluded = jnp.zeros((n,), bool) if exclude is None else jnp.asarray(exclude, bool)
        allowed = ~excluded[ids]

        def masked(v: Array) -> Array:  # excluded chips rank below every other (NaN)
            return jnp.where(allowed, v, jnp.nan)

        nan_pool = jnp.full((n,), jnp.nan, jnp.float32)
        if self.mode == "random":
            pick = top_k(masked(jax.random.uniform(k_rand, ids.shape)), self.k)[1]
            return ids[pick], jnp.full((self.k,), jnp.nan, jnp.float32), nan_pool
        if self.prefilter is not None:
            cheap = score(self.prefilter, ids, k_pre)
            survive = top_k(masked(cheap), self.survivors)[1]
            ids, allowed = ids[survive], allowed[survive]
            order = jnp.argsort(ids)
            ids, allowed = ids[order], allowed[order]
        s = score(self.score_op, ids, k_score)
        pool = nan_pool.at[ids].set(s)
        if self.mode == "top":
            pick = top_k(masked(s), self.k)[1]
            return ids[pick], s[pick], pool
        m = min(self.candidates, int(ids.shape[0]))
        _, cand = top_k(masked(s), m)
        emb = embed(ids[cand], k_embed)
        order = k_center_greedy(standardize(emb.reshape(m, -1)), self.k, valid=allowed[cand])
        pick = cand[order]
        return ids[pick], s[pick], pool

    # ---------------------------------------------------------------- pools in memory
    def __call__(
        self,
        x: Any,
        *,
        key: PRNGKeyArray | None = None,
        exclude: Bool[Array, " n"] | None = None,
    ) -> Selection:
        """Pick ``k`` chips of the pool ``x``.

        **Arguments:**

        - `x`: a chip stack ``(n, *band, h, w)`` (array or carrier), a
          :class:`~georax.patch.Chips`, or -- with `patcher` -- a scene ``(*band, H, W)``.
        - `key`: needed for ``"random"``, `subsample`, a random patcher, and stochastic score
          operators.
        - `exclude`: ``(n,)`` bool, chips never to pick (those already labelled): they keep
          their place in the pool, so the program is not recompiled as the labelled set grows.
          They may still be scored (and appear in ``pool_scores``); the pool must hold at least
          ``k`` chips that are not excluded (among the sub-sample, the survivors and, for
          ``"diverse"``, the candidates), or excluded ones fill the missing picks.

        **Returns:** a :class:`Selection`.
        """
        keys = self._keys(key, self._needs_key())
        if self.patcher is not None:
            if isinstance(x, Chips):
                raise ShapeError("ActiveSampler with a patcher takes a scene, got Chips")
            scene = tuple(int(s) for s in self.patcher.check_scene(x))
            return _select_scene(self, values_of(x), scene, keys, exclude)
        if isinstance(x, Chips):
            return _select_stack(self, x.values, x.scene_positions(), keys, exclude)
        v = values_of(x)
        if jnp.ndim(v) < 3:
            raise ShapeError(
                f"ActiveSampler: the pool must be a chip stack (n, *band, h, w), Chips, or a "
                f"scene with `patcher=`; got an array of shape {tuple(jnp.shape(v))}"
            )
        return _select_stack(self, v, None, keys, exclude)

    def _compiled_choose(
        self,
        n: int,
        keys: list[PRNGKeyArray | None],
        get_chip: Callable[[Array], Array],
        exclude: Array | None,
    ) -> tuple[Array, Array, Array]:
        b = self.batch_for(n)

        def score(op: Operator, ids: Array, key: PRNGKeyArray | None) -> Array:
            fn = _score_fn(
                op, f"ActiveSampler.{'score_op' if op is self.score_op else 'prefilter'}"
            )
            return score_chips(
                fn,
                lambda j: get_chip(ids[j]),
                ids,
                key=key,
                batch_size=b,
                max_unrolled=_cap(op),
                consistent=self.consistent,
            )

        def embed(ids: Array, key: PRNGKeyArray | None) -> Array:
            return score_chips(
                _embed_fn(self.embed_op),
                lambda j: get_chip(ids[j]),
                ids,
                key=key,
                batch_size=b,
                max_unrolled=_cap(self.embed_op),
                consistent=self.consistent,
            )

        if exclude is not None and tuple(jnp.shape(exclude)) != (n,):
            raise ShapeError(
                f"ActiveSampler: exclude has shape {tuple(jnp.shape(exclude))}, the pool {n} chips"
            )
        return self._choose(n, keys, score, embed, exclude)

    # ---------------------------------------------------------------- score raster
    def score_raster(self, scene: Any, selection: Selection) -> Any:
        """Paint each chip's score onto the scene it was cut from: where is the model unsure?

        Every pixel gets the largest score of the chips covering it (chips of a regular grid
        without overlap: the chip's own score); pixels covered only by unscored chips, or by
        none, are NaN. Georeferenced like the scene when it is a GeoTensor.

        **Arguments:**

        - `scene`: the scene the selection was made on (with this sampler's `patcher`).
        - `selection`: what this sampler returned for it.

        **Returns:** an ``(H, W)`` float32 array, or a GeoTensor on the scene's grid.
        """
        if self.patcher is None or selection.positions is None:
            raise ShapeError(
                "ActiveSampler.score_raster needs a sampler with a patcher and the Selection it "
                "made on a scene (use georax.learn.active.chips_score_raster for Chips pools)"
            )
        hw = tuple(int(s) for s in self.patcher.check_scene(scene))
        pads = self.patcher.pads(hw)
        raster = _paint(selection.pool_scores, selection.positions, self.patcher.chip, hw, pads)
        return (
            scene.replace(values=raster, band_names=None) if isinstance(scene, Carrier) else raster
        )

    # ---------------------------------------------------------------- pools of slices
    def select_from(
        self,
        items: Iterable[Any],
        loader: Callable[[Any], Any] | None = None,
        *,
        key: PRNGKeyArray | None = None,
        exclude: Bool[Array, " n"] | None = None,
        host_batch: int = 256,
    ) -> Selection:
        """Pick ``k`` of ``items`` (catalog slices, file names, ...) loaded by ``loader``.

        Items are loaded ``host_batch`` at a time, stacked and scored by one compiled program
        per batch shape (the last batch is padded to the same shape), so only one host batch of
        pixels is in memory. Only what a step needs is loaded: a sub-sampled-out item never; the
        survivors of the cheap tier and the ``"diverse"`` candidates a second time. With the
        same key the picks equal those of calling the sampler on the stacked chips.

        **Arguments:**

        - `items`: any iterable (materialised as a list: items are small descriptions).
        - `loader`: ``loader(item) -> chip`` (array or carrier of one fixed shape); default
          :func:`georax.catalog.load_raster` for :class:`~georax.catalog.GeoSlice` items.
        - `key`, `exclude`: as for the call.
        - `host_batch`: items loaded and scored together.

        **Returns:** a :class:`Selection` whose indices index ``list(items)``.
        """
        if self.patcher is not None:
            raise ShapeError("ActiveSampler.select_from takes chips; drop `patcher` for slices")
        if isinstance(host_batch, bool) or not isinstance(host_batch, int) or host_batch < 1:
            raise ShapeError(f"ActiveSampler.select_from: host_batch={host_batch!r} must be >= 1")
        items = list(items)
        if loader is None:
            from georax.catalog import load_raster

            loader = load_raster
        keys = self._keys(key, self._needs_key())
        n = len(items)
        self.scored_count(n)
        shape: list[tuple[int, ...]] = []

        def load(ids: np.ndarray) -> Array:
            chips = []
            for i in ids.tolist():
                v = np.asarray(values_of(loader(items[i])))
                if not shape:
                    shape.append(v.shape)
                if v.shape != shape[0] or v.ndim < 2:
                    what = " ".join(repr(items[i]).split())[:60]
                    raise DataError(
                        f"ActiveSampler.select_from: item {i} ({what}) loaded as shape "
                        f"{v.shape}; every chip must have the shape {shape[0]} (and >= 2 axes)"
                    )
                chips.append(v)
            return jnp.asarray(np.stack(chips))

        def chunks(ids: Array) -> Iterable[tuple[np.ndarray, Array, int]]:
            host = np.asarray(ids)
            for lo in range(0, len(host), host_batch):
                part = host[lo : lo + host_batch]
                real = len(part)
                if real < host_batch and len(host) > host_batch:  # one compiled shape
                    part = np.concatenate([part, np.full(host_batch - real, part[-1])])
                yield part, load(part), real

        b = self.batch_for(min(n, host_batch))

        def score(op: Operator, ids: Array, key: PRNGKeyArray | None) -> Array:
            out = [
                _score_stack(op, stack, jnp.asarray(part), key, b, self.consistent)[:real]
                for part, stack, real in chunks(ids)
            ]
            return jnp.concatenate(out)

        def embed(ids: Array, key: PRNGKeyArray | None) -> Array:
            out = [
                _embed_stack(self.embed_op, stack, jnp.asarray(part), key, b, self.consistent)[
                    :real
                ]
                for part, stack, real in chunks(ids)
            ]
            return jnp.concatenate(out)

        if exclude is not None and tuple(np.shape(exclude)) != (n,):
            raise ShapeError(
                f"ActiveSampler.select_from: exclude has shape {np.shape(exclude)}, items {n}"
            )
        indices, scores, pool = self._choose(n, keys, score, embed, exclude)
        return Selection(indices=indices, scores=scores, pool_scores=pool)

    # ---------------------------------------------------------------- pricing
    def precheck(self, shape: tuple[int, ...], limits: Limits) -> tuple[int, ...]:
        """Price the pool: sizes against `k`, the unrolled batches, the score op on one chip.

        **Returns:** ``(k,)``, the shape of the picks.
        """
        if self.patcher is not None:
            chips = tuple(self.patcher.precheck(shape, limits, who="ActiveSampler.patcher"))
        else:
            chips = tuple(int(s) for s in shape)
            if len(chips) < 3:
                raise ShapeError(
                    f"ActiveSampler: the pool must be a chip stack (n, *band, h, w), got {chips}"
                )
        n, chip = chips[0], chips[1:]
        m = self.scored_count(n)
        b = self.batch_for(n)
        for field, op, count in (
            ("prefilter", self.prefilter, self.subsample or n),
            ("score_op", self.score_op, m),
            ("embed_op", self.embed_op, self.candidates if self.mode == "diverse" else 0),
        ):
            if op is None or count == 0:
                continue
            steps = unrolled_batches(count, b, _cap(op))
            what = f"{count} chips in batches of {b} traced as {steps} unrolled batches"
            check_trace_steps(steps, limits, "ActiveSampler", f"{field}/batch_size", what)
            op.precheck(chip, inner_limits(limits, steps))
        return (self.k,)


# --------------------------------------------------------------------------------------
# Compiled entry points
# --------------------------------------------------------------------------------------
@eqx.filter_jit
def _select_stack(
    sampler: ActiveSampler,
    stack: Array,
    positions: Array | None,
    keys: list[PRNGKeyArray | None],
    exclude: Array | None,
) -> Selection:
    n = int(stack.shape[0])
    indices, scores, pool = sampler._compiled_choose(n, keys, lambda i: stack[i], exclude)
    return Selection(indices=indices, scores=scores, pool_scores=pool, positions=positions)


@eqx.filter_jit
def _select_scene(
    sampler: ActiveSampler,
    values: Array,
    scene: tuple[int, int],
    keys: list[PRNGKeyArray | None],
    exclude: Array | None,
) -> Selection:
    patcher = sampler.patcher
    assert patcher is not None
    pads = patcher.pads(scene)
    padded = pad_scene(values, pads, patcher.padding, patcher.fill_value)
    pos, _ = patcher.layout(scene, keys[0])
    pos = jnp.asarray(pos, jnp.int32)
    lead = values.shape[:-2]
    size = (*lead, *patcher.chip)

    def get_chip(i: Array) -> Array:
        start = (*(jnp.int32(0) for _ in lead), pos[i, 0], pos[i, 1])
        return jax.lax.dynamic_slice(padded, start, size)

    indices, scores, pool = sampler._compiled_choose(int(pos.shape[0]), keys, get_chip, exclude)
    offset = jnp.asarray([pads[0][0], pads[1][0]], jnp.int32)
    return Selection(indices=indices, scores=scores, pool_scores=pool, positions=pos - offset)


@eqx.filter_jit
def _score_stack(
    op: Operator,
    stack: Array,
    ids: Array,
    key: PRNGKeyArray | None,
    batch_size: int,
    consistent: bool,
) -> Array:
    return score_chips(
        _score_fn(op, "ActiveSampler score operator"),
        lambda j: stack[j],
        ids,
        key=key,
        batch_size=batch_size,
        max_unrolled=_cap(op),
        consistent=consistent,
    )


@eqx.filter_jit
def _embed_stack(
    op: Operator | None,
    stack: Array,
    ids: Array,
    key: PRNGKeyArray | None,
    batch_size: int,
    consistent: bool,
) -> Array:
    return score_chips(
        _embed_fn(op),
        lambda j: stack[j],
        ids,
        key=key,
        batch_size=batch_size,
        max_unrolled=_cap(op),
        consistent=consistent,
    )


def _paint(
    scores: Array,
    positions: Array,
    chip: tuple[int, int],
    scene: tuple[int, int],
    pads: tuple[tuple[int, int], tuple[int, int]],
) -> Float[Array, "H W"]:
    """Per-chip scores as a scene raster: max over covering chips, NaN where none scored."""
    s = jnp.asarray(scores, jnp.float32)
    s = jnp.where(jnp.isnan(s), -jnp.inf, s)
    chips = jnp.broadcast_to(s[:, None, None], (s.shape[0], *chip))
    offset = jnp.asarray([pads[0][0], pads[1][0]], jnp.int32)
    padded = (scene[0] + sum(pads[0]), scene[1] + sum(pads[1]))
    out = stitch(
        chips,
        jnp.asarray(positions, jnp.int32) + offset,
        padded,
        aggregation="max",
        fill_value=-jnp.inf,
    )
    out = crop_padding(out, pads, scene)
    return jnp.where(jnp.isneginf(out), jnp.nan, out)


def chips_score_raster(chips: Chips, pool_scores: Float[Array, " n"]) -> Any:
    """:meth:`ActiveSampler.score_raster` for a :class:`~georax.patch.Chips` pool.

    **Arguments:**

    - `chips`: the chips the sampler was called on.
    - `pool_scores`: the selection's ``pool_scores``.

    **Returns:** an ``(H, W)`` array, or a GeoTensor when the chips were cut from one.
    """
    if int(jnp.shape(pool_scores)[0]) != len(chips):
        raise ShapeError(
            f"chips_score_raster: {jnp.shape(pool_scores)[0]} scores for {len(chips)} chips"
        )
    raster = _paint(
        pool_scores, chips.scene_positions(), tuple(chips.chip), chips.scene_shape, chips.pads
    )
    return chips.as_scene(raster)
