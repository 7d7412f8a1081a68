"""Shared helpers for the geo operator tests (round trips)."""

from __future__ import annotations

from typing import Any

import equinox as eqx

from georax.core.operator import Operator


def assert_rebuilds(op: Operator) -> None:
    """The Operator contract: ``type(op)(**op.config_fields())`` equals ``op``; and via YAML."""
    again = type(op)(**op.config_fields())
    assert bool(eqx.tree_equal(again, op)), (op, again)
    from georax.core.yaml_io import dumps_yaml, loads_yaml

    text = dumps_yaml(op)
    loaded: Any = loads_yaml(text)
    assert type(loaded) is type(op)
    assert bool(eqx.tree_equal(loaded, op)), text
