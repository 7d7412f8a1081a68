"""config_hash, params_hash, pipeline_digest: stable across processes, sensitive to any value."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import config_test_ops as tops
import georax as gx
from georax.core.config import from_config, to_config
from georax.core.hashing import (
    CONFIG_FORMAT,
    canonical_json,
    combine_digest,
    config_hash,
    params_hash,
    pipeline_digest,
)
from georax.core.yaml_io import dumps_yaml, loads_yaml

TESTS = Path(__file__).parent


def pipeline() -> gx.Sequential:
    return gx.Sequential(
        [
            tops.Scale(band=1, gain=0.5, offset=-0.25),
            tops.Clip(lo=-1.0, hi=2.0, mode="tanh"),
            tops.Select(bands=(2, 0)),
            tops.QC(on_fail="warn", max_value=1e4),
            tops.Lut(n=9, gamma=1.5),
            tops.BandMix(weights=jnp.eye(3) * 0.5),
            tops.Kernel(weights=jnp.linspace(0.0, 1.0, 1000)),  # large: params, not config
        ]
    )


def test_config_hash_is_the_documented_sha256() -> None:
    op = pipeline()
    canon = json.dumps(to_config(op), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    h = hashlib.sha256()
    for part in (CONFIG_FORMAT.encode(), canon.encode()):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    assert config_hash(op) == h.hexdigest()
    assert canonical_json(to_config(op)) == canon
    assert pipeline_digest(op) == combine_digest(config_hash(op), params_hash(op))


def test_equal_configs_hash_equal_in_another_process() -> None:
    op = pipeline()
    script = (
        "import config_test_ops, jax.numpy as jnp, georax as gx\n"
        "from georax.core.hashing import config_hash, params_hash, pipeline_digest\n"
        "from georax.core.yaml_io import loads_yaml\n"
        "import sys\n"
        "op = loads_yaml(sys.stdin.read())\n"
        "print(config_hash(op), pipeline_digest(op))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    env["PYTHONHASHSEED"] = "12345"  # a different str-hash seed must not matter
    proc = subprocess.run(
        [sys.executable, "-c", script],
        input=dumps_yaml(op, max_inline=None),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    other_config, other_digest = proc.stdout.split()
    assert other_config == config_hash(op)
    assert other_digest == pipeline_digest(op)


def test_key_order_and_yaml_formatting_do_not_matter() -> None:
    op = pipeline()
    cfg = to_config(op)

    def reverse_keys(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: reverse_keys(node[k]) for k in reversed(list(node))}
        if isinstance(node, list):
            return [reverse_keys(v) for v in node]
        return node

    assert config_hash(reverse_keys(cfg)) == config_hash(cfg) == config_hash(op)
    block = """
# a comment
_target_: georax.Sequential
operators:
- _target_: config_test_ops.Scale
  offset: -0.25
  gain: 0.50
  band: 1
- {_target_: 'config_test_ops.Clip', hi: 2.0, lo: -1.0, mode: "tanh"}
"""
    flow = (
        "{operators: [{_target_: config_test_ops.Scale, band: 1, gain: 5.0e-1, "
        "offset: -25.0e-2}, {mode: tanh, lo: -1.0, hi: 2.0, _target_: config_test_ops.Clip}], "
        "_target_: georax.Sequential}"
    )
    python = gx.Sequential(
        [tops.Scale(band=1, gain=0.5, offset=-0.25), tops.Clip(-1.0, 2.0, "tanh")]
    )
    assert config_hash(loads_yaml(block)) == config_hash(loads_yaml(flow)) == config_hash(python)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every scalar position in a config (except targets and param placeholders)."""
    if isinstance(node, dict):
        if "_param_" in node:
            return []
        return [p for k, v in node.items() if k != "_target_" for p in _paths(v, (*path, k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _paths(v, (*path, i))]
    return [path]


def _perturb(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1 if value < 2 else value - 1
    if isinstance(value, float):
        return float(np.nextafter(np.float32(value), np.float32(np.inf)))
    if isinstance(value, str):
        return {"tanh": "clip", "clip": "tanh", "warn": "raise", "raise": "warn"}[value]
    raise AssertionError(value)


def test_every_value_change_changes_the_config_hash() -> None:
    op = pipeline()
    cfg = to_config(op)
    base = config_hash(op)
    positions = _paths(cfg)
    assert len(positions) >= 15
    seen = {base}
    for path in positions:
        changed = copy.deepcopy(cfg)
        node = changed
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = _perturb(node[path[-1]])
        rebuilt = from_config(changed, param_factory=lambda k, s, d: jnp.zeros(s, d))
        h = config_hash(rebuilt)
        assert h != base, f"changing {path} did not change the hash"
        seen.add(h)
    assert len(seen) == len(positions) + 1  # all distinct


def test_float_handling() -> None:
    # a one-ulp change of a float32 leaf changes the hash
    a, b = tops.Scale(gain=0.3), tops.Scale(gain=np.nextafter(np.float32(0.3), np.float32(1)))
    assert config_hash(a) != config_hash(b)
    # 0.1 typed in YAML hashes like 0.1 in Python, for static floats and float32 leaves
    assert config_hash(loads_yaml("{_target_: config_test_ops.QC, max_value: 0.1}")) == config_hash(
        tops.QC(max_value=0.1)
    )
    assert config_hash(loads_yaml("{_target_: config_test_ops.Scale, gain: 0.3}")) == config_hash(a)
    # int vs float, -0.0 vs 0.0, True vs 1 are different values
    assert config_hash({"_target_": "x", "v": 1}) != config_hash({"_target_": "x", "v": 1.0})
    assert config_hash({"_target_": "x", "v": 0.0}) != config_hash({"_target_": "x", "v": -0.0})
    assert config_hash({"_target_": "x", "v": True}) != config_hash({"_target_": "x", "v": 1})
    # non-finite values hash deterministically and distinctly from strings
    inf = tops.QC(max_value=float("inf"))
    assert config_hash(loads_yaml(dumps_yaml(inf))) == config_hash(inf)
    assert config_hash({"_target_": "x", "v": float("nan")}) == config_hash(
        {"_target_": "x", "v": float("nan")}
    )
    assert config_hash({"_target_": "x", "v": float("nan")}) != config_hash(
        {"_target_": "x", "v": "NaN"}
    )


def test_params_hash_tracks_weights_bit_for_bit() -> None:
    op = pipeline()
    w = op.operators[-1].weights
    nudged = gx.Sequential(
        [
            *op.operators[:-1],
            tops.Kernel(weights=w.at[500].set(np.nextafter(w[500], np.float32(2)))),
        ]
    )
    # large weights are params: config hash unchanged, params hash and digest change
    assert config_hash(nudged) == config_hash(op)
    assert params_hash(nudged) != params_hash(op)
    assert pipeline_digest(nudged) != pipeline_digest(op)
    # dtype and shape are part of the params hash even for equal values
    assert params_hash(tops.Kernel(weights=jnp.ones(4))) != params_hash(
        tops.Kernel(weights=jnp.ones(4, jnp.float16))
    )
    assert params_hash(tops.Kernel(weights=jnp.ones(4))) != params_hash(
        tops.Kernel(weights=jnp.ones((2, 2)))
    )
    # derived arrays are covered too
    assert params_hash(tops.Lut(n=5, gamma=2.0)) != params_hash(tops.Lut(n=5, gamma=2.5))
    # swapping two leaves with equal bytes at different places changes the hash (paths count)
    s1 = gx.Sequential([tops.Scale(gain=1.0, offset=2.0)])
    s2 = gx.Sequential([tops.Scale(gain=2.0, offset=1.0)])
    assert params_hash(s1) != params_hash(s2)


@settings(max_examples=25, deadline=None)
@given(
    gain=st.floats(-1e3, 1e3, allow_nan=False, width=32),
    offset=st.floats(-1e3, 1e3, allow_nan=False, width=32),
    band=st.integers(0, 2),
    lo=st.floats(-1e30, 1e30, allow_nan=False),
)
def test_hash_is_stable_through_yaml(gain: float, offset: float, band: int, lo: float) -> None:
    op = gx.Sequential(
        [tops.Scale(band=band, gain=gain, offset=offset), tops.Clip(lo=lo, hi=lo + 1)]
    )
    back = loads_yaml(dumps_yaml(op))
    assert config_hash(back) == config_hash(op)
    assert params_hash(back) == params_hash(op)
    other = gx.Sequential(
        [tops.Scale(band=(band + 1) % 3, gain=gain, offset=offset), op.operators[1]]
    )
    assert config_hash(other) != config_hash(op)


def test_hash_of_unwritable_pipeline_is_an_error() -> None:
    with pytest.raises(gx.errors.SerializationError, match="Lambda"):
        config_hash(gx.Lambda(lambda v: v))
