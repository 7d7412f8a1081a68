"""A pipeline compiled once per input *shape*, not once per scene.

A :class:`~georax.GeoTensor` carries its transform and CRS as static data, so ``jax.jit(pipe)``
compiles anew for every scene at a different place on Earth -- a catalog of a thousand tiles
would compile a thousand times. :class:`CompiledPipeline` removes the scene's position (the
translation part of its transform) before the compiled call and puts it back on the outputs
afterwards, so scenes of one shape, dtype, pixel size, CRS, fill value and band names share one
compiled program.

That is only correct for pipelines that are *translation-equivariant*: moving the input moves
the output and changes nothing else. Every pixel-wise, neighbourhood and patch operator is; an
operator that resamples onto a fixed target grid is not. So the first input of each signature is
checked: its output (computed at origin 0) is compared with one :func:`jax.eval_shape` of the
pipeline at another position (a trace, no compile, no FLOPs); if the outputs' georeferencing
does not move with the input -- or anything else differs -- that signature falls back to one
compilation per position (one extra compilation, the probe's, is then wasted) and the result is
still exact.

``traces`` counts the compilations (a counter incremented at trace time), which is what the
run report and the tests check against the number of distinct shapes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from affine import Affine

from georax.core.carrier import Carrier
from georax.core.operator import Operator
from georax.run.errors import RunError
from georax.tensor import GeoTensor

__all__ = ["CompiledPipeline", "Signature"]

# Translations of transforms compare equal to this fraction of a pixel.
_SHIFT_RTOL = 1e-9


@dataclasses.dataclass(frozen=True)
class _Frame:
    """The static georeferencing of a GeoTensor input, hashable (NaN fill spelt ``"nan"``)."""

    linear: tuple[float, float, float, float]  # a, b, d, e of the affine transform
    origin: tuple[float, float]  # c, f
    crs: str | None
    fill_key: Any
    band_names: tuple[str, ...] | None

    @classmethod
    def of(cls, gt: GeoTensor) -> _Frame:
        t = gt.transform
        fill = gt.fill_value
        key = "nan" if isinstance(fill, float) and math.isnan(fill) else fill
        return cls((t.a, t.b, t.d, t.e), (t.c, t.f), gt.crs, key, gt.band_names)

    def at(self, origin: tuple[float, float]) -> _Frame:
        return dataclasses.replace(self, origin=(float(origin[0]), float(origin[1])))

    def carrier(self, values: Any) -> GeoTensor:
        a, b, d, e = self.linear
        fill = float("nan") if self.fill_key == "nan" else self.fill_key
        return GeoTensor(
            values,
            Affine(a, b, self.origin[0], d, e, self.origin[1]),
            self.crs,
            fill,
            self.band_names,
        )


@dataclasses.dataclass(frozen=True)
class Signature:
    """What one compiled program serves: input shape, dtype and georeferencing but position.

    Rows with equal signatures share a compilation (and can share a vmap batch).
    """

    shape: tuple[int, ...]
    dtype: str
    frame: _Frame | None

    @classmethod
    def of(cls, x: Any) -> Signature:
        """The signature of one input: shape, dtype and, for a GeoTensor, its frame at origin 0."""
        values = x.values if isinstance(x, GeoTensor) else x
        frame = _Frame.of(x).at((0.0, 0.0)) if isinstance(x, GeoTensor) else None
        return cls(tuple(np.shape(values)), str(jnp.result_type(values)), frame)


class _Counter:
    def __init__(self) -> None:
        self.traces = 0


def _jitted(counter: _Counter) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The single and the vmap-batched compiled calls, counting their traces."""

    def one(op: Operator, values: Any, frame: _Frame | None) -> Any:
        counter.traces += 1  # runs at trace time only
        return op(frame.carrier(values) if frame is not None else values)

    def many(op: Operator, values: Any, frame: _Frame | None) -> Any:
        counter.traces += 1
        return jax.vmap(lambda v: op(frame.carrier(v) if frame is not None else v))(values)

    return eqx.filter_jit(one), eqx.filter_jit(many)


def _is_carrier(v: Any) -> bool:
    return isinstance(v, Carrier)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, jax.ShapeDtypeStruct) or isinstance(b, jax.ShapeDtypeStruct):
        return (
            isinstance(a, jax.ShapeDtypeStruct)
            and isinstance(b, jax.ShapeDtypeStruct)
            and a.shape == b.shape
            and a.dtype == b.dtype
        )
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return a is b


def _moved_by(base: Affine, moved: Affine, dx: float, dy: float) -> bool:
    scale = max(abs(base.a), abs(base.b), abs(base.d), abs(base.e), 1e-300)
    tol = _SHIFT_RTOL * max(scale, abs(dx), abs(dy), abs(base.c), abs(base.f))
    return (
        tuple(base)[:2] == tuple(moved)[:2]
        and tuple(base)[3:5] == tuple(moved)[3:5]
        and abs(moved.c - base.c - dx) <= tol
        and abs(moved.f - base.f - dy) <= tol
    )


def _equivariant(base: Any, moved: Any, dx: float, dy: float) -> bool:
    """Whether ``moved`` is ``base`` with every carrier's transform translated by (dx, dy)."""
    lb, tb = jax.tree_util.tree_flatten(base, is_leaf=_is_carrier)
    lm, tm = jax.tree_util.tree_flatten(moved, is_leaf=_is_carrier)
    if tb != tm:
        return False
    for a, b in zip(lb, lm, strict=True):
        if not _is_carrier(a):
            if not _same(a, b):
                return False
            continue
        if type(a) is not type(b):
            return False
        for f in dataclasses.fields(a):
            va, vb = getattr(a, f.name), getattr(b, f.name)
            if isinstance(va, Affine) and isinstance(vb, Affine):
                if not _moved_by(va, vb, dx, dy):
                    return False
            elif not _same(va, vb):
                return False
    return True


def _shift(out: Any, dx: float, dy: float) -> Any:
    """Translate every georeferenced carrier in ``out`` by (dx, dy) CRS units."""
    if dx == 0.0 and dy == 0.0:
        return out

    def move(v: Any) -> Any:
        t = getattr(v, "transform", None)
        if not _is_carrier(v) or not isinstance(t, Affine):
            return v
        return v.replace(transform=Affine(t.a, t.b, t.c + dx, t.d, t.e, t.f + dy))

    return jax.tree_util.tree_map(move, out, is_leaf=_is_carrier)


class CompiledPipeline:
    """``pipeline`` jit-compiled once per input :class:`Signature` (shape, not position).

    Call it like the pipeline: ``compiled(gt)`` equals ``pipeline(gt)`` (same values, same
    georeferencing), and ``compiled.batch([gt1, gt2, ...])`` runs rows of one signature as one
    vmap-batched program. The pipeline is an argument of the compiled function, not a
    constant, so a pipeline with other weights but the same config reuses the program.

    Pickles as its pipeline (compiled programs stay in the process that built them).

    **Arguments:**

    - `pipeline`: the operator to run (one input: an array or a GeoTensor).
    - `rebase`: share programs across positions when the pipeline is translation-equivariant
      (default). ``False`` compiles once per distinct georeferencing, like ``jax.jit``.

    Attributes: ``traces`` (compilations so far), ``signatures`` (distinct signatures seen).
    """

    def __init__(self, pipeline: Operator, *, rebase: bool = True) -> None:
        if not isinstance(pipeline, Operator):
            raise RunError(
                f"CompiledPipeline needs a georax Operator, got {type(pipeline).__name__}"
            )
        self.pipeline = pipeline
        self.rebase = rebase
        self._counter = _Counter()
        self._one, self._many = _jitted(self._counter)
        self._probed: dict[Signature, bool] = {}
        self.signatures: set[Signature] = set()

    def __getstate__(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline, "rebase": self.rebase}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["pipeline"], rebase=state["rebase"])  # type: ignore[misc]

    @property
    def traces(self) -> int:
        """How many programs have been traced (= compiled) so far."""
        return self._counter.traces

    def _moves_with_input(self, sig: Signature, frame: _Frame, base: Any = None) -> bool:
        """Whether outputs move with the input and nothing else changes (one abstract trace
        at another position; `base` is the output at origin 0 when it is already at hand)."""
        a, b, d, e = frame.linear
        dx, dy = frame.origin
        if dx == 0.0 and dy == 0.0:  # probe with a whole-pixel shift instead
            dx, dy = 1024 * (a + b), 1024 * (d + e)
        spec = jax.ShapeDtypeStruct(sig.shape, jnp.dtype(sig.dtype))
        try:
            if base is None:
                base = jax.eval_shape(
                    lambda v: self.pipeline(frame.at((0.0, 0.0)).carrier(v)), spec
                )
            else:
                base = jax.tree_util.tree_map(
                    lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype) if eqx.is_array(v) else v,
                    base,
                )
            moved = jax.eval_shape(lambda v: self.pipeline(frame.at((dx, dy)).carrier(v)), spec)
        except Exception:  # the pipeline cannot even run at another position: position-bound
            return False
        return _equivariant(base, moved, dx, dy)

    def __call__(self, x: Any) -> Any:
        """Run the pipeline on one input (an array or a GeoTensor)."""
        sig = Signature.of(x)
        self.signatures.add(sig)
        if not isinstance(x, GeoTensor):
            return self._one(self.pipeline, x, None)
        frame = _Frame.of(x)
        shareable = self._probed.get(sig) if self.rebase else False
        if shareable is False:
            return self._one(self.pipeline, x.values, frame)
        try:
            out = self._one(self.pipeline, x.values, frame.at((0.0, 0.0)))
        except Exception:
            if shareable is not None:
                raise
            # e.g. a reprojection that fails at origin 0: this input's own position decides
            out = self._one(self.pipeline, x.values, frame)
            self._probed[sig] = False
            return out
        if shareable is None:  # first input of this signature: check the program may be shared
            shareable = self._probed[sig] = self._moves_with_input(sig, frame, out)
            if not shareable:  # position-dependent: this input gets its own exact program
                return self._one(self.pipeline, x.values, frame)
        return _shift(out, *frame.origin)

    def batch(self, xs: Sequence[Any]) -> list[Any]:
        """Run inputs of one signature as a single vmap-batched call (outputs in order).

        Inputs whose signatures differ, or whose pipeline is not translation-equivariant, run
        one by one instead.
        """
        xs = list(xs)
        if len(xs) < 2:
            return [self(x) for x in xs]
        sigs = {Signature.of(x) for x in xs}
        if len(sigs) != 1:
            return [self(x) for x in xs]
        sig = sigs.pop()
        self.signatures.add(sig)
        if sig.frame is None:
            out = self._many(self.pipeline, jnp.stack([jnp.asarray(x) for x in xs]), None)
            return [
                jax.tree_util.tree_map(lambda v, i=i: v[i] if eqx.is_array(v) else v, out)
                for i in range(len(xs))
            ]
        frames = [_Frame.of(x) for x in xs]
        shareable = self._probed.get(sig) if self.rebase else False
        if shareable is None:
            shareable = self._probed[sig] = self._moves_with_input(sig, frames[0])
        if not shareable:
            return [self(x) for x in xs]
        values = jnp.stack([x.values for x in xs])
        out = self._many(self.pipeline, values, frames[0].at((0.0, 0.0)))
        return [
            _shift(
                jax.tree_util.tree_map(lambda v, i=i: v[i] if eqx.is_array(v) else v, out),
                *f.origin,
            )
            for i, f in enumerate(frames)
        ]
