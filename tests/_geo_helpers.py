"""Shared helpers for the geo operator tests (round trips, the Chips carrier)."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import numpy as np

from georax.core.operator import Operator
from georax.patch import Chips, GridSampler, Patcher, Stitch


def assert_rebuilds(op: Operator) -> None:
    """The Operator contract: ``type(op)(**op.config_fields())`` equals ``op``; and via YAML."""
    again = type(op)(**op.config_fields())
    assert bool(eqx.tree_equal(again, op)), (op, again)
    from georax.core.yaml_io import dumps_yaml, loads_yaml

    text = dumps_yaml(op)
    loaded: Any = loads_yaml(text)
    assert type(loaded) is type(op)
    assert bool(eqx.tree_equal(loaded, op)), text


def chips_of(scene: Any, chip: int = 8, stride: int = 6) -> Chips:
    """Overlapping chips covering ``scene`` (a GeoTensor), cut by a regular patcher."""
    return GridSampler(Patcher.regular(chip, stride))(scene)


def assert_runs_on_chips(op: Operator, chips: Chips, **kwargs: Any) -> Chips:
    """``op`` maps a Chips stack to a Chips stack equal to running it on each chip alone.

    The carrier protocol: positions, chip layout, scene shape and georeferencing are kept (only
    ``values``, and band names / fill value where the operator changes them, may differ).
    """
    out = op(chips, **kwargs)
    assert isinstance(out, Chips), type(out)
    np.testing.assert_array_equal(np.asarray(out.positions), np.asarray(chips.positions))
    assert out.chip == chips.chip and out.scene_shape == chips.scene_shape
    assert out.window == chips.window and out.aggregation == chips.aggregation
    assert out.pads == chips.pads and out.offsets == chips.offsets
    assert out.transform == chips.transform and out.crs == chips.crs and out.geo == chips.geo
    per_chip = jax.vmap(lambda v: op(v, **kwargs))(chips.values)
    np.testing.assert_allclose(np.asarray(out.values), np.asarray(per_chip), rtol=1e-6)
    return out


def assert_stitches_to_scene(op: Operator, scene: Any, *, rtol: float = 1e-6) -> None:
    """For a pixelwise ``op``: GridSampler -> op -> Stitch equals op on the whole scene."""
    chips = chips_of(scene)
    stitched = Stitch()(assert_runs_on_chips(op, chips))
    whole = op(scene)
    assert type(stitched) is type(whole)
    assert stitched.transform == whole.transform and stitched.crs == whole.crs
    assert stitched.band_names == whole.band_names
    np.testing.assert_allclose(
        np.asarray(stitched.values, np.float64), np.asarray(whole.values, np.float64), rtol=rtol
    )
