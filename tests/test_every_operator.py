"""The Operator contract, checked on every public operator (DESIGN.md, "The Operator contract").

Every class in ``georax.registry.public_operators()`` (after importing every georax module) has
an example in ``tests/operator_examples.py`` (or an ``operator_examples_<layer>.py`` next to it);
a class without one fails here by name. For each example:

- **eager == jit**: chex runs the operator without jit (eagerly) and with ``jax.jit`` (the
  operator captured as constants, the README idiom); each variant equals the operator passed as
  an argument to ``eqx.filter_jit`` (the deployment idiom);
- **vmap == loop**: ``vmap`` over a batch of two inputs (and two keys for stochastic operators)
  equals the compiled call on each;
- **YAML**: written, loaded back through the *sandboxed* loader (``allowed=public_operators()``,
  pre-checked for the example's input), the operator is equal, has the same ``config_hash`` and
  gives the same output; the pre-check's shape bound holds for the real output;
- **georeferencing**: a GeoTensor (or Chips) input keeps its transform and CRS, and its band
  names where the band count is unchanged, or the class docstring documents what happens to it;
- **pickle**: a pickled and unpickled operator is equal and gives the same output;
- **gradients**: finite (and not all zero) w.r.t. every float leaf of the operator and its input,
  unless the example says why the operator is not differentiable;
- **keys**: a stochastic operator refuses to run without a key, gives the same output for the
  same key and different outputs for different keys.

The compiled functions are module-level, so a loaded or unpickled operator (same structure, same
static config) reuses the program compiled for the original: one compile per check.
"""

from __future__ import annotations

import functools
import pickle
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import georax as gx
from georax.core import registry
from georax.core.budget import precheck
from georax.core.carrier import Carrier
from georax.core.errors import MissingKeyError
from georax.core.operator import Operator
from georax.core.sandbox import SANDBOX_LIMITS
from georax.tensor.grid import crs_equal

import operator_examples
from operator_examples import EXAMPLES, Example

HERE = Path(__file__).resolve().parent


operator_examples.import_all()
ALLOWED = registry.public_operators()
PUBLIC: list[type[Operator]] = sorted(
    {registry.lookup(path) for path in ALLOWED}, key=registry.import_path
)


# --------------------------------------------------------------------------- shared programs
@eqx.filter_jit
def _jit_call(op: Operator, args: tuple[Any, ...], kwargs: Mapping[str, Any], key: Any) -> Any:
    return op(*args, **kwargs, key=key)


@eqx.filter_jit
def _jit_vmap(op: Operator, args: tuple[Any, ...], kwargs: Mapping[str, Any], keys: Any) -> Any:
    return eqx.filter_vmap(lambda a, kw, k: op(*a, **kw, key=k))(args, kwargs, keys)


def _loss(params: tuple[Operator, tuple[Any, ...], Mapping[str, Any]], key: Any) -> jax.Array:
    op, args, kwargs = params
    out = op(*args, **kwargs, key=key)
    floats = [y for y in jax.tree.leaves(out) if eqx.is_inexact_array(y)]
    if not floats:
        raise AssertionError("has no float output to differentiate")
    # masked (NaN) pixels are data, not a broken gradient: leave them out of the loss
    return sum(jnp.sum(jnp.where(jnp.isfinite(y), y, 0.0) ** 2) for y in floats)


_jit_grad = eqx.filter_jit(eqx.filter_grad(_loss))


# --------------------------------------------------------------------------- helpers
def _key(op: Operator, seed: int = 0) -> jax.Array | None:
    return jax.random.key(seed) if op.requires_key else None


def _is_carrier(x: Any) -> bool:
    return isinstance(x, Carrier)


def _mirrored(tree: Any) -> Any:
    """The same inputs with every raster mirrored left-right (a second batch element)."""

    def mirror(x: Any) -> Any:
        if isinstance(x, Carrier):
            return x.replace(values=x.values[..., ::-1])
        if eqx.is_array(x) and jnp.ndim(x) >= 2:
            return x[..., ::-1]
        return x

    return jax.tree.map(mirror, tree, is_leaf=_is_carrier)


def _stack(trees: list[Any]) -> Any:
    return jax.tree.map(lambda *xs: jnp.stack(xs) if eqx.is_array(xs[0]) else xs[0], *trees)


def _assert_close(a: Any, b: Any, ex: Example, *, structure: bool = True) -> None:
    """Outputs agree within the example's tolerance (and have one structure, metadata included)."""
    if structure:
        chex.assert_trees_all_equal_structs(a, b)
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb), (len(la), len(lb))
    for x, y in zip(la, lb, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape and x.dtype == y.dtype, (x.shape, x.dtype, y.shape, y.dtype)
        if x.dtype == bool:
            x, y = x.astype(np.int8), y.astype(np.int8)
        chex.assert_trees_all_close(
            x.astype(np.float64), y.astype(np.float64), rtol=ex.rtol, atol=ex.atol
        )


def _carriers(tree: Any) -> list[Carrier]:
    return [x for x in jax.tree.leaves(tree, is_leaf=_is_carrier) if isinstance(x, Carrier)]


def _bands(c: Carrier) -> int | None:
    shape = jnp.shape(c.values)
    return int(shape[-3]) if len(shape) >= c.band_axis_ndim else None


def _shape_of(x: Any) -> tuple[int, ...] | None:
    v = x.values if isinstance(x, Carrier) else x
    return tuple(np.shape(v)) if eqx.is_array(v) else None


# --------------------------------------------------------------------------- the checks
class Run:
    """One example with its eager and compiled outputs, each computed once for every check."""

    def __init__(self, ex: Example) -> None:
        self.ex, self.op, self.key = ex, ex.op, _key(ex.op)

    @functools.cached_property
    def eager(self) -> Any:
        return self.op(*self.ex.args, **self.ex.kwargs, key=self.key)

    @functools.cached_property
    def jitted(self) -> Any:
        return self.compiled(self.op)

    def compiled(self, op: Operator) -> Any:
        """``op`` (the example's operator, or a copy of it) on the example, compiled."""
        return _jit_call(op, self.ex.args, self.ex.kwargs, self.key)


def check_vmap_equals_loop(run: Run) -> None:
    ex, op = run.ex, run.op
    if ex.not_batchable is not None:
        return
    second = ex.batch or (_mirrored(ex.args), _mirrored(dict(ex.kwargs)))
    items = [(ex.args, dict(ex.kwargs)), (second[0], dict(second[1]))]
    keys = [_key(op, 1), _key(op, 2)]
    looped = _stack([_jit_call(op, a, kw, k) for (a, kw), k in zip(items, keys, strict=True)])
    batch_keys = None if keys[0] is None else jnp.stack(keys)
    vmapped = _jit_vmap(
        op, _stack([a for a, _ in items]), _stack([kw for _, kw in items]), batch_keys
    )
    _assert_close(vmapped, looped, ex)


def _single_input(ex: Example) -> Any:
    """The example's one array/carrier input, or None (several inputs, static shapes...)."""
    if ex.kwargs or len(ex.args) != 1:
        return None
    return ex.args[0] if _shape_of(ex.args[0]) is not None else None


def check_yaml_round_trip(run: Run) -> None:
    op = run.op
    text = gx.dumps_yaml(op)
    x = _single_input(run.ex)
    loaded = gx.loads_yaml(text, allowed=ALLOWED, input_spec=x)
    assert type(loaded) is type(op)
    assert bool(eqx.tree_equal(loaded, op)), f"loaded != original:\n{text}"
    assert gx.config_hash(loaded) == gx.config_hash(op)
    chex.assert_trees_all_equal(run.compiled(loaded), run.jitted)
    if x is not None:  # the pre-check's bound holds for the real output
        bound, shape = precheck(loaded, x, SANDBOX_LIMITS), _shape_of(run.jitted)
        if shape is not None:
            assert len(bound) == len(shape) and all(
                s <= b for s, b in zip(shape, bound, strict=True)
            ), f"pre-check bound {tuple(bound)} < output shape {shape}"


def check_pickle_round_trip(run: Run) -> None:
    again = pickle.loads(pickle.dumps(run.op))
    assert bool(eqx.tree_equal(again, run.op))
    chex.assert_trees_all_equal(run.compiled(again), run.jitted)


def check_georeferencing(run: Run) -> None:
    ex, op = run.ex, run.op
    if ex.georeferencing == "none":
        assert not _carriers(run.eager), "the output holds a raster: say how it is georeferenced"
        return
    inputs = [c for c in _carriers((ex.args, dict(ex.kwargs))) if hasattr(c, "transform")]
    assert inputs, "the example needs a GeoTensor (or Chips) input"
    if ex.georeferencing == "changed":
        doc = (type(op).__doc__ or "").lower()
        assert "georeferencing" in doc, "changes georeferencing without documenting it"
        return
    ref = inputs[0]
    for mode, out in (("eager", run.eager), ("jit", run.jitted)):
        outs = _carriers(out)
        assert outs, f"{mode}: the output is no carrier: georeferencing dropped"
        for c in outs:
            assert c.transform == ref.transform, f"{mode}: transform {c.transform}"
            assert crs_equal(c.crs, ref.crs), f"{mode}: crs {c.crs!r} != {ref.crs!r}"
            if _bands(c) is not None and _bands(c) == _bands(ref):
                assert c.band_names == ref.band_names, f"{mode}: band names {c.band_names}"


def check_gradients(run: Run) -> None:
    ex = run.ex
    if ex.not_differentiable is not None:
        return
    grads = _jit_grad((run.op, ex.args, dict(ex.kwargs)), run.key)
    leaves = [g for g in jax.tree.leaves(grads) if eqx.is_inexact_array(g)]
    assert leaves, "no float leaf (operator or input) to differentiate"
    chex.assert_tree_all_finite(leaves)
    assert any(bool(jnp.any(g != 0)) for g in leaves), "every gradient is zero"


def check_keys(run: Run) -> None:
    ex, op = run.ex, run.op
    if not op.requires_key:
        return
    with pytest.raises(MissingKeyError):
        op(*ex.args, **ex.kwargs)
    chex.assert_trees_all_equal(op(*ex.args, **ex.kwargs, key=run.key), run.eager)
    chex.assert_trees_all_equal(run.compiled(op), run.jitted)
    draws = [_jit_call(op, ex.args, ex.kwargs, jax.random.key(s)) for s in range(1, 8)]
    assert any(not bool(eqx.tree_equal(d, run.jitted)) for d in draws), (
        "eight keys gave one output: the key is not used"
    )


CHECKS: tuple[Callable[[Run], None], ...] = (
    check_vmap_equals_loop,
    check_yaml_round_trip,
    check_pickle_round_trip,
    check_georeferencing,
    check_gradients,
    check_keys,
)


# --------------------------------------------------------------------------- the tests
def test_every_public_operator_has_an_example() -> None:
    missing = [registry.import_path(c) for c in PUBLIC if c not in EXAMPLES]
    assert not missing, (
        f"public operators without an example in {operator_examples.__file__}: {missing}"
    )
    stale = [registry.import_path(c) for c in EXAMPLES if c not in PUBLIC]
    assert not stale, f"examples of classes that are not public operators: {stale}"


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: c.__qualname__)
def test_operator_contract(cls: type[Operator]) -> None:
    factory = EXAMPLES.get(cls)
    if factory is None:
        pytest.fail(f"{registry.import_path(cls)} has no example in tests/operator_examples.py")
    ex = factory()
    assert type(ex.op) is cls, f"the example of {cls.__name__} is a {type(ex.op).__name__}"
    run, failures = Run(ex), []
    for check in CHECKS:
        try:
            check(run)
        except Exception as e:
            where = "".join(
                traceback.format_exception(e, limit=-3 if isinstance(e, AssertionError) else -6)
            )
            failures.append(f"--- {check.__name__}:\n{where}")
    if failures:
        pytest.fail(f"{cls.__name__} breaks the contract:\n" + "\n".join(failures), pytrace=False)


def _variant_cases() -> list[tuple[str, type[Operator]]]:
    return [(registry.import_path(c).replace(".", "_"), c) for c in PUBLIC if c in EXAMPLES]


def _as_arrays(tree: Any) -> Any:
    """Python scalars as arrays: ``jax.jit`` returns a static int as an array, filter_jit as is."""
    return jax.tree.map(lambda v: v if eqx.is_array(v) else jnp.asarray(v), tree)


class TestEagerAndCapturedEqualTheDeployedForm(chex.TestCase):
    """chex runs every example without jit and with ``jax.jit`` (one test per variant).

    Both must equal the deployment idiom, the operator passed as an argument to
    ``eqx.filter_jit``: eager == compiled, and captured-as-constants == argument form.
    """

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*_variant_cases())
    def test_variant_equals_the_filter_jit_argument_form(self, cls: type[Operator]) -> None:
        ex = EXAMPLES[cls]()
        op, key = ex.op, _key(ex.op)
        dynamic, static = eqx.partition((ex.args, dict(ex.kwargs), key), eqx.is_array)

        def call(dyn: Any) -> Any:
            args, kwargs, k = eqx.combine(dyn, static)
            return op(*args, **kwargs, key=k)

        out = _as_arrays(self.variant(call)(dynamic))
        # georeferencing known only from a concrete draw differs between programs (documented)
        _assert_close(
            out,
            _as_arrays(_jit_call(op, ex.args, ex.kwargs, key)),
            ex,
            structure=ex.georeferencing != "changed",
        )
