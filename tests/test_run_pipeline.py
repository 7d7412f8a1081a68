"""CatalogPipeline in process: compilations per shape, outputs, manifest, resume, failure policy."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from affine import Affine

import georax as gx
import georax.data as gd
import georax.io as gio
from _run_support import seed_chain
from georax.catalog import load_raster, open_catalog
from georax.core.errors import SerializationError
from georax.geo.radiometry import DarkObjectSubtraction
from georax.run import (
    MANIFEST_FILE,
    CatalogPipeline,
    CogWriter,
    CompiledPipeline,
    FailureRateExceededError,
    Manifest,
    RowFailedError,
    RunError,
    RunLockedError,
    StatsWriter,
    output_name,
)
from georax.run.files import RunLock
from georax.tensor import GeoTensor

SIZES = [24, 32, 40]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> gd.DemoCatalog:
    """9 scenes of 3 shapes, no corrupt file."""
    return gd.write_demo_catalog(tmp_path_factory.mktemp("mixed"), 9, size=SIZES)


@pytest.fixture(scope="module")
def flaky(tmp_path_factory: pytest.TempPathFactory) -> gd.DemoCatalog:
    """8 scenes of one shape, rows 3 and 6 corrupt (truncated after cataloguing)."""
    return gd.write_demo_catalog(tmp_path_factory.mktemp("flaky"), 8, size=24, corrupt=[3, 6])


def _records(out: Path) -> dict[str, dict]:
    lines = (out / MANIFEST_FILE).read_text().splitlines()
    assert json.loads(lines[0]) == {"georax": "georax.run-manifest/1"}
    records = [json.loads(line) for line in lines[1:]]
    rows = [r["row"] for r in records]
    assert len(rows) == len(set(rows)), "one record per row after compaction"
    return {r["row"]: r for r in records}


def assert_disk_matches_manifest(out: Path) -> dict[str, dict]:
    """Every done row has its file with the recorded digest; nothing else; no temporaries."""
    records = _records(out)
    done = {r["output"] for r in records.values() if r["status"] == "done"}
    assert {p.name for p in out.glob("*.tif")} == done
    for r in records.values():
        if r["status"] == "done":
            data = (out / r["output"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == r["output_digest"]
            assert len(data) == r["output_bytes"]
    assert [p.name for p in out.iterdir() if ".tmp" in p.name] == []
    return records


def test_compiles_once_per_shape_and_matches_the_pipeline(mixed, tmp_path: Path) -> None:
    pipe = seed_chain()
    cat = open_catalog(mixed.catalog)
    report = CatalogPipeline(cat, pipe, writer=CogWriter(tmp_path / "out")).run(progress=False)
    assert (report.done, report.skipped, report.failed) == (9, 0, 0)
    assert report.compilations == len(set(SIZES)) == 3
    records = assert_disk_matches_manifest(tmp_path / "out")
    for s in cat.iter_slices():
        expected = pipe(load_raster(s))  # eager, georeferenced
        written = gio.read(tmp_path / "out" / records[s.id]["output"])
        np.testing.assert_allclose(
            np.asarray(written.values), np.asarray(expected.values), rtol=1e-6, equal_nan=True
        )
        assert written.transform == expected.transform and written.crs == expected.crs
        assert records[s.id]["input_digest"] == s.hash
        assert (
            records[s.id]["pipeline_digest"] == gx.pipeline_digest(pipe) == report.pipeline_digest
        )


def test_vmap_batches_give_the_same_files(mixed, tmp_path: Path) -> None:
    cat = open_catalog(mixed.catalog)
    single = CatalogPipeline(cat, seed_chain(), writer=CogWriter(tmp_path / "a")).run(
        progress=False
    )
    batched = CatalogPipeline(
        cat, seed_chain(), writer=CogWriter(tmp_path / "b"), batch_size=3
    ).run(progress=False)
    assert batched.done == 9 and batched.compilations == 3  # three rows per shape, one batch each
    a, b = _records(tmp_path / "a"), _records(tmp_path / "b")
    for row in a:
        np.testing.assert_allclose(
            np.asarray(gio.read(tmp_path / "a" / a[row]["output"]).values),
            np.asarray(gio.read(tmp_path / "b" / b[row]["output"]).values),
            rtol=1e-6,
            equal_nan=True,
        )
    assert single.compilations == 3


class PinToGrid(gx.Operator):
    """Test-only: moves the result onto a fixed grid (not translation-equivariant)."""

    def __call__(self, x, *, key=None):
        return x.replace(transform=Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4600000.0))


class NeedsPlace(gx.Operator):
    """Test-only: refuses scenes west of x=1000 m (as a reprojection off its zone would)."""

    def __call__(self, x, *, key=None):
        if x.transform.c < 1000:
            raise gx.errors.DataError("NeedsPlace: the scene is outside the zone")
        return x.replace(values=x.values * 2)


def test_position_dependent_pipelines_fall_back_to_exact_compiles(mixed) -> None:
    slices = open_catalog(mixed.catalog).iter_slices()
    gts = [load_raster(s) for s in slices if s.shape == (24, 24)]
    assert len(gts) == 3
    moving = CompiledPipeline(seed_chain())
    pinned = CompiledPipeline(PinToGrid())
    for gt in gts:
        assert moving(gt).transform == seed_chain()(gt).transform
        assert pinned(gt).transform == PinToGrid()(gt).transform
    assert moving.traces == 1  # one shape, three positions: one program
    # the probe saw the output not move: one program per position (+1: the probe's own)
    assert pinned.traces == 3 + 1
    placed = CompiledPipeline(NeedsPlace())  # fails at the rebased origin: exact programs
    for gt in gts:
        out = placed(gt)
        assert out.transform == gt.transform
        np.testing.assert_array_equal(np.asarray(out.values), np.asarray(gt.values) * 2)
    assert placed.traces == 1 + 3  # the failed rebased attempt, then one per position
    plain = CompiledPipeline(seed_chain())
    np.testing.assert_allclose(
        np.asarray(plain(np.asarray(gts[0].values))),
        np.asarray(seed_chain()(np.asarray(gts[0].values))),
        rtol=1e-6,
        equal_nan=True,
    )


def test_corrupt_scenes_are_reported_and_every_other_row_written(flaky, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = CatalogPipeline(
        open_catalog(flaky.catalog),
        seed_chain(),
        writer=CogWriter(out),
        on_row_error="log_and_continue",
    ).run(progress=False)
    assert (report.done, report.failed) == (6, 2)
    assert report.failure_rate == pytest.approx(2 / 8)
    assert [(e[0], e[1]) for e in report.errors] == [
        ("scene_003", "CorruptRasterError"),
        ("scene_006", "CorruptRasterError"),
    ]
    records = assert_disk_matches_manifest(out)
    assert {r for r, v in records.items() if v["status"] == "failed"} == {"scene_003", "scene_006"}
    assert "scene_003.tif" in records["scene_003"]["error"]
    stats = gpd.read_parquet(out / "stats.parquet")
    assert sorted(stats["id"]) == sorted(r for r, v in records.items() if v["status"] == "done")
    row = stats.set_index("id").loc["scene_000"]
    values = np.asarray(gio.read(out / "scene_000.tif").values, dtype=np.float64)
    ok = np.isfinite(values)
    assert row["mean"] == pytest.approx(values[ok].mean())
    assert row["valid_fraction"] == pytest.approx(ok.mean())
    assert stats.crs.to_epsg() == 4326


def test_raise_stops_at_the_first_failure_with_the_cause(flaky, tmp_path: Path) -> None:
    with pytest.raises(RowFailedError) as e:
        CatalogPipeline(open_catalog(flaky.catalog), seed_chain(), writer=CogWriter(tmp_path)).run(
            progress=False
        )
    assert e.value.row == "scene_003" and e.value.error_type == "CorruptRasterError"
    assert isinstance(e.value.__cause__, gio.CorruptRasterError)
    records = assert_disk_matches_manifest(tmp_path)
    assert sorted(records) == ["scene_000", "scene_001", "scene_002", "scene_003"]


def test_max_failure_rate_aborts_early(flaky, tmp_path: Path) -> None:
    cat = open_catalog(flaky.catalog)
    with pytest.raises(FailureRateExceededError) as e:
        CatalogPipeline(
            cat,
            seed_chain(),
            writer=CogWriter(tmp_path / "strict"),
            on_row_error="log_and_continue",
            max_failure_rate=0.1,
        ).run(progress=False)
    assert e.value.report.failed == 1 and e.value.report.done == 3  # stopped at scene_003
    assert_disk_matches_manifest(tmp_path / "strict")
    report = CatalogPipeline(
        cat,
        seed_chain(),
        writer=CogWriter(tmp_path / "lenient"),
        on_row_error="log_and_continue",
        max_failure_rate=0.3,
    ).run(progress=False)
    assert report.failure_rate == pytest.approx(0.25) and report.done == 6
    # a resumed run is judged on the catalog: the 2 retried failures are 2 of 8 rows, not 2 of 2
    resumed = CatalogPipeline(
        cat,
        seed_chain(),
        writer=CogWriter(tmp_path / "lenient"),
        on_row_error="log_and_continue",
        max_failure_rate=0.3,
    ).run(progress=False, resume=True)
    assert (resumed.skipped, resumed.failed, resumed.failure_rate) == (6, 2, pytest.approx(0.25))


def test_resume_skips_done_rows_and_redoes_the_rest(flaky, tmp_path: Path) -> None:
    cat = open_catalog(flaky.catalog)
    out = tmp_path / "out"

    def run(pipe: gx.Operator | None = None, **kw):
        return CatalogPipeline(
            cat, pipe or seed_chain(), writer=CogWriter(out), on_row_error="log_and_continue"
        ).run(progress=False, **kw)

    run()
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tif")}
    with pytest.raises(RunError, match="resume=True"):
        run()
    again = run(resume=True)
    assert (again.done, again.skipped, again.failed) == (0, 6, 2)  # failures are retried
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tif")} == before

    (out / "scene_001.tif").write_bytes(b"tampered")  # modified output
    (out / "scene_002.tif").unlink()  # missing output
    (out / ".scene_004.tif.0123456789ab.tmp").write_bytes(b"half")  # a dead writer's temp
    repaired = run(resume=True)
    assert (repaired.done, repaired.skipped) == (2, 4)
    records = assert_disk_matches_manifest(out)
    assert records["scene_001"]["status"] == "done"

    changed = run(
        gx.Sequential(
            [
                *seed_chain().operators[:2],
                DarkObjectSubtraction(percentile=2.0),
                *seed_chain().operators[3:],
            ]
        ),
        resume=True,
    )
    assert (changed.done, changed.skipped) == (6, 0)  # another pipeline digest: all redone
    assert_disk_matches_manifest(out)


def test_manifest_survives_a_truncated_last_line(tmp_path: Path) -> None:
    m = Manifest(tmp_path / MANIFEST_FILE)
    m.append({"row": "a", "status": "done"})
    m.append({"row": "b", "status": "failed"})
    with open(tmp_path / MANIFEST_FILE, "ab") as f:
        f.write(b'{"row": "c", "sta')  # what kill -9 mid-append leaves
    again = Manifest(tmp_path / MANIFEST_FILE)
    assert sorted(again.records) == ["a", "b"] and again.ignored_lines == 1
    again.compact()
    assert Manifest(tmp_path / MANIFEST_FILE).ignored_lines == 0
    (tmp_path / "other.jsonl").write_text('{"something": "else"}\n')
    with pytest.raises(gx.errors.GeoraxError, match="not a georax run manifest"):
        Manifest(tmp_path / "other.jsonl")


def test_a_live_run_locks_its_folder(mixed, tmp_path: Path) -> None:
    with RunLock(tmp_path), pytest.raises(RunLockedError, match="another georax run"):
        CatalogPipeline(open_catalog(mixed.catalog), seed_chain(), writer=CogWriter(tmp_path)).run(
            progress=False
        )
    # released: the next run proceeds
    report = CatalogPipeline(
        open_catalog(mixed.catalog).query(properties={"platform": "sentinel-2b"}),
        seed_chain(),
        writer=CogWriter(tmp_path),
    ).run(progress=False)
    assert report.done == 4


def test_stats_writer_writes_only_the_table(mixed, tmp_path: Path) -> None:
    cat = open_catalog(mixed.catalog)
    report = CatalogPipeline(cat, seed_chain(), writer=StatsWriter(tmp_path)).run(progress=False)
    assert report.done == 9 and not list(tmp_path.glob("*.tif"))
    stats = gpd.read_parquet(tmp_path / "stats.parquet").set_index("id")
    s = cat.slice_of("scene_004")
    expected = np.asarray(seed_chain()(load_raster(s)).values, dtype=np.float64)
    ok = np.isfinite(expected)
    assert stats.loc["scene_004", "max"] == pytest.approx(expected[ok].max(), rel=1e-6)
    assert stats.loc["scene_004", "pixels"] == expected.size
    assert stats.loc["scene_004", "input_digest"] == s.hash
    again = CatalogPipeline(cat, seed_chain(), writer=StatsWriter(tmp_path)).run(
        progress=False, resume=True
    )
    assert again.skipped == 9


def test_output_names_are_safe_and_distinct() -> None:
    assert output_name("scene_000") == "scene_000"
    odd = ["a/b", "a b", ".hidden", "x.tmp", "é", "a_b"]
    names = [output_name(r) for r in odd]
    assert len(set(names)) == len(names)
    assert all(n[0].isalnum() and "/" not in n and " " not in n for n in names)
    assert not any(n.endswith(".tmp") for n in names)


def test_bad_arguments_are_typed(mixed, tmp_path: Path) -> None:
    cat = open_catalog(mixed.catalog)
    w = CogWriter(tmp_path)
    with pytest.raises(RunError, match="on_row_error"):
        CatalogPipeline(cat, seed_chain(), writer=w, on_row_error="ignore")
    with pytest.raises(RunError, match="log_and_continue"):
        CatalogPipeline(cat, seed_chain(), writer=w, max_failure_rate=0.1)
    with pytest.raises(RunError, match="max_failure_rate"):
        CatalogPipeline(
            cat, seed_chain(), writer=w, on_row_error="log_and_continue", max_failure_rate=2
        )
    with pytest.raises(RunError, match="writer"):
        CatalogPipeline(cat, seed_chain(), writer=str(tmp_path))  # type: ignore[arg-type]
    with pytest.raises(RunError, match="batch_size"):
        CatalogPipeline(cat, seed_chain(), writer=w, batch_size=0)
    with pytest.raises(SerializationError, match="needs a pipeline with a config"):
        CatalogPipeline(cat, gx.Lambda(lambda x: x), writer=w)
    with pytest.raises(RunError, match="executor"):
        CatalogPipeline(cat, seed_chain(), writer=w, executor="threads")
    assert not (tmp_path / MANIFEST_FILE).exists()
    assert os.listdir(tmp_path) == []


@pytest.mark.usefixtures("isolated_registry")
def test_writer_refuses_non_geotensor_results(mixed, tmp_path: Path) -> None:
    class ToArray(gx.Operator):
        def __call__(self, x, *, key=None):
            return x.values if isinstance(x, GeoTensor) else x

    report = CatalogPipeline(
        open_catalog(mixed.catalog).query(time="2024-06-01T10:30:00Z"),
        ToArray(),
        writer=CogWriter(tmp_path),
        on_row_error="log_and_continue",
    ).run(progress=False)
    assert report.failed == 1 and report.errors[0][1] == "GeoTensorRequiredError"
