"""Pure stitching: accumulate chips into a scene, and the fused extract -> apply -> stitch loop.

The math (for ``mode="overlap_add"``): with chip outputs ``y_k`` at positions ``p_k`` and a
window ``w`` (strictly positive, see :mod:`georax.patch.windows`),

    out(q) = sum_k w(q - p_k) y_k(q - p_k) / sum_k w(q - p_k)

over the chips ``k`` covering pixel ``q``. For an identity pipeline ``y_k(q - p_k) = x(q)`` and
``out = x`` up to float32 round-off, for every window, borders included, because the denominator
is never zero on a covered pixel. ``mode="mean"`` uses ``w = 1``; ``mode="max"`` takes the
pixelwise maximum. Pixels no chip covers get ``fill``.

Accumulation is a :func:`jax.lax.fori_loop` of ``dynamic_slice`` + ``dynamic_update_slice`` on a
canvas (XLA updates the loop-carried canvas in place), so it compiles to one program, accepts
traced positions, and is differentiable. For a regular grid (positions are the Cartesian product
of per-axis starts) and a separable window, the denominator factorises into
``outer(sum_i w_r(y - r_i), sum_j w_c(x - c_j))`` and is computed on the host in 1-D instead of
being accumulated.
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

STITCH_MODES = ("overlap_add", "mean", "max")
Grid = tuple[tuple[int, ...], tuple[int, ...]]
Weights1D = tuple[np.ndarray, np.ndarray]


MAX_UNROLLED_BATCHES = 128
"""Batch loops up to this many batches are unrolled at trace time; longer ones are a ``scan``.

Why unroll: XLA:CPU only hands a convolution to its fast (Eigen, NHWC) kernel after its
``ConvCanonicalization`` pass has transposed it, and that pass visits the *entry* computation
only. A channels-first convolution inside a ``while`` body (``scan``, ``fori_loop``,
``lax.map``) stays a naive loop nest: measured ~2.4x slower on the benchmark's conv net. The
number of batches is static, so the loop is unrolled into one straight-line program (still one
compiled program, traced once per batch: compile time grows with the batch count, hence the
cap). Memory stays bounded by one batch because every batch is made to depend on the canvas
left by the previous one (:func:`after`).
"""


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


def grid_normaliser(
    scene: tuple[int, int], chip: tuple[int, int], grid: Grid, weights: Weights1D
) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocals of the per-axis weight sums of a regular grid (host-side, float32).

    **Returns:** ``(inv_rows, inv_cols)`` with ``1 / outer(...)`` equal to the accumulated 2-D
    weight of every pixel. Every entry is finite because the grid covers each axis and the window
    weights are strictly positive.
    """
    out = []
    for n, c, starts, w in zip(scene, chip, grid, weights, strict=True):
        acc = np.zeros(n, dtype=np.float64)
        for s in starts:
            acc[s : s + c] += w
        if np.any(acc <= 0):
            raise ShapeError(f"grid {starts} does not cover an axis of length {n}")
        out.append((1.0 / acc).astype(np.float32))
    return out[0], out[1]


def _weights_2d(mode: str, chip: tuple[int, int], weights: Weights1D | None) -> np.ndarray:
    if mode == "mean" or weights is None:
        return np.ones(chip, dtype=np.float32)
    return np.outer(weights[0], weights[1]).astype(np.float32)


def _unit_1d(chip: tuple[int, int]) -> Weights1D:
    return np.ones(chip[0]), np.ones(chip[1])


def _out_dtype(dtype: Any, mode: str) -> Any:
    if mode == "max":
        return dtype
    return jnp.result_type(dtype, jnp.float32)


def _lowest(dtype: Any) -> Any:
    if jnp.issubdtype(dtype, jnp.floating):
        return -jnp.inf
    if jnp.issubdtype(dtype, jnp.bool_):
        return False
    return jnp.iinfo(dtype).min


def _finish(
    canvas: jax.Array,
    norm: jax.Array | None,
    scene: tuple[int, int],
    chip: tuple[int, int],
    mode: str,
    grid: Grid | None,
    weights: Weights1D | None,
    fill: float,
) -> jax.Array:
    """Turn an accumulated canvas into the stitched scene (normalise, fill uncovered pixels)."""
    if mode == "max":
        if grid is not None:
            return canvas
        return jnp.where(norm > 0, canvas, jnp.asarray(fill, canvas.dtype))
    if grid is not None:
        w1 = _unit_1d(chip) if mode == "mean" or weights is None else weights
        inv_r, inv_c = grid_normaliser(scene, chip, grid, w1)
        return canvas * jnp.asarray(inv_r)[:, None] * jnp.asarray(inv_c)[None, :]
    covered = norm > 0
    return jnp.where(covered, canvas / jnp.where(covered, norm, 1.0), jnp.asarray(fill))


def _check_mode(mode: str) -> None:
    if mode not in STITCH_MODES:
        raise ConfigError("stitch", "mode", mode, f"expected one of {STITCH_MODES}")


def stitch(
    chips: Shaped[Array, "n *band h w"],
    positions: Int[Array, "n 2"],
    scene: tuple[int, int],
    *,
    weights: Weights1D | None = None,
    mode: str = "overlap_add",
    grid: Grid | None = None,
    fill: float = 0.0,
) -> Float[Array, "*band H W"]:
    """Stitch a chip stack back into a ``scene``-sized array.

    **Arguments:**

    - `chips`: ``(n, *band, h, w)`` chip values.
    - `positions`: ``(n, 2)`` top-left ``(row, col)`` of each chip in the output.
    - `scene`: ``(H, W)`` of the output.
    - `weights`: separable window ``(rows (h,), cols (w,))``; None means boxcar.
    - `mode`: ``"overlap_add"`` (normalised weighted), ``"mean"`` or ``"max"``.
    - `grid`: per-axis starts when positions are their Cartesian product (enables the separable
      host-side normaliser); None to accumulate the weights.
    - `fill`: value of pixels no chip covers.

    **Returns:** the stitched array; float for the additive modes, the chip dtype for ``max``.
    """
    _check_mode(mode)
    chip = (int(chips.shape[-2]), int(chips.shape[-1]))
    lead = chips.shape[1:-2]
    dtype = _out_dtype(chips.dtype, mode)
    positions = jnp.asarray(positions, dtype=jnp.int32)
    norm = None
    if mode == "max":
        canvas = jnp.full((*lead, *scene), _lowest(dtype), dtype)
        canvas = accumulate(canvas, chips.astype(dtype), positions, "max")
        if grid is None:
            ones = jnp.ones((chips.shape[0], *chip), jnp.float32)
            norm = accumulate(jnp.zeros(scene, jnp.float32), ones, positions, "add")
    else:
        w2 = jnp.asarray(_weights_2d(mode, chip, weights))
        canvas = jnp.zeros((*lead, *scene), dtype)
        canvas = accumulate(canvas, chips.astype(dtype) * w2.astype(dtype), positions, "add")
        if grid is None:
            ws = jnp.broadcast_to(w2, (chips.shape[0], *chip))
            norm = accumulate(jnp.zeros(scene, jnp.float32), ws, positions, "add")
    return _finish(canvas, norm, scene, chip, mode, grid, weights, fill)


def apply_output_shape(
    fn: Callable[..., Any], chip_struct: jax.ShapeDtypeStruct, with_key: bool
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


def patchwise_accumulate(
    x: Shaped[Array, "*band H W"],
    fn: Callable[[jax.Array, jax.Array | None], jax.Array],
    positions: Int[Array, "n 2"],
    chip: tuple[int, int],
    *,
    batch_size: int,
    weights: Weights1D | None = None,
    mode: str = "overlap_add",
    need_norm: bool = True,
    valid: Bool[Array, " n"] | None = None,
    keys: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The accumulation half of :func:`patchwise`: un-normalised canvas and weight sum.

    Split out so that shards of chips can be accumulated on different devices and combined with
    a ``psum`` (``pmax`` for ``mode="max"``) before :func:`finish_stitch`.

    **Arguments:** as :func:`patchwise`, plus `need_norm` (accumulate the weight sum; False for
    regular grids, whose normaliser is separable), `valid` (``(n,)`` mask: invalid chips add
    nothing) and `keys` (``(n,)`` per-chip keys or None).

    **Returns:** ``(canvas, norm)``; ``norm`` is a 0-d zero when not accumulated.
    """
    _check_mode(mode)
    chip = (int(chip[0]), int(chip[1]))
    scene = (int(x.shape[-2]), int(x.shape[-1]))
    positions = jnp.asarray(positions, dtype=jnp.int32)
    n = int(positions.shape[0])
    b = max(1, min(int(batch_size), n))
    nb = -(-n // b)
    valid = jnp.ones((n,), bool) if valid is None else jnp.asarray(valid, bool)
    chip_struct = jax.ShapeDtypeStruct((*x.shape[:-2], *chip), x.dtype)
    out = apply_output_shape(fn, chip_struct, keys is not None)
    if tuple(out.shape[-2:]) != chip:
        raise ShapeError(
            f"the per-chip operator changed the chip size from {chip} to {out.shape[-2:]}; "
            "stitching needs outputs of the chip's size"
        )
    lead = out.shape[:-2]
    dtype = _out_dtype(out.dtype, mode)
    w2 = jnp.asarray(_weights_2d(mode, chip, weights))
    if mode == "max":
        canvas0 = jnp.full((*lead, *scene), _lowest(dtype), dtype)
    else:
        canvas0 = jnp.zeros((*lead, *scene), dtype)
        w2 = w2.astype(dtype)
    norm0 = jnp.zeros(scene, jnp.float32) if need_norm else jnp.zeros((), jnp.float32)

    def step(carry: Any, batch: Any) -> tuple[Any, None]:
        canvas, norm = carry
        p, v, k = batch
        chips = extract_patches(x, p, chip)
        y = jax.vmap(fn)(chips, k) if k is not None else jax.vmap(lambda c: fn(c, None))(chips)
        m = p.shape[0]
        vb = v.reshape((m,) + (1,) * (y.ndim - 1))
        if mode == "max":
            y = jnp.where(vb, y.astype(dtype), _lowest(dtype))
            canvas = accumulate(canvas, y, p, "max")
            wn = jnp.ones((m, *chip), jnp.float32)
        else:
            y = jnp.where(vb, y.astype(dtype) * w2, jnp.zeros((), dtype))
            canvas = accumulate(canvas, y, p, "add")
            wn = jnp.broadcast_to(w2.astype(jnp.float32), (m, *chip))
        if need_norm:
            wn = jnp.where(v[:, None, None], wn, 0.0)
            norm = accumulate(norm, wn, p, "add")
        return (canvas, norm), None

    carry = (canvas0, norm0)
    if nb > MAX_UNROLLED_BATCHES:  # padded to whole batches; padding chips add nothing
        pos = jnp.zeros((nb * b, 2), jnp.int32).at[:n].set(positions).reshape(nb, b, 2)
        ok = jnp.zeros((nb * b,), bool).at[:n].set(valid).reshape(nb, b)
        keys_b = None
        if keys is not None:
            pad = jnp.broadcast_to(keys[:1], (nb * b - n, *keys.shape[1:]))
            keys_b = jnp.concatenate([keys, pad]).reshape(nb, b, *keys.shape[1:])
        carry, _ = lax.scan(step, carry, (pos, ok, keys_b))
        return carry
    for lo in range(0, n, b):  # unrolled at trace time (see MAX_UNROLLED_BATCHES); the last
        hi = min(lo + b, n)  # batch is short rather than padded, so no chip runs twice
        p_i = positions[lo:hi] if lo == 0 else after(carry[0], positions[lo:hi])
        k_i = None if keys is None else keys[lo:hi]
        carry, _ = step(carry, (p_i, valid[lo:hi], k_i))
    return carry


def finish_stitch(
    canvas: jax.Array,
    norm: jax.Array | None,
    chip: tuple[int, int],
    *,
    weights: Weights1D | None = None,
    mode: str = "overlap_add",
    grid: Grid | None = None,
    fill: float = 0.0,
) -> jax.Array:
    """Normalise an accumulated canvas (see :func:`patchwise_accumulate`) into the scene."""
    scene = (int(canvas.shape[-2]), int(canvas.shape[-1]))
    return _finish(canvas, norm, scene, chip, mode, grid, weights, fill)


def patchwise(
    x: Shaped[Array, "*band H W"],
    fn: Callable[[jax.Array, jax.Array | None], jax.Array],
    positions: Int[Array, "n 2"],
    chip: tuple[int, int],
    *,
    batch_size: int,
    weights: Weights1D | None = None,
    mode: str = "overlap_add",
    grid: Grid | None = None,
    fill: float = 0.0,
    key: jax.Array | None = None,
) -> Shaped[Array, "*band_out H W"]:
    """Fused extract -> apply -> stitch over bounded batches of chips, in one compiled loop.

    A loop over batches of ``batch_size`` positions; each step cuts the batch's chips, runs
    ``fn`` on them with :func:`jax.vmap`, weights them and adds them into the canvas. Only one
    batch of chips is alive at a time, so memory is bounded by the input, the output canvas and
    one batch (not by the chip stack, which is never materialised). The loop is unrolled at
    trace time up to ``MAX_UNROLLED_BATCHES`` batches (XLA:CPU runs convolutions inside loop
    bodies without its fast kernels; see there) and a :func:`jax.lax.scan` beyond.

    **Arguments:**

    - `x`: the (padded) scene.
    - `fn`: ``fn(chip, key) -> chip_out``; ``chip_out`` must keep the chip's ``(h, w)``.
    - `positions`: ``(n, 2)`` chip positions in ``x``.
    - `chip`: chip size ``(h, w)``.
    - `batch_size`: chips per vmapped batch.
    - `weights`, `mode`, `grid`, `fill`: as in :func:`stitch`.
    - `key`: split into one key per chip for stochastic ``fn`` (None for deterministic ones).

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
        mode=mode,
        need_norm=grid is None,
        keys=keys,
    )
    return finish_stitch(
        canvas,
        None if grid is not None else norm,
        chip,
        weights=weights,
        mode=mode,
        grid=grid,
        fill=fill,
    )


def map_chips(
    fn: Callable[[jax.Array, jax.Array | None], jax.Array],
    chips: Shaped[Array, "n *band h w"],
    *,
    batch_size: int,
    key: jax.Array | None = None,
) -> Shaped[Array, "n *band_out h2 w2"]:
    """Apply ``fn`` to every chip, vmapped in batches of ``batch_size`` (bounded working memory).

    Up to ``MAX_UNROLLED_BATCHES`` batches the loop is unrolled at trace time (fast convolutions
    on XLA:CPU, see there), each batch reading its chips only after the previous batch's output
    exists (:func:`after`), so one batch's intermediates are alive at a time; beyond that it is
    :func:`jax.lax.map` with ``batch_size`` (a scan over vmapped batches). The output stack itself
    is, of course, materialised.
    """
    n = int(chips.shape[0])
    b = max(1, min(int(batch_size), n))
    keys = None if key is None else jax.random.split(key, n)
    if n == 0 or -(-n // b) > MAX_UNROLLED_BATCHES:
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
