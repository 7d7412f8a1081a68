"""Graph: functional building, multiple inputs/outputs, sharing, validation, summary."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import georax as gx
from georax.core import GraphError

from _core_ops import Add, Gain, Power


def _fusion_like() -> tuple[gx.Graph, dict[str, jax.Array]]:
    a, b = gx.Input("a"), gx.Input("b")
    shared = Gain(2.0)(a)
    fused = Add()(shared, Power(2)(b))
    g = gx.Graph(inputs={"a": a, "b": b}, outputs={"fused": fused, "head": Gain(0.5)(fused)})
    return g, {"a": jnp.arange(3.0), "b": jnp.ones(3)}


def test_graph_runs_with_named_inputs_and_outputs() -> None:
    g, xs = _fusion_like()
    out = g(**xs)
    assert set(out) == {"fused", "head"}
    np.testing.assert_allclose(out["fused"], 2 * xs["a"] + xs["b"] ** 2)
    np.testing.assert_allclose(out["head"], 0.5 * out["fused"])
    jitted = jax.jit(g)(**xs)
    np.testing.assert_allclose(jitted["head"], out["head"])


def test_shared_node_is_computed_once() -> None:
    calls: list[int] = []
    x = gx.Input("x")
    shared = gx.Lambda(lambda v: calls.append(1) or v * 3, name="count")(x)
    g = gx.Graph(inputs={"x": x}, outputs={"p": Gain(1.0)(shared), "q": Power(2)(shared)})
    out = g(jnp.ones(2))
    assert len(calls) == 1 and len(g.nodes) == 3
    np.testing.assert_allclose(out["q"], 9.0)


def test_reused_operator_object_is_stored_once_so_weights_stay_tied() -> None:
    x = gx.Input("x")
    gain = Gain(3.0)
    g = gx.Graph(inputs={"x": x}, outputs={"y": gain(gain(x))})
    assert len(g.operators) == 1 and len(g.nodes) == 2
    grads = jax.grad(lambda gr: gr(jnp.ones(()))["y"])(g)
    # d/dw of w*(w*1) = 2w = 6 : one tied parameter receives both contributions
    np.testing.assert_allclose(grads.operators[0].gain, 6.0)


def test_undeclared_input_is_refused() -> None:
    a, stray = gx.Input("a"), gx.Input("stray")
    with pytest.raises(GraphError, match="undeclared input 'stray'"):
        gx.Graph(inputs={"a": a}, outputs={"y": Add()(a, stray)})


def test_unused_input_is_refused() -> None:
    a, b = gx.Input("a"), gx.Input("b")
    with pytest.raises(GraphError, match=r"\['b'\] are not used"):
        gx.Graph(inputs={"a": a, "b": b}, outputs={"y": Gain()(a)})


def test_wrong_arity_is_refused_at_wiring_time() -> None:
    a, b = gx.Input("a"), gx.Input("b")
    with pytest.raises(GraphError, match="Add called with 1 positional"):
        Add()(a)
    with pytest.raises(GraphError, match="Power called with 2 positional"):
        Power()(a, b)


def test_cycle_is_refused() -> None:
    a = gx.Input("a")
    n1 = Gain()(a)
    n2 = Gain()(n1)
    n1.args = (n2,)  # only reachable by mutating nodes, but must still be caught
    with pytest.raises(GraphError, match="cycle"):
        gx.Graph(inputs={"a": a}, outputs={"y": n2})


def test_serialised_wiring_is_validated() -> None:
    ops = (Gain(), Power())
    with pytest.raises(GraphError, match="earlier nodes"):
        gx.Graph(
            inputs=["a"], outputs={"y": 0}, operators=ops, nodes=[(0, (1,), ()), (1, ("a",), ())]
        )
    with pytest.raises(GraphError, match="undeclared input 'zz'"):
        gx.Graph(inputs=["a"], outputs={"y": 0}, operators=ops, nodes=[(0, ("zz",), ())])
    g = gx.Graph(
        inputs=["a"], outputs={"y": 1}, operators=ops, nodes=[(0, ("a",), ()), (1, (0,), ())]
    )
    np.testing.assert_allclose(g(jnp.ones(2))["y"], 4.0)


def test_rebuilding_from_fields_keeps_wiring() -> None:
    g, xs = _fusion_like()
    rebuilt = gx.Graph(**g.config_fields())
    assert rebuilt.nodes == g.nodes and rebuilt.outputs == g.outputs
    np.testing.assert_allclose(rebuilt(**xs)["head"], g(**xs)["head"])


def test_wrong_runtime_inputs_are_named() -> None:
    g, xs = _fusion_like()
    with pytest.raises(GraphError, match=r"missing \['b'\], unexpected \['c'\]"):
        g(a=xs["a"], c=xs["b"])
    with pytest.raises(GraphError, match="keyword inputs"):
        g(xs["a"])


def test_graph_output_item_and_nesting() -> None:
    g, xs = _fusion_like()
    a, b = gx.Input("a"), gx.Input("b")
    inner = g(a=a, b=b)  # a graph used as a node inside another graph
    outer = gx.Graph(inputs={"a": a, "b": b}, outputs={"z": Gain(10.0)(inner["head"])})
    np.testing.assert_allclose(outer(**xs)["z"], 10 * g(**xs)["head"])


def test_summary_lists_every_node_with_shapes() -> None:
    g, _ = _fusion_like()
    s = g.summary(
        a=jax.ShapeDtypeStruct((4, 5), jnp.float32), b=jax.ShapeDtypeStruct((4, 5), jnp.float32)
    )
    ops = [r[1] for r in s.rows]
    assert ops[:2] == ["Input(a)", "Input(b)"]
    assert any(o.startswith("Add -> 'fused'") for o in ops)
    assert all(r[3] == "(4, 5)" for r in s.rows)
