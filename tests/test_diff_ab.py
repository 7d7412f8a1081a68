"""georax.diff.AB: per-input metrics, one compilation, quantiles, bimodality, gate, outputs."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

import config_test_ops as tops
import georax as gx
import georax.data as gd
import georax.io as gio
from georax.array.metrics import MAE, RMSE, FractionChanged
from georax.diff import AB, ABMismatchError, DiffError, GateFailedError, bimodality_coefficient
from georax.geo.cloud import MaskClouds
from georax.geo.indices import NDVI
from georax.geo.radiometry import ScaleOffset

RNG = np.random.default_rng(1)


def inputs(n: int, shape=(2, 8, 8), hi: float = 1.0) -> dict[str, np.ndarray]:
    return {f"x{i:02d}": RNG.uniform(0, hi, size=shape).astype(np.float32) for i in range(n)}


def test_per_input_metrics_match_numpy_and_compile_once() -> None:
    a = gx.Sequential([ScaleOffset(scale=2.0)])
    b = gx.Sequential([ScaleOffset(scale=2.0, offset=0.1), tops.Clip(lo=0.0, hi=1.5)])
    xs = inputs(12)
    report = AB(a, b, metrics=[RMSE(), MAE(), FractionChanged(atol=0.05)]).run(xs)
    assert report.metrics == ("rmse", "mae", "fraction_changed")  # the order given
    assert report.ids == tuple(xs)
    assert report.compilations == 1
    for k, x in enumerate(xs.values()):
        ya = x * 2.0
        yb = np.clip(x * 2.0 + 0.1, 0.0, 1.5)
        d = (ya - yb).astype(np.float64)
        assert report.values["rmse"][k] == pytest.approx(np.sqrt(np.mean(d**2)), rel=1e-5)
        assert report.values["mae"][k] == pytest.approx(np.mean(np.abs(d)), rel=1e-5)
        assert report.values["fraction_changed"][k] == pytest.approx(np.mean(np.abs(d) > 0.05))
    s = report.stats("rmse")
    v = report.values["rmse"]
    assert s["p99"] == pytest.approx(np.quantile(v, 0.99)) and s["max"] == v.max()
    assert report.config_diff is not None and [c.kind for c in report.config_diff] == [
        "changed",
        "added",
    ]
    # a second shape compiles once more, not once per input
    more = AB(a, b).run([*xs.values(), *inputs(3, shape=(2, 4, 4)).values()])
    assert more.compilations == 2


def test_bimodality_coefficient_matches_the_moment_formula() -> None:
    x = RNG.normal(size=200)
    n = x.size
    g, k = stats.skew(x, bias=False), stats.kurtosis(x, bias=False)
    ref = (g**2 + 1) / (k + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))
    assert bimodality_coefficient(x) == pytest.approx(ref, rel=1e-10)
    assert bimodality_coefficient(x) < 5 / 9
    two = np.concatenate([RNG.normal(0, 0.1, 90), RNG.normal(5, 0.1, 10)])
    assert bimodality_coefficient(two) > 5 / 9
    assert np.isnan(bimodality_coefficient([1.0, 2.0, 3.0]))
    assert np.isnan(bimodality_coefficient(np.zeros(10)))


def test_a_regression_on_a_subset_is_flagged_bimodal_and_listed_worst() -> None:
    a = gx.Sequential([ScaleOffset(scale=1.0)])
    b = gx.Sequential([tops.Clip(lo=0.0, hi=1.0)])  # only inputs above 1 change
    xs = inputs(40, hi=1.0)
    broken = {f"bad{i}": RNG.uniform(3, 4, size=(2, 8, 8)).astype(np.float32) for i in range(4)}
    report = AB(a, b, worst_n=4).run({**xs, **broken})
    s = report.stats("rmse")
    assert s["p50"] == 0.0 and s["max"] > 2.0
    assert s["bimodal"]
    assert {i for i, _ in report.worst()} == set(broken)
    assert "BIMODAL" in report.summary()
    gate = report.check(max_p90=1.0, allow_bimodal=False)
    assert not gate and any("bimodal" in f for f in gate.failures)
    assert report.check(max_p90=1.0)  # p90 is 0: the bound alone passes


def test_gate_pass_fail_and_errors() -> None:
    a = gx.Sequential([ScaleOffset(scale=1.0)])
    b = gx.Sequential([ScaleOffset(scale=1.0, offset=0.01)])
    report = AB(a, b).run(inputs(5))
    ok = report.check(max_p99=0.02, max_mean=0.011)
    assert ok.passed and bool(ok)
    assert [c[:2] for c in ok.checks] == [("rmse", "p99"), ("rmse", "mean")]
    ok.raise_if_failed()
    bad = report.check(max_p99=0.005)
    assert not bad and bad.failures == ("rmse.p99 = 0.01 exceeds 0.005",)
    with pytest.raises(GateFailedError, match="p99"):
        bad.raise_if_failed()
    with pytest.raises(DiffError, match="unknown bound"):
        report.check(p99=0.1)
    with pytest.raises(DiffError, match="no metric"):
        report.check("kl", max_p99=1.0)


def test_nan_metrics_fail_the_gate_unless_allowed_and_rank_worst() -> None:
    a = gx.Sequential([ScaleOffset(scale=1.0)])
    b = gx.Sequential([ScaleOffset(scale=1.0, offset=0.5)])
    xs = inputs(4)
    xs["x01"] = np.full((2, 8, 8), np.nan, np.float32)
    report = AB(a, b).run(xs)
    assert report.stats()["n_nan"] == 1
    assert report.worst()[0] == ("x01", pytest.approx(float("nan"), nan_ok=True))
    assert not report.check(max_max=1.0)
    assert report.check(max_max=1.0, allow_nan=True)


def test_inputs_as_list_directory_and_catalog_like_iterable(tmp_path: Path) -> None:
    pipe_a = gx.Sequential([MaskClouds(), NDVI()])
    pipe_b = gx.Sequential([MaskClouds(dilate=1), NDVI()])
    scenes = [gd.sentinel2_l1c(32, seed=s) for s in range(3)]
    r_list = AB(pipe_a, pipe_b).run(scenes)
    assert r_list.ids == ("input_0000", "input_0001", "input_0002")
    for k, sc in enumerate(scenes):
        gio.write(sc, tmp_path / f"scene{k}.tif")
    r_dir = AB(pipe_a, pipe_b).run(tmp_path)
    assert [Path(i).name for i in r_dir.ids] == ["scene0.tif", "scene1.tif", "scene2.tif"]
    np.testing.assert_allclose(r_dir.values["rmse"], r_list.values["rmse"], equal_nan=True)
    # a catalog: slices with an id, and a loader that reads one
    slices = [SimpleNamespace(id=f"tile-{k}", seed=k) for k in range(3)]
    r_cat = AB(pipe_a, pipe_b).run(slices, loader=lambda s: gd.sentinel2_l1c(32, seed=s.seed))
    assert r_cat.ids == ("tile-0", "tile-1", "tile-2")
    np.testing.assert_allclose(r_cat.values["rmse"], r_list.values["rmse"], equal_nan=True)
    with pytest.raises(DiffError, match="loader"):
        AB(pipe_a, pipe_b).run([object()])


def test_graph_outputs_get_one_column_per_output() -> None:
    def graph(scale: float) -> gx.Graph:
        x = gx.Input("x")
        return gx.Graph(
            inputs={"x": x},
            outputs={"scaled": ScaleOffset(scale=scale)(x), "same": ScaleOffset(scale=1.0)(x)},
        )

    report = AB(graph(1.0), graph(2.0), metrics=[MAE()]).run(inputs(3))
    assert set(report.metrics) == {"mae[scaled]", "mae[same]"}
    assert np.all(report.values["mae[same]"] == 0) and np.all(report.values["mae[scaled]"] > 0)


def test_output_shape_mismatch_is_a_typed_error_naming_the_input() -> None:
    a = gx.Sequential([MaskClouds(drop_qa=True)])
    b = gx.Sequential([MaskClouds(drop_qa=False)])
    with pytest.raises(ABMismatchError, match="shape") as e:
        AB(a, b).run({"scene": gd.sentinel2_l1c(16)})
    assert e.value.input_id == "scene"


def test_metrics_by_name_and_plain_functions() -> None:
    a = gx.Sequential([ScaleOffset(scale=1.0)])
    b = gx.Sequential([ScaleOffset(scale=3.0)])

    def mean_shift(x, y):  # type: ignore[no-untyped-def]
        return (y - x).mean()

    report = AB(a, b, metrics={"shift": mean_shift, "err": RMSE()}).run(inputs(2))
    assert report.metrics == ("shift", "err")
    assert AB(a, b, metrics=[mean_shift]).run(inputs(1)).metrics == ("mean_shift",)
    assert AB(a, b, metric=MAE()).run(inputs(1)).metrics == ("mae",)  # the seed's spelling
    with pytest.raises(DiffError, match="not both"):
        AB(a, b, metrics=[RMSE()], metric=MAE())
    with pytest.raises(DiffError, match="one number per input"):
        AB(a, b, metrics={"diff": lambda x, y: y - x}).run(inputs(1))
    with pytest.raises(DiffError, match="unique"):
        AB(a, b, metrics=[RMSE(), RMSE()])
    with pytest.raises(DiffError, match="Operator"):
        AB(a, "b")  # type: ignore[arg-type]


def test_report_json_and_histogram_png(tmp_path: Path) -> None:
    a = gx.Sequential([ScaleOffset(scale=1.0)])
    b = gx.Sequential([ScaleOffset(scale=1.1)])
    report = AB(a, b, metrics=[RMSE(), MAE()]).run(inputs(6))
    paths = report.save(tmp_path / "out")
    doc = json.loads(paths["json"].read_text())
    assert doc["format"] == "georax.ab_report/1" and doc["n"] == 6
    assert doc["stats"]["rmse"]["p99"] == pytest.approx(report.stats("rmse")["p99"])
    assert [row["id"] for row in doc["per_input"]] == list(report.ids)
    assert doc["a"]["digest"] == gx.pipeline_digest(a)
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000


def test_a_catalog_runs_every_slice_with_its_raster_loader(tmp_path: Path) -> None:
    from georax.catalog import load_raster, open_catalog

    demo = gd.write_demo_catalog(tmp_path / "cat", n=3, size=32)
    catalog = open_catalog(demo.catalog)
    pipe_a = gx.Sequential([MaskClouds(), NDVI()])
    pipe_b = gx.Sequential([MaskClouds(dilate=1), NDVI()])
    report = AB(pipe_a, pipe_b).run(catalog)
    assert report.ids == demo.ids
    # the same numbers as loading each slice by hand
    by_hand = {s.id: load_raster(s) for s in catalog.iter_slices()}
    expected = AB(pipe_a, pipe_b).run(by_hand)
    np.testing.assert_allclose(report.values["rmse"], expected.values["rmse"], equal_nan=True)
    assert np.isfinite(report.values["rmse"]).all()
