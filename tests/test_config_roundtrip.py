"""Config and YAML round-trips: every core combinator, Graph wiring, arrays, and a property test."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import config_test_ops as tops
import georax as gx
from georax.core import ConfigError, GetItem, Operator, SerializationError, UntrustedTargetError
from georax.core.config import INLINE_MAX, ParamsRequiredError, from_config, to_config
from georax.core.hashing import config_hash, params_hash, pipeline_digest
from georax.core.yaml_io import dumps_yaml, loads_yaml

X = jax.random.uniform(jax.random.key(1), (3, 5, 6), jnp.float32)


def assert_same_outputs(a: Any, b: Any) -> None:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for u, v in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def roundtrip(op: Operator, **kw: Any) -> Operator:
    text = dumps_yaml(op, max_inline=None)
    back = loads_yaml(text, **kw)
    assert to_config(back, max_inline=None) == to_config(op, max_inline=None)
    assert dumps_yaml(back, max_inline=None) == text
    assert config_hash(back) == config_hash(op)
    assert params_hash(back) == params_hash(op)
    return back


def test_documented_format_reads_as_written() -> None:
    text = """
_target_: georax.Sequential
operators:
  - {_target_: config_test_ops.Scale, band: 2, gain: 0.5, offset: 1.0}
  - {_target_: config_test_ops.Clip, lo: 0.0, hi: 2.0, mode: tanh}
"""
    pipe = loads_yaml(text)
    assert isinstance(pipe, gx.Sequential) and len(pipe) == 2
    scale, clip = pipe.operators
    assert scale.band == 2 and float(scale.gain) == 0.5 and scale.gain.dtype == jnp.float32
    assert (clip.lo, clip.hi, clip.mode) == (0.0, 2.0, "tanh")
    cfg = to_config(pipe)
    assert cfg["_target_"] == "georax.Sequential"
    assert cfg["operators"][0] == {
        "_target_": "config_test_ops.Scale",
        "band": 2,
        "gain": 0.5,
        "offset": 1.0,
    }
    expected = tops.Clip(0.0, 2.0, "tanh")(tops.Scale(band=2, gain=0.5, offset=1.0)(X))
    np.testing.assert_array_equal(pipe(X), expected)


def test_every_core_combinator_round_trips() -> None:
    pipe = gx.Sequential(
        [
            gx.Identity(),
            tops.Scale(gain=2.0),
            gx.Sequential([tops.Clip(mode="tanh"), gx.Sequential([tops.Lut(n=8, gamma=0.5)])]),
            tops.Select(bands=[2, 0]),
        ]
    )
    back = roundtrip(pipe)
    assert back == pipe
    assert isinstance(back.operators[2].operators[1], gx.Sequential)
    assert back.operators[3].bands == (2, 0)
    assert_same_outputs(back(X), pipe(X))


def test_graph_round_trips_with_full_wiring() -> None:
    opt, sar = gx.Input("optical"), gx.Input("sar")
    shared = tops.Scale(gain=3.0, offset=-1.0)
    a = shared(opt)
    b = tops.Clip(mode="tanh")(a)
    fused = tops.Add()(b, sar)
    again = shared(fused)  # the same operator at two nodes: stored once, wired twice
    inner_in = gx.Input("x")
    inner = gx.Graph(inputs={"x": inner_in}, outputs={"y": tops.Lut(n=5)(inner_in)})
    nested = inner(again)["y"]  # a Graph as a node, then GetItem
    g = gx.Graph(
        inputs={"optical": opt, "sar": sar},
        outputs={"fused": fused, "final": nested, "clipped": b},
    )
    back = roundtrip(g)
    assert isinstance(back, gx.Graph)
    assert back.inputs == g.inputs == ("optical", "sar")
    assert back.outputs == g.outputs
    assert back.nodes == g.nodes
    assert len(back.operators) == len(g.operators)
    assert [type(o) for o in back.operators] == [type(o) for o in g.operators]
    # the shared operator is referenced from two nodes in both
    uses = [spec[0] for spec in back.nodes]
    assert len(uses) > len(set(uses))
    assert isinstance(back.operators[-1], GetItem)
    assert back == g
    out_a, out_b = g(optical=X, sar=X * 2), back(optical=X, sar=X * 2)
    assert set(out_a) == set(out_b) == {"fused", "final", "clipped"}
    assert_same_outputs(out_a, out_b)


def test_graph_yaml_is_readable_and_rebuilds_from_mapping_outputs() -> None:
    text = """
_target_: georax.Graph
inputs: [a, b]
outputs: {sum: 1, scaled: 0}
operators:
  - {_target_: config_test_ops.Scale, gain: 2.0}
  - {_target_: config_test_ops.Add}
nodes: [[0, [a], []], [1, [0, b], []]]
"""
    g = loads_yaml(text)
    out = g(a=X, b=X)
    np.testing.assert_allclose(out["scaled"], 2 * X)
    np.testing.assert_allclose(out["sum"], 3 * X)
    assert g.outputs == (("sum", 1), ("scaled", 0))
    assert "nodes: [[0, [a], []], [1, [0, b], []]]" in dumps_yaml(g)


def test_graph_wiring_errors_are_graph_errors() -> None:
    bad = {
        "_target_": "georax.Graph",
        "inputs": ["a"],
        "outputs": [["o", 0]],
        "operators": [{"_target_": "georax.Identity"}],
        "nodes": [[0, [1], []], [0, ["a"], []]],  # node 0 reads node 1: a forward reference
    }
    with pytest.raises(gx.errors.GraphError, match=r"earlier nodes"):
        from_config(bad)


def test_arrays_inline_exactly_with_dtypes() -> None:
    w = jnp.asarray([[0.1, 0.2, 0.3], [1e-8, -0.0, 3.4e38], [1.0, 2.0, 3.0]], jnp.float32)
    op = tops.BandMix(weights=w)
    cfg = to_config(op)
    assert cfg["weights"] == [[0.1, 0.2, 0.3], [1e-08, -0.0, 3.4e38], [1.0, 2.0, 3.0]]
    back = from_config(cfg)
    assert back.weights.dtype == jnp.float32
    np.testing.assert_array_equal(
        np.asarray(back.weights).view(np.uint32), np.asarray(w).view(np.uint32)
    )
    # non-default dtypes and empty arrays use the explicit form and keep dtype and shape
    for arr in (
        jnp.asarray([1.5, -2.25], jnp.float16),
        jnp.asarray([0.3, 0.7], jnp.bfloat16),
        jnp.zeros((0, 3), jnp.float32),
        jnp.asarray([[1, 2]], jnp.uint8),
        jnp.asarray([True, False]),
    ):
        cfg = to_config(tops.Kernel(weights=arr))
        if arr.size == 0 or arr.dtype not in (jnp.float32, jnp.bool_):
            assert cfg["weights"]["_array_"] is not None
            assert cfg["weights"]["dtype"] == arr.dtype.name
        back = loads_yaml(dumps_yaml(tops.Kernel(weights=arr)))
        assert back.weights.dtype == arr.dtype and back.weights.shape == arr.shape
        np.testing.assert_array_equal(np.asarray(back.weights), np.asarray(arr))


def test_floats_use_shortest_repr_of_their_dtype() -> None:
    op = tops.Scale(gain=0.3, offset=1 / 3)
    text = dumps_yaml(op)
    assert "gain: 0.3," in text and "offset: 0.33333334}" in text
    back = loads_yaml(text)
    assert float(back.gain) == float(op.gain) and float(back.offset) == float(op.offset)


def test_large_arrays_become_placeholders() -> None:
    big = tops.Kernel(weights=jnp.arange(INLINE_MAX + 1, dtype=jnp.float32))
    cfg = to_config(big)
    assert cfg["weights"] == {"_param_": "weights", "shape": [INLINE_MAX + 1], "dtype": "float32"}
    with pytest.raises(ParamsRequiredError, match=r"georax.load"):
        loads_yaml(dumps_yaml(big))
    back = loads_yaml(dumps_yaml(big, max_inline=None))
    np.testing.assert_array_equal(back.weights, big.weights)


def test_derived_fields_are_rebuilt_not_written() -> None:
    op = tops.Lut(n=7, gamma=1.5)
    cfg = to_config(op)
    assert set(cfg) == {"_target_", "n", "gamma"}
    back = from_config(cfg)
    np.testing.assert_array_equal(back.table, op.table)


def test_stochastic_pipeline_round_trips_and_matches_with_key() -> None:
    pipe = gx.Sequential([tops.Scale(gain=0.5), tops.Noise(sigma=0.2)])
    back = roundtrip(pipe)
    key = jax.random.key(7)
    assert_same_outputs(pipe(X, key=key), back(X, key=key))


def test_model_op_round_trips_when_model_is_registered_operator() -> None:
    model = tops.TinyMLP.init((3, 4, 2), jax.random.key(0))
    pipe = gx.Sequential([tops.Scale(gain=2.0), gx.ModelOp(model)])
    back = roundtrip(pipe)
    assert isinstance(back.operators[1], gx.ModelOp)
    assert isinstance(back.operators[1].model, tops.TinyMLP)
    assert back.operators[1].model.sizes == (3, 4, 2)
    assert_same_outputs(pipe(X), back(X))


def test_forbidden_operators_refuse_with_name_and_reason() -> None:
    with pytest.raises(SerializationError, match=r"operators\[1\].*Lambda.*Python function"):
        to_config(gx.Sequential([gx.Identity(), gx.Lambda(lambda v: v + 1, name="plus1")]))
    with pytest.raises(SerializationError, match=r"Tap.*host callback"):
        dumps_yaml(gx.Tap(print))
    with pytest.raises(SerializationError, match=r"ModelOp.*equinox\.nn.*MLP.*not a registered"):
        to_config(gx.ModelOp(eqx.nn.MLP(3, 2, 4, 1, key=jax.random.key(0))))
    with pytest.raises(SerializationError, match=r"HostCallback.*forbid_in_yaml"):
        to_config(tops.HostCallback())
    with pytest.raises(UntrustedTargetError, match=r"forbid_in_yaml") as e:
        from_config({"_target_": "georax.Lambda", "fn": "print"})
    assert e.value.target == "georax.Lambda"


def test_field_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"bogus.*unknown field") as e:
        from_config({"_target_": "config_test_ops.Scale", "bogus": 1})
    assert e.value.field == "bogus"
    with pytest.raises(ConfigError, match=r"band.*wrong type") as e:
        from_config({"_target_": "config_test_ops.Scale", "band": "two"})
    assert e.value.field == "band"
    with pytest.raises(ConfigError, match=r"band.*wrong type"):
        from_config({"_target_": "config_test_ops.Scale", "band": True})
    with pytest.raises(ConfigError, match=r"mode.*wrong type"):
        from_config({"_target_": "config_test_ops.Clip", "mode": "cubic"})
    with pytest.raises(ConfigError, match=r"item.*required"):
        from_config({"_target_": "georax.GetItem"})
    with pytest.raises(ConfigError, match=r"bands.*non-empty"):
        from_config({"_target_": "config_test_ops.Select", "bands": []})


def test_variables_fill_placeholders() -> None:
    text = "{_target_: config_test_ops.QC, on_fail: '${qc_policy}', max_value: '${vmax}'}"
    op = loads_yaml(text, variables={"qc_policy": "warn", "vmax": 100.0})
    assert op.on_fail == "warn" and op.max_value == 100.0
    with pytest.raises(gx.errors.SerializationError, match=r"\$\{qc_policy\}") as e:
        loads_yaml(text, variables={"vmax": 1.0})
    assert e.value.name == "qc_policy"  # type: ignore[attr-defined]


def test_literal_dollar_brace_strings_survive_round_trip() -> None:
    op = tops.QC(on_fail="raise")
    assert loads_yaml(dumps_yaml(op)) == op
    lit = GetItem("${not_a_var}")
    text = dumps_yaml(lit)
    assert "$${not_a_var}" in text
    assert loads_yaml(text) == lit


def test_yaml_formatting_does_not_matter() -> None:
    block = """
_target_: georax.Sequential
operators:
  - _target_: config_test_ops.Scale
    gain: 0.5    # a comment
    band: 1
  - &clip {_target_: config_test_ops.Clip, mode: "tanh"}
"""
    flow = (
        '{"operators": [{"band": 1, "_target_": "config_test_ops.Scale", "gain": 0.50}, '
        '{"mode": tanh, "_target_": config_test_ops.Clip}], "_target_": georax.Sequential}'
    )
    assert config_hash(loads_yaml(block)) == config_hash(loads_yaml(flow))
    assert yaml.safe_load(dumps_yaml(loads_yaml(block))) == to_config(loads_yaml(flow))
    with pytest.raises(ConfigError, match=r"gain.*array parameter.*1\.0e-3"):
        loads_yaml("{_target_: config_test_ops.Scale, gain: 5e-1}")  # YAML 1.1: a string


# --------------------------------------------------------------------------------------
# Property test: random pipelines built from registered operators round-trip.
# --------------------------------------------------------------------------------------
f32 = st.floats(-4, 4, allow_nan=False, width=32)
static_floats = st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=True)

leaf_ops = st.one_of(
    st.builds(tops.Scale, band=st.integers(0, 2), gain=f32, offset=f32),
    st.builds(
        tops.Clip,
        lo=st.floats(-2, 0, allow_nan=False),
        hi=st.floats(0.5, 3, allow_nan=False),
        mode=st.sampled_from(["clip", "tanh"]),
    ),
    st.lists(f32, min_size=9, max_size=9).map(
        lambda v: tops.BandMix(weights=jnp.asarray(v, jnp.float32).reshape(3, 3))
    ),
    st.builds(tops.Lut, n=st.integers(2, 40), gamma=st.floats(0.2, 3, allow_nan=False)),
    st.lists(st.integers(0, 2), min_size=1, max_size=3).map(lambda b: tops.Select(bands=b)),
    st.builds(tops.Kernel, weights=st.lists(f32, min_size=1, max_size=300).map(jnp.asarray)),
    st.builds(tops.QC, on_fail=st.sampled_from(["raise", "warn"]), max_value=static_floats),
    st.just(gx.Identity()),
)


@st.composite
def graphs(draw: st.DrawFn, children: st.SearchStrategy[Operator]) -> Operator:
    """A two-input Graph over random children (with one shared operator), as a 1-in op."""
    ops = draw(st.lists(children, min_size=1, max_size=3))
    a, b = gx.Input("a"), gx.Input("b")
    nodes = [a]
    for op in ops:
        nodes.append(op(nodes[draw(st.integers(0, len(nodes) - 1))]))
    reuse = ops[draw(st.integers(0, len(ops) - 1))]
    nodes.append(reuse(nodes[-1]))
    out = tops.Add()(nodes[-1], b)
    mid = nodes[draw(st.integers(1, len(nodes) - 1))]
    g = gx.Graph(inputs={"a": a, "b": b}, outputs={"out": out, "mid": mid})
    # wrap as a one-input operator: feed the same array to both inputs, pick one output
    x = gx.Input("x")
    wrapper = gx.Graph(inputs={"x": x}, outputs={"y": g(a=x, b=x)["out"]})
    return gx.Sequential([wrapper, GetItem("y")])


pipelines = st.recursive(
    leaf_ops,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(gx.Sequential), graphs(children)
    ),
    max_leaves=6,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pipelines)
def test_random_pipelines_round_trip(pipe: Operator) -> None:
    back = roundtrip(pipe)
    assert pipeline_digest(back) == pipeline_digest(pipe)
    assert bool(eqx.tree_equal(back, pipe))
    assert_same_outputs(back(X), pipe(X))
