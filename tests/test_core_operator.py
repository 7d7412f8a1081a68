"""The Operator contract: registration, validation, config fields, node building, keys, hashing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import georax as gx
from georax.core import ConfigError, GraphError, MissingKeyError, Node, registry

from _core_ops import AddNoise, Gain, Power


def test_subclasses_register_by_import_path() -> None:
    assert registry.lookup("_core_ops.Gain") is Gain
    assert registry.lookup("georax.Sequential") is gx.Sequential
    assert registry.lookup("georax.core.combinators.Sequential") is gx.Sequential


def test_unknown_registry_path_is_a_typed_error() -> None:
    with pytest.raises(gx.errors.SerializationError, match=r"os\.system"):
        registry.lookup("os.system")


def test_bad_field_names_operator_field_and_value() -> None:
    with pytest.raises(ConfigError) as info:
        Power(exponent=-3)
    err = info.value
    assert (err.operator, err.field, err.value) == ("Power", "exponent", -3)
    assert "Power.exponent=-3" in str(err) and ">= 0" in str(err)


def test_sequential_refuses_non_operator_child() -> None:
    with pytest.raises(ConfigError, match=r"operators\[1\]"):
        gx.Sequential([Gain(), lambda x: x])  # type: ignore[list-item]


def test_leaves_are_float32_arrays_and_static_is_structure() -> None:
    op = Gain(3, 1)
    assert isinstance(op.gain, jax.Array) and op.gain.dtype == jnp.float32
    leaves = jax.tree_util.tree_leaves(gx.Sequential([op, Power(3)]))
    assert len(leaves) == 2  # gain, bias; the exponent is not a leaf


def test_config_fields_rebuild_an_equal_operator() -> None:
    for op in (Gain(1.5, -2.0), Power(4), gx.Sequential([Gain(), Power(3)])):
        rebuilt = type(op)(**op.config_fields())
        assert jax.tree_util.tree_structure(rebuilt) == jax.tree_util.tree_structure(op)
        for a, b in zip(
            jax.tree_util.tree_leaves(op), jax.tree_util.tree_leaves(rebuilt), strict=True
        ):
            np.testing.assert_array_equal(a, b)


def test_calling_on_a_node_builds_a_node_and_checks_arity() -> None:
    x = gx.Input("x")
    node = Gain()(x)
    assert isinstance(node, Node) and isinstance(node.op, Gain) and node.args == (x,)
    with pytest.raises(GraphError, match="Gain called with 2 positional"):
        Gain()(x, x)


def test_stochastic_operator_without_key_is_refused() -> None:
    with pytest.raises(MissingKeyError, match="AddNoise"):
        AddNoise()(jnp.ones(3))
    out = AddNoise()(jnp.ones(3), key=jax.random.key(0))
    assert out.shape == (3,) and not np.allclose(out, 1.0)


def test_forbid_in_yaml_flags() -> None:
    assert gx.Lambda.forbid_in_yaml and gx.Tap.forbid_in_yaml and gx.ModelOp.forbid_in_yaml
    assert not gx.Sequential.forbid_in_yaml and not Gain.forbid_in_yaml
    allowed = registry.public_operators(include_modules=["georax", "_core_ops"])
    assert "georax.Sequential" in allowed and "_core_ops.Gain" in allowed
    assert "georax.Lambda" not in allowed and "georax.core.combinators.Tap" not in allowed


def test_pure_config_operators_hash_structurally() -> None:
    assert hash(Power(3)) == hash(Power(3)) and hash(Power(3)) != hash(Power(4))
    assert len({Power(3), Power(3), Power(4)}) == 2


def test_array_holding_operators_are_hashable_and_never_confused() -> None:
    # jax.jit(op) hashes the operator; two operators that differ only in their arrays must not
    # share a cached program (a structural hash over arrays would either fail or collide).
    x = jnp.arange(3.0)
    a, b = Gain(2.0), Gain(5.0)
    assert isinstance(hash(a), int)
    np.testing.assert_allclose(jax.jit(a)(x), 2 * x)
    np.testing.assert_allclose(jax.jit(b)(x), 5 * x)
    np.testing.assert_allclose(jax.jit(Gain(2.0, 1.0))(x), 2 * x + 1)
