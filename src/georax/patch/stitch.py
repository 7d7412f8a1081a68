"""Pure stitching: accumulate chips into a scene, and the fused extract -> apply -> stitch loop.

The math (for ``aggregation="overlap_add"``): with chip outputs ``y_k`` at positions ``p_k`` and a
window ``w`` (strictly positive, see :mod:`georax.patch.windows`),

    out(q) = sum_k w(q - p_k) y_k(q - p_k) / sum_k w(q - p_k)

over the chips ``k`` covering pixel ``q``. For an identity pipeline ``y_k(q - p_k) = x(q)`` and
``out = x`` up to float32 round-off, for every window, borders included, because the denominator
is never zero on a covered pixel. ``aggregation="mean"`` uses ``w = 1``; ``"max"`` takes the
pixelwise maximum. Pixels no chip covers get ``fill_value``.

Accumulation is a :func:`jax.lax.fori_loop` of ``dynamic_slice`` + ``dynamic_update_slice`` on a
canvas (XLA updates the loop-carried canvas in place), so it compiles to one program, accepts
traced positions, and is differentiable. For a regular grid (positions are the Cartesian product
of per-axis :data:`~georax.patch.geometry.ChipOffsets`) and a separable window, the denominator
factorises into ``outer(sum_i w_r(y - r_i), sum_j w_c(x - c_j))`` and is computed on the host in
1-D (:func:`grid_normaliser`, linear in the axis length) instead of being accumulated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Bool, Float, Int, Shaped

from georax.core.errors import ConfigError, ShapeError
from georax.patch.extract import extract_patches
from georax.patch.geometry import ChipOffsets
from georax.patch.windows import Weights1D, separable

__all__ = [
    "MAX_UNROLLED_BATCHES",
    "STITCH_AGGREGATIONS",
    "accumulate",
    "after",
    "apply_output_shape",
    "axis_weight_sum",
    "finish_stitch",
    "grid_normaliser",
    "map_chips",
    "patchwise",
    "patchwise_accumulate",
    "stitch",
    "unrolled_batches",
]

STITCH_AGGREGATIONS = ("overlap_add", "mean", "max")

ChipFn = Callable[[jax.Array, jax.Array | None], jax.Array]

MAX_UNROLLED_BATCHES = 128
"""Batch loops up to this many batches are unrolled at trace time; longer ones are a ``scan``.

Why unroll: XLA:CPU only hands a convolution to its fast (Eigen, NHWC) kernel after its
``ConvCanonicalization`` pass has transposed it, and that pass visits the *entry* computation
only. A channels-first convolution inside a ``while`` body (``scan``, ``fori_loop``,
``lax.map``) stays a naive loop nest: measured ~2.4x slower on the benchmark's conv net. The
number of batches is static, so the loop is unrolled into one straight-line program (still one
compiled program, traced once per batch: compile time grows with the batch count, hence the
cap). Memory stays bounded by one batch because every batch is made to depend on the canvas
left by the previous one (:func:`after`). A loop whose per-chip function itself contains a batch
loop (nested patching) is not unrolled (callers pass ``max_unrolled=0``): unrolling both levels
would trace the innermost operator ``128 x 128`` times.
"""


def unrolled_batches(n: int, batch_size: int, max_unrolled: int | None = None) -> int:
    """How many times a batch loop over ``n`` chips traces its body (1 when it is a ``scan``).

    **Arguments:**

    - `n`: chips; `batch_size`: chips per batch.
    - `max_unrolled`: the unrolling cap (default :data:`MAX_UNROLLED_BATCHES`, read at call time).

    **Returns:** the number of batches when they are unrolled, else 1.
    """
    cap = MAX_UNROLLED_BATCHES if max_unrolled is None else int(max_unrolled)
    b = max(1, min(int(batch_size), int(n)))
    nb = -(-int(n) // b)
    return nb if 0 < nb <= cap else 1


def after(token: jax.Array, idx: jax.Array) -> jax.Array:
    """``idx`` unchanged, but computed from ``token``: a data dependency that orders work.

    Returns ``idx + min(isnan(t), 0)`` for one element ``t`` of ``token``, which is ``idx + 0``
    for every value of ``t`` (NaN included) but which XLA cannot fold away. Making batch ``i``'s
    chip positions depend on the canvas after batch ``i - 1`` stops XLA:CPU's
    concurrency-optimised scheduler from hoisting every batch's extraction and convolutions to
    the front of an unrolled loop (which keeps all batches' intermediates alive at once: the
    memory of one big vmap). ``jax.lax.optimization_barrier`` does not do this on CPU: it is
    removed before scheduling.
    """
    t = token[(0,) * token.ndim]
    return idx + jnp.minimum((t != t).astype(idx.dtype), 0)


def accumulate(
    canvas: Shaped[Array, "*band H W"],
    chips: Shaped[Array, "n *band h w"],
    positions: Int[Array, "n 2"],
    reduce: str = "add",
) -> Shaped[Array, "*band H W"]:
    """Add (``reduce="add"``) or max (``reduce="max"``) each chip into ``canvas`` at its position.

    A sequential :func:`jax.lax.fori_loop` over the chips: each step reads the canvas window,
    combines it with the chip and writes it back, in place. Sequential on purpose: overlapping
    chips write the same pixels, which a parallel scatter would have to serialise anyway.
    """
    lead = (0,) * (canvas.ndim - 2)
    size = chips.shape[1:]
    positions = jnp.asarray(positions, dtype=jnp.int32)

    def body(i: jax.Array, c: jax.Array) -> jax.Array:
        start = (*lead, positions[i, 0], positions[i, 1])
        cur = lax.dynamic_slice(c, start, size)
        new = cur + chips[i] if reduce == "add" else jnp.maximum(cur, chips[i])
        return lax.dynamic_update_slice(c, new, start)

    return lax.fori_loop(0, chips.shape[0], body, canvas)


def _progression_sum(n: int, first: int, step: int, count: int, w: np.ndarray) -> np.ndarray:
    """``acc[q] = sum_{k < count} w[q - first - k step]`` (terms inside ``w`` only), for
    ``q < n``: the weight sum of ``count`` chips placed every ``step`` pixels from ``first``.

    Closed form in ``O(n + len(w))``: for a pixel at offset ``u = q - first`` the chips covering
    it are ``k_lo..k_hi`` (an interval), and the window samples they contribute are
    ``w[u mod step + m step]`` for consecutive ``m``, so a cumulative sum of ``w`` per residue
    class mod ``step`` turns the sum into one difference.
    """
    c = len(w)
    u = np.arange(n, dtype=np.int64) - first
    acc = np.zeros(n, dtype=np.float64)
    inside = u >= 0
    if count <= 0 or not inside.any():
        return acc
    u = np.where(inside, u, 0)
    k_hi = np.minimum(count - 1, u // step)
    k_lo = np.maximum(0, (u - c) // step + 1)
    r = u % step
    if step >= c:  # chips do not overlap: at most one term, w[r] when r < c
        term = w[np.minimum(r, c - 1)]
        return np.where(inside & (r < c) & (k_lo <= k_hi), term, 0.0)
    rows = -(-c // step)
    table = np.zeros(rows * step, dtype=np.float64)
    table[:c] = w
    cum = np.zeros((rows + 1, step), dtype=np.float64)
    cum[1:] = np.cumsum(table.reshape(rows, step), axis=0)
    m_max = u // step - k_lo  # index m of the largest sample w[r + m step] in the sum
    m_min = u // step - k_hi
    ok = inside & (k_lo <= k_hi)
    m_max = np.where(ok, m_max, 0)
    m_min = np.where(ok, m_min, 0)
    return np.where(ok, cum[m_max + 1, r] - cum[m_min, r], 0.0)


def axis_weight_sum(n: int, starts: tuple[int, ...], w: np.ndarray) -> np.ndarray:
    """The summed 1-D weight ``sum_k w[q - starts[k]]`` at every pixel ``q < n`` of an axis.

    Linear in ``n`` for the starts a regular sampler makes (an arithmetic progression, plus the
    one start flush with the end); any further start that breaks the progression is added as a
    slice.
    """
    s = np.asarray(starts, dtype=np.int64)
    w = np.asarray(w, dtype=np.float64)
    if s.size == 0:
        return np.zeros(n, dtype=np.float64)
    step = int(s[1] - s[0]) if s.size > 1 else 1
    count = 1
    if step > 0:
        diffs = np.diff(s)
        breaks = np.nonzero(diffs != step)[0]
        count = int(breaks[0]) + 1 if breaks.size else int(s.size)
    else:
        step = 1
    acc = _progression_sum(n, int(s[0]), step, count, w)
    for start in s[count:]:  # one start for a regular grid (flush with the end)
        lo = int(start)
        acc[max(lo, 0) : lo + len(w)] += w[max(-lo, 0) : max(n - lo, 0)]
    return acc


def grid_normaliser(
    scene: tuple[int, int], chip: tuple[int, int], offsets: ChipOffsets, weights: Weights1D
) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocals of the per-axis weight sums of a regular grid (host-side, float32).

    **Arguments:**

    - `scene`: the padded scene's ``(H, W)``; `chip`: ``(h, w)``.
    - `offsets`: the per-axis chip starts; `weights`: the separable window.

    **Returns:** ``(inv_rows, inv_cols)`` with ``1 / outer(...)`` equal to the accumulated 2-D
    weight of every pixel. Every entry is finite because the grid covers each axis and the window
    weights are strictly positive.
    """
    out = []
    for n, c, starts, w in zip(scene, chip, offsets, weights, strict=True):
        acc = axis_weight_sum(int(n), tuple(starts), np.asarray(w)[: int(c)])
        if np.any(acc <= 0):
            raise ShapeError(f"chip offsets {tuple(starts)[:8]} do not cover an axis of length {n}")
        out.append((1.0 / acc).astype(np.float32))
    return out[0], out[1]


def _weights_2d(aggregation: str, chip: tuple[int, int], weights: Weights1D | None) -> jax.Array:
    if aggregation == "mean" or weights is None:
        return jnp.ones(chip, dtype=jnp.float32)
    return separable(weights[0], weights[1], jnp.float32)


def _out_dtype(dtype: Any, aggregation: str) -> Any:
    if aggregation == "max":
        return dtype
    return jnp.result_type(dtype, jnp.float32)


def _lowest(dtype: Any) -> Any:
    if jnp.issubdtype(dtype, jnp.floating):
        return -jnp.inf
    if jnp.issubdtype(dtype, jnp.bool_):
        return False
    return jnp.iinfo(dtype).min


def _check_aggregation(aggregation: str) -> None:
    if aggregation not in STITCH_AGGREGATIONS:
        raise ConfigError(
            "stitch", "aggregation", aggregation, f"expected one of {STITCH_AGGREGATIONS}"
        )


def finish_stitch(
    canvas: jax.Array,
    norm: jax.Array | None,
    chip: tuple[int, int],
    *,
    weights: Weights1D | None = None,
    aggregation: str = "overlap_add",
    offsets: ChipOffsets | None = None,
    fill_value: float = 0.0,
) -> jax.Array:
    """Normalise an accumulated canvas (see :func:`patchwise_accumulate`) into the scene.

    **Arguments:**

    - `canvas`: the summed (or maxed) chips, ``(*band, H, W)``.
    - `norm`: the accumulated weight (or coverage) ``(H, W)``; ignored with `offsets`.
    - `chip`, `weights`, `aggregation`, `offsets`, `fill_value`: as in :func:`stitch`.

    **Returns:** the stitched ``(*band, H, W)`` array; uncovered pixels get ``fill_value``.
    """
    scene = (int(canvas.shape[-2]), int(canvas.shape[-1]))
    if aggregation == "max":
        if offsets is not None:
            return canvas
        return jnp.where(norm > 0, canvas, jnp.asarray(fill_value, canvas.dtype))
    if offsets is not None:
        unit = aggregation == "mean" or weights is None
        w1 = (np.ones(chip[0]), np.ones(chip[1])) if unit else weights
        inv_r, inv_c = grid_normaliser(scene, chip, offsets, w1)
        return canvas * jnp.asarray(inv_r)[:, None] * jnp.asarray(inv_c)[None, :]
    covered = norm > 0
    return jnp.where(covered, canvas / jnp.where(covered, norm, 1.0), jnp.asarray(fill_value))


def stitch(
    chips: Shaped[Array, "n *band h w"],
    positions: Int[Array, "n 2"],
    scene: tuple[int, int],
    *,
    weights: Weights1D | None = None,
    aggregation: str = "overlap_add",
    offsets: ChipOffsets | None = None,
    fill_value: float = 0.0,
) -> Float[Array, "*band H W"]:
    """Stitch a chip stack back into a ``scene``-sized array.

    **Arguments:**

    - `chips`: ``(n, *band, h, w)`` chip values.
    - `positions`: ``(n, 2)`` top-left ``(row, col)`` of each chip in the output.
    - `scene`: ``(H, W)`` of the output.
    - `weights`: separable window ``(rows (h,), cols (w,))``; None means boxcar.
    - `aggregation`: ``"overlap_add"`` (normalised weighted), ``"mean"`` or ``"max"``.
    - `offsets`: per-axis starts when positions are their Cartesian product (enables the
      separable host-side normaliser); None to accumulate the weights.
    - `fill_value`: value of pixels no chip covers.

    **Returns:** the stitched array; float for the additive aggregations, the chip dtype for
    ``max``.
    """
    _check_aggregation(aggregation)
    chip = (int(chips.shape[-2]), int(chips.shape[-1]))
    lead = chips.shape[1:-2]
    dtype = _out_dtype(chips.dtype, aggregation)
    positions = jnp.asarray(positions, dtype=jnp.int32)
    norm = None
    if aggregation == "max":
        canvas = jnp.full((*lead, *scene), _lowest(dtype), dtype)
        canvas = accumulate(canvas, chips.astype(dtype), positions, "max")
        if offsets is None:
            ones = jnp.ones((chips.shape[0], *chip), jnp.float32)
            norm = accumulate(jnp.zeros(scene, jnp.float32), ones, positions, "add")
    else:
        w2 = _weights_2d(aggregation, chip, weights)
        canvas = jnp.zeros((*lead, *scene), dtype)
        canvas = accumulate(canvas, chips.astype(dtype) * w2.astype(dtype), positions, "add")
        if offsets is None:
            ws = jnp.broadcast_to(w2, (chips.shape[0], *chip))
            norm = accumulate(jnp.zeros(scene, jnp.float32), ws, positions, "add")
    return finish_stitch(
        canvas,
        norm,
        chip,
        weights=weights,
        aggregation=aggregation,
        offsets=offsets,
        fill_value=fill_value,
    )


def apply_output_shape(
    fn: ChipFn, chip_struct: jax.ShapeDtypeStruct, with_key: bool
) -> jax.ShapeDtypeStruct:
    """The abstract output of ``fn`` on one chip; raises ShapeError unless it is one array."""
    if with_key:
        out = jax.eval_shape(lambda c, k: fn(c, k), chip_struct, jax.random.key(0))
    else:
        out = jax.eval_shape(lambda c: fn(c, None), chip_struct)
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise ShapeError(
            f"the per-chip operator must return one array, got {jax.tree.structure(out)}"
        )
    return out


class _Accumulator:
    """One batch step of :func:`patchwise_accumulate`: cut, run, weight, add into the canvas."""

    def __init__(
        self,
        x: jax.Array,
        fn: ChipFn,
        chip: tuple[int, int],
        out: jax.ShapeDtypeStruct,
        weights: Weights1D | None,
        aggregation: str,
        need_norm: bool,
    ) -> None:
        self.x, self.fn, self.chip = x, fn, chip
        self.aggregation, self.need_norm = aggregation, need_norm
        self.dtype = _out_dtype(out.dtype, aggregation)
        self.lead = out.shape[:-2]
        w2 = _weights_2d(aggregation, chip, weights)
        self.w2 = w2 if aggregation == "max" else w2.astype(self.dtype)

    def initial(self) -> tuple[jax.Array, jax.Array]:
        """The empty canvas (zeros, or the dtype's lowest value for max) and weight sum."""
        scene = (int(self.x.shape[-2]), int(self.x.shape[-1]))
        if self.aggregation == "max":
            canvas = jnp.full((*self.lead, *scene), _lowest(self.dtype), self.dtype)
        else:
            canvas = jnp.zeros((*self.lead, *scene), self.dtype)
        norm = jnp.zeros(scene if self.need_norm else (), jnp.float32)
        return canvas, norm

    def __call__(self, carry: Any, batch: Any) -> tuple[Any, None]:
        canvas, norm = carry
        p, v, k = batch
        chips = extract_patches(self.x, p, self.chip)
        fn = self.fn
        y = jax.vmap(fn)(chips, k) if k is not None else jax.vmap(lambda c: fn(c, None))(chips)
        m = p.shape[0]
        vb = v.reshape((m,) + (1,) * (y.ndim - 1))
        if self.aggregation == "max":
            y = jnp.where(vb, y.astype(self.dtype), _lowest(self.dtype))
            canvas = accumulate(canvas, y, p, "max")
            wn = jnp.ones((m, *self.chip), jnp.float32)
        else:
            y = jnp.where(vb, y.astype(self.dtype) * self.w2, jnp.zeros((), self.dtype))
            canvas = accumulate(canvas, y, p, "add")
            wn = jnp.broadcast_to(self.w2.astype(jnp.float32), (m, *self.chip))
        if self.need_norm:
            wn = jnp.where(v[:, None, None], wn, 0.0)
            norm = accumulate(norm, wn, p, "add")
        return (canvas, norm), None


def _scan_batches(
    step: _Accumulator,
    carry: Any,
    positions: jax.Array,
    valid: jax.Array,
    keys: jax.Array | None,
    b: int,
) -> Any:
    """Run ``step`` over whole batches of ``b`` chips with :func:`jax.lax.scan` (traced once).

    The chips are padded to whole batches; padding chips are invalid and add nothing.
    """
    n = int(positions.shape[0])
    nb = -(-n // b)
    pos = jnp.zeros((nb * b, 2), jnp.int32).at[:n].set(positions).reshape(nb, b, 2)
    ok = jnp.zeros((nb * b,), bool).at[:n].set(valid).reshape(nb, b)
    keys_b = None
    if keys is not None:
        pad = jnp.broadcast_to(keys[:1], (nb * b - n, *keys.shape[1:]))
        keys_b = jnp.concatenate([keys, pad]).reshape(nb, b, *keys.shape[1:])
    carry, _ = lax.scan(step, carry, (pos, ok, keys_b))
    return carry


def _unrolled_batches(
    step: _Accumulator,
    carry: Any,
    positions: jax.Array,
    valid: jax.Array,
    keys: jax.Array | None,
    b: int,
) -> Any:
    """Run ``step`` batch after batch, unrolled at trace time (see :data:`MAX_UNROLLED_BATCHES`).

    The last batch is short rather than padded, so no chip runs twice; each batch's positions
    depend on the canvas the previous batch left (:func:`after`), so one batch is alive at a time.
    """
    n = int(positions.shape[0])
    for lo in range(0, n, b):
        hi = min(lo + b, n)
        p_i = positions[lo:hi] if lo == 0 else after(carry[0], positions[lo:hi])
        k_i = None if keys is None else keys[lo:hi]
        carry, _ = step(carry, (p_i, valid[lo:hi], k_i))
    return carry


def patchwise_accumulate(
    x: Shaped[Array, "*band H W"],
    fn: ChipFn,
    positions: Int[Array, "n 2"],
    chip: tuple[int, int],
    *,
    batch_size: int,
    weights: Weights1D | None = None,
    aggregation: str = "overlap_add",
    need_norm: bool = True,
    valid: Bool[Array, " n"] | None = None,
    keys: jax.Array | None = None,
    max_unrolled: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The accumulation half of :func:`patchwise`: un-normalised canvas and weight sum.

    Split out so that shards of chips can be accumulated on different devices and combined with
    a ``psum`` (``pmax`` for ``aggregation="max"``) before :func:`finish_stitch`.

    **Arguments:** as :func:`patchwise`, plus `need_norm` (accumulate the weight sum; False for
    regular grids, whose normaliser is separable), `valid` (``(n,)`` mask: invalid chips add
    nothing) and `keys` (``(n,)`` per-chip keys or None).

    **Returns:** ``(canvas, norm)``; ``norm`` is a 0-d zero when not accumulated.
    """
    _check_aggregation(aggregation)
    chip = (int(chip[0]), int(chip[1]))
    positions = jnp.asarray(positions, dtype=jnp.int32)
    n = int(positions.shape[0])
    b = max(1, min(int(batch_size), n))
    valid = jnp.ones((n,), bool) if valid is None else jnp.asarray(valid, bool)
    chip_struct = jax.ShapeDtypeStruct((*x.shape[:-2], *chip), x.dtype)
    out = apply_output_shape(fn, chip_struct, keys is not None)
    if tuple(out.shape[-2:]) != chip:
        raise ShapeError(
            f"the per-chip operator changed the chip size from {chip} to {out.shape[-2:]}; "
            "stitching needs outputs of the chip's size"
        )
    step = _Accumulator(x, fn, chip, out, weights, aggregation, need_norm)
    carry = step.initial()
    if unrolled_batches(n, b, max_unrolled) == 1 and -(-n // b) > 1:
        return _scan_batches(step, carry, positions, valid, keys, b)
    return _unrolled_batches(step, carry, positions, valid, keys, b)


def patchwise(
    x: Shaped[Array, "*band H W"],
    fn: ChipFn,
    positions: Int[Array, "n 2"],
    chip: tuple[int, int],
    *,
    batch_size: int,
    weights: Weights1D | None = None,
    aggregation: str = "overlap_add",
    offsets: ChipOffsets | None = None,
    fill_value: float = 0.0,
    key: jax.Array | None = None,
    max_unrolled: int | None = None,
) -> Shaped[Array, "*band_out H W"]:
    """Fused extract -> apply -> stitch over bounded batches of chips, in one compiled loop.

    A loop over batches of ``batch_size`` positions; each step cuts the batch's chips, runs
    ``fn`` on them with :func:`jax.vmap`, weights them and adds them into the canvas. Only one
    batch of chips is alive at a time, so memory is bounded by the input, the output canvas and
    one batch (not by the chip stack, which is never materialised). The loop is unrolled at
    trace time up to ``max_unrolled`` batches (default :data:`MAX_UNROLLED_BATCHES`: XLA:CPU
    runs convolutions inside loop bodies without its fast kernels; see there) and a
    :func:`jax.lax.scan` beyond.

    **Arguments:**

    - `x`: the (padded) scene.
    - `fn`: ``fn(chip, key) -> chip_out``; ``chip_out`` must keep the chip's ``(h, w)``.
    - `positions`: ``(n, 2)`` chip positions in ``x``.
    - `chip`: chip size ``(h, w)``.
    - `batch_size`: chips per vmapped batch.
    - `weights`, `aggregation`, `offsets`, `fill_value`: as in :func:`stitch`.
    - `key`: split into one key per chip for stochastic ``fn`` (None for deterministic ones).
    - `max_unrolled`: unroll at most this many batches (0: always a scan).

    **Returns:** the stitched ``(*band_out, H, W)`` array.
    """
    n = int(jnp.shape(positions)[0])
    keys = None if key is None else jax.random.split(key, n)
    canvas, norm = patchwise_accumulate(
        x,
        fn,
        positions,
        chip,
        batch_size=batch_size,
        weights=weights,
        aggregation=aggregation,
        need_norm=offsets is None,
        keys=keys,
        max_unrolled=max_unrolled,
    )
    return finish_stitch(
        canvas,
        None if offsets is not None else norm,
        chip,
        weights=weights,
        aggregation=aggregation,
        offsets=offsets,
        fill_value=fill_value,
    )


def map_chips(
    fn: ChipFn,
    chips: Shaped[Array, "n *band h w"],
    *,
    batch_size: int,
    key: jax.Array | None = None,
    max_unrolled: int | None = None,
) -> Shaped[Array, "n *band_out h2 w2"]:
    """Apply ``fn`` to every chip, vmapped in batches of ``batch_size`` (bounded working memory).

    Up to ``max_unrolled`` batches (default :data:`MAX_UNROLLED_BATCHES`) the loop is unrolled
    at trace time (fast convolutions on XLA:CPU, see there), each batch reading its chips only
    after the previous batch's output exists (:func:`after`), so one batch's intermediates are
    alive at a time; beyond that it is :func:`jax.lax.map` with ``batch_size`` (a scan over
    vmapped batches). The output stack itself is, of course, materialised.
    """
    n = int(chips.shape[0])
    b = max(1, min(int(batch_size), n))
    keys = None if key is None else jax.random.split(key, n)
    if n == 0 or (unrolled_batches(n, b, max_unrolled) == 1 and -(-n // b) > 1):
        if keys is None:
            return lax.map(lambda c: fn(c, None), chips, batch_size=b)
        return lax.map(lambda ck: fn(ck[0], ck[1]), (chips, keys), batch_size=b)
    outs: list[jax.Array] = []
    for lo in range(0, n, b):
        hi = min(lo + b, n)
        start = jnp.int32(lo) if not outs else after(outs[-1], jnp.int32(lo))
        c = lax.dynamic_slice_in_dim(chips, start, hi - lo)
        if keys is None:
            outs.append(jax.vmap(lambda ci: fn(ci, None))(c))
        else:
            outs.append(jax.vmap(fn)(c, keys[lo:hi]))
    return jnp.concatenate(outs) if len(outs) > 1 else outs[0]
