"""Small registered operators for the config/YAML/hashing/params/sandbox tests.

They cover every kind of field the loader must handle: static ints/floats/strings/literals and
tuples, array leaves (scalar, small matrix, large weights), derived arrays, a two-input operator
for Graphs, a stochastic operator, a model architecture with config (for ModelOp), a private
class and a user class marked ``forbid_in_yaml``. Imported as the top-level module
``config_test_ops`` (tests/ is on sys.path), so its targets read ``config_test_ops.Scale``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Shaped

from georax.core import Operator, as_tuple, derived, leaf, map_values, static


class Scale(Operator):
    """``x * gain + offset`` (two scalar leaves) with a static band label."""

    band: int = static(0)
    gain: Float[Array, ""] = leaf(1.0)
    offset: Float[Array, ""] = leaf(0.0)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return map_values(lambda v: v * self.gain + self.offset, x)


class Clip(Operator):
    """Clip (or squash) into ``[lo, hi]``: static floats and a Literal mode."""

    lo: float = static(0.0)
    hi: float = static(1.0)
    mode: Literal["clip", "tanh"] = static("clip")

    def __check_init__(self) -> None:
        if self.mode not in ("clip", "tanh"):
            self.fail("mode", "must be 'clip' or 'tanh'")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        if self.mode == "clip":
            return map_values(lambda v: jnp.clip(v, self.lo, self.hi), x)
        mid, half = (self.hi + self.lo) / 2, (self.hi - self.lo) / 2
        return map_values(lambda v: mid + half * jnp.tanh(v), x)


class BandMix(Operator):
    """Mix bands with a ``(bands, bands)`` matrix leaf: ``y[i] = sum_j W[i, j] x[j]``."""

    weights: Float[Array, "b b"] = leaf(default_factory=lambda: jnp.eye(3))

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return map_values(lambda v: jnp.einsum("ij,...jhw->...ihw", self.weights, v), x)


class Select(Operator):
    """Keep ``bands`` then restore the band count by tiling (a static tuple field)."""

    bands: tuple[int, ...] = static((0,), converter=as_tuple)

    def __check_init__(self) -> None:
        if not self.bands or not all(isinstance(b, int) and 0 <= b < 3 for b in self.bands):
            self.fail("bands", "must be a non-empty tuple of band indices in [0, 3)")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        def f(v: jax.Array) -> jax.Array:
            picked = v[..., self.bands, :, :]
            reps = -(-v.shape[-3] // len(self.bands))
            return jnp.concatenate([picked] * reps, axis=-3)[..., : v.shape[-3], :, :]

        return map_values(f, x)


class Lut(Operator):
    """Apply a ``gamma`` curve through a LUT derived in ``__init__`` (a derived array)."""

    n: int = static(16)
    gamma: float = static(2.0)
    table: Float[Array, " n"] = derived()

    def __init__(self, n: int = 16, gamma: float = 2.0) -> None:
        self.n = n
        self.gamma = gamma
        self.table = jnp.linspace(0.0, 1.0, n) ** gamma

    def __check_init__(self) -> None:
        if not isinstance(self.n, int) or not 2 <= self.n <= 4096:
            self.fail("n", "must be an int in [2, 4096]")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        grid = jnp.linspace(0.0, 1.0, self.n)
        return map_values(lambda v: jnp.interp(jnp.clip(v, 0.0, 1.0), grid, self.table), x)


class Kernel(Operator):
    """Scale by the mean of ``weights``: an array of any dtype and shape (large when it is)."""

    weights: Shaped[Array, "*dims"] = leaf(default_factory=lambda: jnp.ones(4))

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return map_values(lambda v: v * jnp.mean(self.weights), x)


class Add(Operator):
    """Two inputs: ``a + b`` (for Graphs)."""

    def __call__(self, a: Any, b: Any, *, key: jax.Array | None = None) -> Any:
        return map_values(lambda v: v + jnp.asarray(getattr(b, "values", b)), a)


class Noise(Operator):
    """Add Gaussian noise: stochastic, requires ``key``."""

    requires_key = True
    sigma: float = static(0.1)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return map_values(lambda v: v + self.sigma * jax.random.normal(key, v.shape, v.dtype), x)


class QC(Operator):
    """A QC step whose policy is config (the seeds' ``on_fail: ${qc_policy}``)."""

    on_fail: Literal["raise", "warn"] = static("raise")
    max_value: float = static(1e4)

    def __check_init__(self) -> None:
        if self.on_fail not in ("raise", "warn"):
            self.fail("on_fail", "must be 'raise' or 'warn'")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return map_values(lambda v: jnp.minimum(v, self.max_value), x)


class SuperResolve(Operator):
    """Upsample by ``factor`` then average back: small in and out, a huge intermediate."""

    factor: int = static(2)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        def f(v: jax.Array) -> jax.Array:
            up = jnp.repeat(jnp.repeat(v, self.factor, axis=-1), self.factor, axis=-2)
            up = jnp.sort(up, axis=-1)  # force materialisation: no fusion into the reduction
            h, w = v.shape[-2:]
            return up.reshape(*v.shape[:-2], h, self.factor, w, self.factor).mean(axis=(-3, -1))

        return map_values(f, x)


class BoxBlur(Operator):
    """Box filter of half-width ``radius``: cost grows with radius**2 (a compute-bomb knob)."""

    radius: int = static(1)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        w = 2 * self.radius + 1
        dims = (1,) * (jnp.ndim(getattr(x, "values", x)) - 2) + (w, w)

        def f(v: jax.Array) -> jax.Array:
            total = jax.lax.reduce_window(v, 0.0, jax.lax.add, dims, (1,) * v.ndim, "SAME")
            return total / (w * w)

        return map_values(f, x)


class TinyMLP(Operator):
    """A per-pixel MLP over the band axis: architecture (``sizes``) is config, weights are leaves.

    Build with :meth:`init`; ``TinyMLP(sizes=..., weights=..., biases=...)`` rebuilds it (the
    Operator contract), which is what lets ``ModelOp(TinyMLP)`` round-trip through YAML + a
    params file.
    """

    sizes: tuple[int, ...] = static(converter=as_tuple)
    weights: tuple[Float[Array, "o i"], ...] = eqx.field(converter=tuple)
    biases: tuple[Float[Array, " o"], ...] = eqx.field(converter=tuple)

    @classmethod
    def init(cls, sizes: Sequence[int], key: jax.Array) -> TinyMLP:
        keys = jax.random.split(key, len(sizes) - 1)
        ws = [
            jax.random.normal(k, (o, i)) / jnp.sqrt(i)
            for k, i, o in zip(keys, sizes[:-1], sizes[1:], strict=True)
        ]
        bs = [jnp.full((o,), 0.01 * (n + 1)) for n, o in enumerate(sizes[1:])]
        return cls(sizes=sizes, weights=ws, biases=bs)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        h = x
        for n, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = jnp.einsum("oi,...ihw->...ohw", w, h) + b[:, None, None]
            if n < len(self.weights) - 1:
                h = jax.nn.relu(h)
        return h


class _Private(Operator):
    """A private operator: never in the public allow-list."""

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return x


class HostCallback(Operator):
    """A user operator holding a callable: marked forbid_in_yaml."""

    forbid_in_yaml = True
    fn: Callable[[Any], Any] = static(default=print)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return x


# ----------------------------------------------------------------------------------------------
# Hostile-input helpers: operators whose cost at trace time grows with a config value
# ----------------------------------------------------------------------------------------------
TRACED: list[str] = []  # appended to when one of the operators below is traced


class PadBy(Operator):
    """Pad the last axis by ``size`` (a bounded static int: the generic pre-check limits it)."""

    size: int = static(1)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        TRACED.append("PadBy")
        return map_values(lambda v: jnp.pad(v, [(0, 0)] * (v.ndim - 1) + [(0, self.size)]), x)


class SpinAtTrace(Operator):
    """Spin ``turns`` times in Python at trace time: an int that sizes no array (unbounded)."""

    turns: int = static(1, bounded=False)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        TRACED.append("SpinAtTrace")
        count = 0
        for _ in range(self.turns):
            count += 1
        return x + float(count > 0)


class UnrollAtTrace(Operator):
    """Unroll ``steps`` additions into the traced program (its size grows with the config)."""

    steps: int = static(1)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        for _ in range(self.steps):
            x = x + 1.0
        return x


class BakedTable(Operator):
    """Add the sum of an ``(n, n)`` host table built at trace time: a constant in the program."""

    n: int = static(4)

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        table = jnp.asarray(np.arange(self.n * self.n, dtype=np.float32).reshape(self.n, self.n))
        return map_values(lambda v: v + table[0, 0] + table[-1, -1], x)


class Silent(Operator):
    """Fails at trace time with an exception that has no message."""

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        raise ValueError()


class BrokenPrecheck(Operator):
    """A pre-check with a bug (a bare KeyError)."""

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return x

    def precheck(self, shape: tuple[int, ...], limits: Any) -> tuple[int, ...]:
        return {}["missing"]


class Positive(Operator):
    """Multiply by ``weights``, which must all be > 0 (a semantic check on a large leaf)."""

    weights: Float[Array, " n"] = leaf(default_factory=lambda: jnp.ones(4))

    def __check_init__(self) -> None:
        if not bool(np.all(np.asarray(self.weights) > 0)):
            self.fail("weights", "must all be > 0")

    def __call__(self, x: Any, *, key: jax.Array | None = None) -> Any:
        return map_values(lambda v: v * jnp.mean(self.weights), x)
