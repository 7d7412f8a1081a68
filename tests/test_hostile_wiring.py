"""Hostile input, causes 7 and 8: Graph wiring from YAML, and limits that cannot be bypassed.

Cause 7: wiring the Python API refuses is refused from YAML too, with typed errors, and nothing
is silently converted (a float index is not truncated).
Cause 8: limits hold after ``${}`` variables are filled in; the CLI refuses nonsense budgets.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import config_test_ops  # noqa: F401 -- registers the test operators
import georax as gx
from georax.core.registry import public_operators
from georax.core.sandbox import SANDBOX_LIMITS, SandboxLimitError
from georax.core.yaml_io import loads_yaml
from georax.errors import ConfigError, GraphError

ALLOWED = public_operators(include_modules=["georax", "config_test_ops"])


def _graph(**changes: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "_target_": "georax.Graph",
        "inputs": ["a"],
        "outputs": {"y": 1},
        "operators": [{"_target_": "georax.Identity"}, {"_target_": "config_test_ops.Scale"}],
        "nodes": [[0, ["a"], []], [1, [0], []]],
    }
    cfg.update(changes)
    return cfg


def test_the_reference_graph_loads() -> None:
    g = gx.from_config(_graph(), allowed=ALLOWED)
    assert g.nodes == ((0, ("a",), ()), (1, (0,), ())) and g.outputs == (("y", 1),)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"nodes": [[0, ["a"], []], [1, [0.0], []]]}, "nodes"),  # float node reference
        ({"nodes": [[0, ["a"], []], [1, [True], []]]}, "nodes"),  # bool is not an index
        ({"nodes": [[0.0, ["a"], []], [1, [0], []]]}, "nodes"),  # float operator index
        ({"nodes": [[0, ["a"], []], [1.9, [0], []]]}, "nodes"),  # would truncate to 1
        ({"outputs": {"y": 1.0}}, "outputs"),  # float output index
        ({"outputs": [["y", 1.5]]}, "outputs"),
        ({"nodes": [[0, ["a"]]]}, "nodes"),  # not [operator, args, kwargs]
        ({"nodes": [[0, ["a"], [["k", 0.5]]], [1, [0], []]]}, "nodes"),  # float in kwargs
        ({"inputs": "a"}, "inputs"),  # a string is not a list of names
    ],
)
def test_mistyped_wiring_is_a_config_error_naming_the_field(
    change: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as e:
        gx.from_config(_graph(**change), allowed=ALLOWED)
    assert (e.value.operator, e.value.field) == ("Graph", field)


def test_wiring_the_python_api_refuses_is_refused_from_yaml() -> None:
    with pytest.raises(GraphError, match="at least one output"):
        gx.Graph(inputs={"a": gx.Input("a")}, outputs={})
    with pytest.raises(GraphError, match="at least one output"):
        gx.from_config(_graph(outputs={}), allowed=ALLOWED)
    with pytest.raises(GraphError, match="earlier nodes"):
        gx.from_config(_graph(nodes=[[0, ["a"], []], [1, [1], []]]), allowed=ALLOWED)
    with pytest.raises(GraphError, match="duplicate input"):
        gx.from_config(_graph(inputs=["a", "a"]), allowed=ALLOWED)


def test_node_counts_hold_after_variables_are_filled_in() -> None:
    half = SANDBOX_LIMITS.max_operators // 2 + 10
    steps = [{"_target_": "georax.Identity"}] * half  # within the limits on its own
    inner = "{_target_: georax.Sequential, operators: '${steps}'}"
    text = f"{{_target_: georax.Sequential, operators: [{inner}, {inner}]}}"
    with pytest.raises(SandboxLimitError) as e:
        loads_yaml(text, allowed=ALLOWED, variables={"steps": steps})
    assert e.value.limit == "max_operators" and "filled in" in str(e.value)
    ok = loads_yaml(text, allowed=ALLOWED, variables={"steps": steps[:3]})
    assert [len(s) for s in ok] == [3, 3]
    # a variable holding a long list of Graph nodes
    nodes = [[0, ["a"], []]] + [[0, [i], []] for i in range(3000)]
    graph = "{_target_: georax.Graph, inputs: [a], outputs: {y: 0}, operators: "
    graph += "[{_target_: georax.Identity}], nodes: '${nodes}'}"
    with pytest.raises(SandboxLimitError) as e:
        loads_yaml(graph, allowed=ALLOWED, variables={"nodes": nodes})
    assert e.value.limit == "max_nodes"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "georax.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_refuses_nonsense_budgets_and_dtypes_cleanly(tmp_path: Path) -> None:
    doc = tmp_path / "p.yaml"
    doc.write_text("{_target_: georax.Identity}")
    for extra, message in (
        (["--max-flops", "nan"], "FLOPs"),
        (["--max-flops", "-5"], "FLOPs"),
        (["--dtype", "notadtype"], "is not a dtype"),
        (["--budget", "lots"], "not a size"),
    ):
        proc = _cli("validate", str(doc), "--input-shape", "1,8,8", "--budget", "1MiB", *extra)
        assert proc.returncode == 2, (extra, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr
