"""georax.diff.config_diff: aligned, structural, values compared, Graph wiring."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import config_test_ops as tops
import georax as gx
from georax.diff import DiffError, config_diff
from georax.geo.cloud import MaskClouds
from georax.geo.indices import NDVI
from georax.geo.radiometry import DarkObjectSubtraction, ScaleOffset
from georax.geo.sar import LeeSpeckle, LinearToDB


def seed_old() -> gx.Sequential:
    return gx.Sequential([MaskClouds(), DarkObjectSubtraction(percentile=1.0), NDVI()])


def seed_new() -> gx.Sequential:
    """The seeds' candidate: percentile 1 -> 2 and a LeeSpeckle inserted before the index."""
    return gx.Sequential(
        [MaskClouds(), DarkObjectSubtraction(percentile=2.0), LeeSpeckle(), NDVI()]
    )


def test_an_insertion_is_exactly_one_added_operator() -> None:
    ops = [MaskClouds(), ScaleOffset(scale=1e-4), DarkObjectSubtraction(percentile=1.0), NDVI()]
    old = gx.Sequential(ops)
    new = gx.Sequential([*ops[:2], LeeSpeckle(), *ops[2:]])
    d = config_diff(old, new)
    assert [c.kind for c in d.changes] == ["added"]
    (added,) = d.added
    assert added.path == "operators[2]" and added.operator == "LeeSpeckle"
    assert (
        added.detail["after"] == "ScaleOffset" and added.detail["before"] == "DarkObjectSubtraction"
    )
    assert added.detail["config"]["_target_"] == "georax.geo.sar.LeeSpeckle"
    # the reverse is exactly one removal, at the old index
    (removed,) = config_diff(new, old).changes
    assert removed.kind == "removed" and removed.path == "operators[2]"


def test_the_seed_candidate_shows_the_field_change_and_the_insertion() -> None:
    d = config_diff(seed_old(), seed_new())
    kinds = sorted(c.kind for c in d.changes)
    assert kinds == ["added", "changed"]
    (changed,) = d.changed
    assert (changed.path, changed.operator, changed.field) == (
        "operators[1].percentile",
        "DarkObjectSubtraction",
        "percentile",
    )
    assert (changed.old, changed.new) == (1.0, 2.0)
    text = str(d)
    assert "~ operators[1].percentile (DarkObjectSubtraction): 1.0 -> 2.0" in text
    assert "+ operators[2] LeeSpeckle (added after DarkObjectSubtraction, before NDVI)" in text
    # two identical pipelines (or one rebuilt from YAML) have no difference
    assert config_diff(seed_old(), gx.loads_yaml(gx.dumps_yaml(seed_old()))).equal
    assert str(config_diff(seed_old(), seed_old())) == "no differences"


def test_a_swap_is_one_move_not_two_changes() -> None:
    a = gx.Sequential([MaskClouds(), ScaleOffset(scale=2.0), NDVI()])
    b = gx.Sequential([ScaleOffset(scale=2.0), MaskClouds(), NDVI()])
    d = config_diff(a, b)
    assert [c.kind for c in d.changes] == ["moved"]
    assert d.moved[0].detail["from"] in ("operators[0]", "operators[1]")


def test_a_replaced_operator_is_a_removal_and_an_addition() -> None:
    a = gx.Sequential([MaskClouds(), LinearToDB(), NDVI()])
    b = gx.Sequential([MaskClouds(), LeeSpeckle(), NDVI()])
    d = config_diff(a, b)
    assert sorted(c.kind for c in d.changes) == ["added", "removed"]
    assert d.removed[0].operator == "LinearToDB" and d.added[0].operator == "LeeSpeckle"


def test_array_leaves_are_compared_by_value() -> None:
    w = np.arange(9, dtype=np.float32).reshape(3, 3)
    w2 = w.copy()
    w2[1, 2] += 0.25
    w2[2, 0] -= 1.5
    d = config_diff(tops.BandMix(weights=w), tops.BandMix(weights=w2))
    (c,) = d.changes
    assert c.field == "weights"
    assert c.detail["max_abs_diff"] == pytest.approx(1.5)
    assert c.detail["n_changed"] == 2 and c.detail["size"] == 9
    # large arrays (params placeholders) are fetched from the pipelines themselves
    m1 = tops.TinyMLP.init((3, 32, 16, 2), jax.random.key(0))
    w1 = np.asarray(m1.weights[1])
    bumped = w1.copy()
    bumped[0, :4] += np.float32(0.01)
    m2 = tops.TinyMLP(
        sizes=m1.sizes, weights=[m1.weights[0], bumped, m1.weights[2]], biases=m1.biases
    )
    d = config_diff(gx.ModelOp(m1), gx.ModelOp(m2))
    (c,) = d.changes
    assert c.path == "model.weights[1]"
    assert c.detail["max_abs_diff"] == pytest.approx(float(np.max(np.abs(bumped - w1))))
    assert c.detail["n_changed"] == 4
    # from configs alone, placeholder values are unknown: said, not silently "equal"
    dc = config_diff(gx.to_config(gx.ModelOp(m1)), gx.to_config(gx.ModelOp(m2)))
    assert dc.equal and any("model.weights[1]" in n for n in dc.notes)
    # a scalar leaf reports its change with the absolute difference
    (s,) = config_diff(ScaleOffset(scale=2.0), ScaleOffset(scale=2.5)).changes
    assert (s.old, s.new, s.detail["abs_diff"]) == (2.0, 2.5, 0.5)


def test_static_lists_and_nested_children() -> None:
    d = config_diff(MaskClouds(bits=(10, 11)), MaskClouds(bits=(10, 12)))
    (c,) = d.changes
    assert c.field == "bits" and c.old == [10, 11] and c.new == [10, 12]
    inner_a = gx.Sequential([gx.Sequential([ScaleOffset(scale=1.0)]), NDVI()])
    inner_b = gx.Sequential([gx.Sequential([ScaleOffset(scale=1.0), LinearToDB()]), NDVI()])
    (c,) = config_diff(inner_a, inner_b).changes
    assert c.kind == "added" and c.path == "operators[0].operators[1]"


def graph(extra_output: bool = False, speckle: bool = True, dilate: int = 0) -> gx.Graph:
    opt, sar = gx.Input("optical"), gx.Input("sar")
    masked = MaskClouds(dilate=dilate)(opt)
    db = LinearToDB()(LeeSpeckle()(sar) if speckle else sar)
    outputs = {"ndvi": NDVI()(masked), "db": db}
    if extra_output:
        outputs["mask"] = masked
    return gx.Graph(inputs={"optical": opt, "sar": sar}, outputs=outputs)


def test_graph_wiring_changes() -> None:
    d = config_diff(graph(), graph(extra_output=True, speckle=False, dilate=1))
    kinds = sorted(c.kind for c in d.changes)
    assert kinds == ["changed", "removed", "wiring", "wiring"]
    assert d.removed[0].operator == "LeeSpeckle"
    assert d.changed[0].field == "dilate"
    wiring = {c.field: c for c in d.of_kind("wiring")}
    assert wiring["args"].operator == "LinearToDB"
    assert wiring["args"].new == ["input 'sar'"] and "LeeSpeckle" in wiring["args"].old[0]
    assert wiring["outputs"].detail == {"output": "mask"} and wiring["outputs"].old is None
    assert "output 'mask' added" in str(d)
    assert config_diff(graph(), graph()).equal


def test_graph_input_added_and_output_rewired() -> None:
    opt, sar, dem = gx.Input("optical"), gx.Input("sar"), gx.Input("dem")
    g2 = gx.Graph(
        inputs={"optical": opt, "sar": sar, "dem": dem},
        outputs={
            "ndvi": NDVI()(MaskClouds()(opt)),
            "db": LinearToDB()(dem),
            "speckle": LeeSpeckle()(sar),
        },
    )
    opt, sar = gx.Input("optical"), gx.Input("sar")
    g1 = gx.Graph(
        inputs={"optical": opt, "sar": sar},
        outputs={"ndvi": NDVI()(MaskClouds()(opt)), "db": LinearToDB()(sar)},
    )
    d = config_diff(g1, g2)
    texts = [str(c) for c in d.of_kind("wiring")]
    assert any("input 'dem' added" in t for t in texts)
    assert any("LinearToDB now reads [\"input 'dem'\"]" in t for t in texts)
    assert any("output 'speckle' added" in t for t in texts)
    assert [c.operator for c in d.added] == ["LeeSpeckle"]


def test_the_dict_form_is_strict_json() -> None:
    # A NaN leaf (domain operators refuse one; the test operator does not) must not leak
    # into the JSON as the non-standard token NaN.
    a = gx.Sequential([tops.Scale(gain=float("nan")), NDVI()])
    b = gx.Sequential([tops.Scale(gain=2.0), LeeSpeckle(), NDVI()])
    d = config_diff(a, b)
    doc = json.loads(d.to_json())
    assert doc["format"] == "georax.config_diff/1" and not doc["equal"]
    assert doc["counts"] == {"changed": 1, "added": 1}
    assert doc["a"]["config_hash"] == gx.config_hash(a)
    assert {c["kind"] for c in doc["changes"]} == {"changed", "added"}


def test_root_class_change_and_bad_arguments() -> None:
    d = config_diff(gx.Sequential([NDVI()]), NDVI())
    (c,) = d.changes
    assert c.kind == "replaced" and c.old == "georax.Sequential"
    with pytest.raises(DiffError, match="Operator or a pipeline config"):
        config_diff("old.yaml", NDVI())  # type: ignore[arg-type]
    saved_doc = {"georax": "georax.saved/1", "pipeline": gx.to_config(NDVI())}
    assert config_diff(saved_doc, NDVI()).equal
