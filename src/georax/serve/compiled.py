"""A loaded pipeline and its compiled programs: one XLA program per input shape, reused.

A :class:`~georax.GeoTensor`'s georeferencing (transform, CRS, fill value, band names) is static,
so ``jax.jit(pipeline)`` compiles again for every new grid: on a server, where every upload and
every map tile has its own transform, that would be a compile per request. Most pipelines never
read the grid (cloud masks, indices, colormaps): their programs are the same for every grid and
only the output's transform follows the input's. :class:`CompiledPipeline` finds out which kind a
pipeline is, once per input signature, by tracing it on two unrelated grids:

- if both traces give the same program (equal jaxpr text and constants) and every output raster
  relates to its input by the same pixel-space affine ``M`` (``out.transform = in.transform *
  M``: the identity for pointwise pipelines, a shift for crops, a scale for patch strides) with
  the input's CRS, the pipeline is **grid-invariant**: one program per (shape, dtype, fill value,
  band names), and each output is re-georeferenced from its request's grid;
- otherwise (a resampler to a fixed CRS, an operator whose arithmetic uses pixel size) it is
  **grid-dependent**: one program per signature *and* grid, kept in the same bounded LRU.

Programs are compiled ahead of time (``jax.jit(...).lower(...).compile()``), at most once per key
even under concurrent requests (a lock per key), and the number of compilations is counted so a
server can show and test that a warm path never compiles. The same programs, vmapped, serve a
batch of same-signature inputs (:meth:`CompiledPipeline.run_batch`).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from affine import Affine

from georax.core.budget import check_budget, price
from georax.core.errors import GeoraxError, ShapeError
from georax.core.hashing import config_hash, pipeline_digest
from georax.core.operator import Operator
from georax.core.sandbox import Limits
from georax.tensor import GeoTensor

__all__ = ["CompiledPipeline", "Signature", "signature_of", "spec_geotensor"]

# Two unrelated grids for the invariance probe (different pixel sizes, origins and CRSs).
_PROBES = (
    (Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_500_000.0), "EPSG:32630"),
    (Affine(0.5, 0.0, 300_010.0, 0.0, -0.25, 5_200_040.0), "EPSG:32633"),
)


@dataclasses.dataclass(frozen=True)
class Signature:
    """What a program is compiled for, apart from the grid: shape, dtype and static metadata."""

    shape: tuple[int, ...]
    dtype: str
    fill_value: float | int | None = None
    band_names: tuple[str, ...] | None = None


def signature_of(gt: GeoTensor) -> Signature:
    """The :class:`Signature` of a GeoTensor."""
    return Signature(tuple(gt.shape), np.dtype(gt.dtype).name, gt.fill_value, gt.band_names)


def spec_geotensor(sig: Signature, transform: Affine, crs: str | None) -> GeoTensor:
    """An abstract GeoTensor (values a ``ShapeDtypeStruct``) for pricing and tracing.

    Built without allocating the pixels, so a declared shape of any size costs nothing here
    (pricing then refuses what does not fit the budget).
    """
    small = np.zeros((*sig.shape[:-2], 1, 1), sig.dtype)
    template = GeoTensor(small, transform, crs, sig.fill_value, sig.band_names)
    return jax.tree_util.tree_map(lambda _: jax.ShapeDtypeStruct(sig.shape, sig.dtype), template)


def _is_geotensor(x: Any) -> bool:
    return isinstance(x, GeoTensor)


@dataclasses.dataclass(frozen=True)
class _Rule:
    """How outputs are georeferenced from the input: ``None`` = grid-dependent."""

    pixel_maps: tuple[Affine | None, ...] | None


@dataclasses.dataclass
class _Program:
    compiled: Any
    batched: dict[int, Any]
    transform: Affine
    crs: str | None


class CompiledPipeline:
    """A pipeline with its hashes and its compiled programs (see the module docstring).

    **Arguments:**

    - `name`: the pipeline's name on the server (for messages and metrics).
    - `op`: the loaded pipeline.
    - `max_programs`: compiled programs kept (least recently used dropped beyond it).
    - `on_compile`: called with `name` after each compilation (a server counts them).
    - `post`: an optional function applied to the pipeline's output values inside the compiled
      program (a tile layer's RGBA packing); it gets ``(output_values, *extra)`` where `extra`
      are the further arguments given to :meth:`run_values`.
    """

    def __init__(
        self,
        name: str,
        op: Operator,
        *,
        max_programs: int = 8,
        on_compile: Callable[[str], None] | None = None,
        post: Callable[..., Any] | None = None,
    ) -> None:
        self.name = name
        self.op = op
        self.config_hash = config_hash(op)
        self.digest = pipeline_digest(op)
        self.max_programs = max_programs
        self.on_compile = on_compile
        self.post = post
        self.compilations = 0
        self._rules: dict[Signature, _Rule] = {}
        self._programs: OrderedDict[Any, _Program] = OrderedDict()
        self._locks: dict[Any, threading.Lock] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ pricing
    def check(
        self,
        sig: Signature,
        memory_budget: int,
        flop_budget: float | None,
        limits: Limits,
        *,
        compile: bool = True,
        grid: tuple[Affine, str | None] | None = None,
    ) -> Any:
        """Price the pipeline for `sig` on `grid` and refuse it over budget.

        **Arguments:** the signature, the budgets and limits, whether to price the compiled
        program too, and the grid (transform, CRS) of the priced input (default: a reference
        UTM grid).

        **Returns:** the :class:`~georax.core.budget.Price`.

        **Raises:** ``BudgetExceededError`` (``PricingTimeoutError``), ``ShapeError`` and the
        pre-check's errors -- only georax errors.
        """
        spec = spec_geotensor(sig, *(grid or _PROBES[0]))
        if compile:
            return check_budget(
                self.op, spec, memory_budget, flop_budget=flop_budget, limits=limits
            )
        return price(
            self.op, spec, budget=memory_budget, flop_budget=flop_budget, limits=limits,
            compile=False,
        )  # fmt: skip

    # ------------------------------------------------------------------ tracing
    def _fn(self, sig: Signature, transform: Affine, crs: str | None) -> Callable[..., Any]:
        op, post = self.op, self.post

        def run(values: jax.Array, key: jax.Array, *extra: Any) -> Any:
            gt = GeoTensor(values, transform, crs, sig.fill_value, sig.band_names)
            out = op(gt, key=key)
            if post is not None:
                out = post(out.values if isinstance(out, GeoTensor) else out, *extra)
            return out

        return run

    def _trace(self, sig: Signature, transform: Affine, crs: str | None, extra: Sequence[Any]):
        args = (jax.ShapeDtypeStruct(sig.shape, sig.dtype), _key_spec(), *extra)
        return jax.make_jaxpr(self._fn(sig, transform, crs), return_shape=True)(*args)

    def _rule(self, sig: Signature, extra: Sequence[Any]) -> _Rule:
        """Trace on the two probe grids; grid-invariant when both give the same program.

        A pipeline that cannot even be traced on one of the probe grids (a resampler whose
        target grid does not overlap it) depends on the grid by definition.
        """
        try:
            traced = [(self._trace(sig, t, c, extra), t, c) for t, c in _PROBES]
        except GeoraxError:
            return _Rule(None)
        (closed_a, out_a), t_a, c_a = traced[0]
        (closed_b, out_b), t_b, c_b = traced[1]
        if str(closed_a.jaxpr) != str(closed_b.jaxpr) or not _same_consts(closed_a, closed_b):
            return _Rule(None)
        leaves_a = jax.tree_util.tree_leaves(out_a, is_leaf=_is_geotensor)
        leaves_b = jax.tree_util.tree_leaves(out_b, is_leaf=_is_geotensor)
        maps: list[Affine | None] = []
        for a, b in zip(leaves_a, leaves_b, strict=True):
            if not isinstance(a, GeoTensor):
                maps.append(None)
                continue
            if a.crs != c_a or b.crs != c_b:
                return _Rule(None)
            m_a, m_b = ~t_a * a.transform, ~t_b * b.transform
            if not m_a.almost_equals(m_b, precision=1e-9):
                return _Rule(None)
            maps.append(m_a)
        return _Rule(tuple(maps))

    def knows(self, sig: Signature) -> bool:
        """Whether `sig` was seen before (priced, traced): a new one must be priced first."""
        with self._lock:
            return sig in self._rules

    def is_grid_invariant(self, sig: Signature, extra: Sequence[Any] = ()) -> bool:
        """Whether one program serves every grid for `sig` (traces once per signature)."""
        return self._rule_for(sig, extra).pixel_maps is not None

    def _rule_for(self, sig: Signature, extra: Sequence[Any]) -> _Rule:
        with self._lock:
            rule = self._rules.get(sig)
        if rule is None:
            rule = self._rule(sig, extra)
            with self._lock:
                self._rules[sig] = rule
        return rule

    # ------------------------------------------------------------------ programs
    def _program(
        self, sig: Signature, transform: Affine, crs: str | None, extra: Sequence[Any]
    ) -> tuple[_Program, _Rule]:
        rule = self._rule_for(sig, extra)
        key = sig if rule.pixel_maps is not None else (sig, tuple(transform), crs)
        program = self._cached(key)
        if program is not None:
            return program, rule
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # compile once, even when many requests ask for it together
            program = self._cached(key)
            if program is None:
                t, c = _PROBES[0] if rule.pixel_maps is not None else (transform, crs)
                fn = self._fn(sig, t, c)
                args = (jax.ShapeDtypeStruct(sig.shape, sig.dtype), _key_spec(), *extra)
                compiled = jax.jit(fn).lower(*args).compile()
                program = _Program(compiled, {}, t, c)
                self._store(key, program)
                self.compilations += 1
                if self.on_compile is not None:
                    self.on_compile(self.name)
        return program, rule

    def _cached(self, key: Any) -> _Program | None:
        with self._lock:
            program = self._programs.get(key)
            if program is not None:
                self._programs.move_to_end(key)
            return program

    def _store(self, key: Any, program: _Program) -> None:
        with self._lock:
            self._programs[key] = program
            while len(self._programs) > self.max_programs:
                old, _ = self._programs.popitem(last=False)
                self._locks.pop(old, None)

    def warm(self, sig: Signature, extra: Sequence[Any] = ()) -> None:
        """Compile the program for `sig` now (at start-up), so no request pays for it."""
        self._program(sig, *_PROBES[0], extra)

    @property
    def programs(self) -> int:
        """How many compiled programs are held."""
        with self._lock:
            return len(self._programs)

    # ------------------------------------------------------------------ running
    def run(self, gt: GeoTensor, *, key: jax.Array | None = None, extra: Sequence[Any] = ()):
        """Run on one GeoTensor with the compiled program for its signature.

        **Returns:** the output, GeoTensors re-georeferenced from `gt`'s grid (grid-invariant
        pipelines) or exactly as the pipeline made them (grid-dependent ones).
        """
        sig = signature_of(gt)
        program, rule = self._program(sig, gt.transform, gt.crs, extra)
        key = jax.random.key(0) if key is None else key
        out = program.compiled(gt.values, key, *extra)
        return self._regrid(out, rule, gt)

    def run_values(self, values: Any, sig: Signature, *extra: Any) -> Any:
        """Run on raw values known to match `sig`, returning raw output values (tile layers).

        Only for grid-invariant pipelines (checked once); the output's georeferencing is the
        caller's business.
        """
        program, rule = self._program(sig, *_PROBES[0], extra)
        if rule.pixel_maps is None:
            raise ShapeError(f"pipeline {self.name!r} depends on the input's grid")
        out = program.compiled(values, jax.random.key(0), *extra)
        return out.values if isinstance(out, GeoTensor) else out

    def run_batch(
        self,
        gts: Sequence[GeoTensor],
        keys: Sequence[jax.Array],
        *,
        stacked: jax.Array | None = None,
    ) -> list[Any]:
        """Run a batch of same-signature GeoTensors as one vmapped program (grid-invariant).

        **Arguments:**

        - `gts`: the inputs.
        - `keys`: one PRNG key per input.
        - `stacked`: their values already stacked with ``jnp.stack`` (else stacked here).

        The batch is padded to the next power of two so only a few batch sizes ever compile;
        inputs of mixed signatures (or a grid-dependent pipeline) run one by one.

        **Returns:** one output per input, each re-georeferenced from its own input.
        """
        if not gts:
            return []
        sig = signature_of(gts[0])
        if len(gts) == 1 or any(signature_of(g) != sig for g in gts[1:]):
            return [self.run(g, key=k) for g, k in zip(gts, keys, strict=True)]
        program, rule = self._program(sig, gts[0].transform, gts[0].crs, ())
        if rule.pixel_maps is None:
            return [self.run(g, key=k) for g, k in zip(gts, keys, strict=True)]
        n = len(gts)
        size = 1 << (n - 1).bit_length()
        values = jnp.stack([g.values for g in gts]) if stacked is None else stacked
        if size > n:
            values = jnp.concatenate([values, jnp.broadcast_to(values[:1], (size - n, *sig.shape))])
        key_batch = jnp.stack(list(keys) + [keys[0]] * (size - n))
        out = self._batched(program, sig, size)(values, key_batch)
        return [
            self._regrid(jax.tree_util.tree_map(lambda a, i=i: a[i], out), rule, g)
            for i, g in enumerate(gts)
        ]

    def warm_batch(self, sig: Signature, size: int) -> None:
        """Compile the vmapped program for batches of `size` inputs of `sig` now."""
        program, rule = self._program(sig, *_PROBES[0], ())
        if rule.pixel_maps is not None:
            self._batched(program, sig, size)

    def _batched(self, program: _Program, sig: Signature, size: int) -> Any:
        with self._lock:
            compiled = program.batched.get(size)
        if compiled is None:
            fn = jax.vmap(self._fn(sig, program.transform, program.crs))
            args = (
                jax.ShapeDtypeStruct((size, *sig.shape), sig.dtype),
                jax.ShapeDtypeStruct((size, *_key_spec().shape), _key_spec().dtype),
            )
            compiled = jax.jit(fn).lower(*args).compile()
            self.compilations += 1
            if self.on_compile is not None:
                self.on_compile(self.name)
            with self._lock:
                program.batched[size] = compiled
        return compiled

    @staticmethod
    def _regrid(out: Any, rule: _Rule, gt: GeoTensor) -> Any:
        if rule.pixel_maps is None:
            return out
        leaves, treedef = jax.tree_util.tree_flatten(out, is_leaf=_is_geotensor)
        fixed = [
            leaf.replace(transform=gt.transform * m, crs=gt.crs)
            if isinstance(leaf, GeoTensor) and m is not None
            else leaf
            for leaf, m in zip(leaves, rule.pixel_maps, strict=True)
        ]
        return jax.tree_util.tree_unflatten(treedef, fixed)


def _key_spec() -> jax.ShapeDtypeStruct:
    key = jax.random.key(0)
    return jax.ShapeDtypeStruct(key.shape, key.dtype)


def _same_consts(a: Any, b: Any) -> bool:
    if len(a.consts) != len(b.consts):
        return False
    for x, y in zip(a.consts, b.consts, strict=True):
        try:
            xa, ya = np.asarray(x), np.asarray(y)
        except Exception:  # an opaque constant (e.g. a key): compare by identity
            if x is not y:
                return False
            continue
        if xa.shape != ya.shape or xa.dtype != ya.dtype or not np.array_equal(xa, ya):
            return False
    return True
