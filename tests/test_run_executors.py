"""Process pool and Dask executors: same outputs as in process, and dead workers survived.

Workers are spawned processes (the pool) or a LocalCluster on 127.0.0.1 with two workers and no
dashboard (Dask); every cluster is stopped by the executor when the run ends.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import georax.data as gd
from _run_support import AlwaysKill, KillOnce, seed_chain, worker_env
from georax.catalog import load_raster, open_catalog
from georax.run import (
    MANIFEST_FILE,
    CatalogPipeline,
    CogWriter,
    DaskExecutor,
    ExecutorError,
    ProcessExecutor,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> gd.DemoCatalog:
    return gd.write_demo_catalog(tmp_path_factory.mktemp("exec"), 6, size=[24, 32], corrupt=[4])


@pytest.fixture(scope="module")
def reference(demo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The manifest of an in-process run, the outputs every executor must reproduce."""
    out = tmp_path_factory.mktemp("ref")
    CatalogPipeline(
        open_catalog(demo.catalog),
        seed_chain(),
        writer=CogWriter(out),
        on_row_error="log_and_continue",
    ).run(progress=False)
    return _records(out)


@pytest.fixture(autouse=True)
def importable_in_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spawned workers import georax and the fault loaders from this checkout."""
    monkeypatch.setenv("PYTHONPATH", worker_env(ROOT)["PYTHONPATH"])


def _records(out: Path) -> dict[str, dict]:
    lines = (out / MANIFEST_FILE).read_text().splitlines()[1:]
    records = [json.loads(line) for line in lines]
    assert len({r["row"] for r in records}) == len(records)
    return {r["row"]: r for r in records}


def _same_outputs(out: Path, reference: dict[str, dict]) -> dict[str, dict]:
    records = _records(out)
    assert {r: v["status"] for r, v in records.items()} == {
        r: v["status"] for r, v in reference.items()
    }
    for row, rec in records.items():
        assert rec["output_digest"] == reference[row]["output_digest"], row  # bit-identical COGs
        assert rec["error_type"] == reference[row]["error_type"]
    assert {p.name for p in out.glob("*.tif")} == {
        v["output"] for v in records.values() if v["status"] == "done"
    }
    assert [p.name for p in out.iterdir() if ".tmp" in p.name] == []
    return records


def test_process_pool_matches_in_process(demo, reference, tmp_path: Path) -> None:
    report = CatalogPipeline(
        open_catalog(demo.catalog),
        seed_chain(),
        writer=CogWriter(tmp_path),
        executor=ProcessExecutor(2),
        on_row_error="log_and_continue",
    ).run(progress=False)
    assert (report.done, report.failed, report.executor) == (5, 1, "process")
    records = _same_outputs(tmp_path, reference)
    assert len({r["worker"] for r in records.values()}) >= 1
    assert 2 <= report.compilations <= 4  # each worker compiles the shapes it meets


def test_process_pool_reruns_the_row_of_a_killed_worker(demo, reference, tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    out = tmp_path / "out"
    executor = ProcessExecutor(2)
    report = CatalogPipeline(
        open_catalog(demo.catalog),
        seed_chain(),
        loader=KillOnce("scene_002", marker),
        writer=CogWriter(out),
        executor=executor,
        on_row_error="log_and_continue",
    ).run(progress=False)
    assert marker.exists()  # the worker really died once
    assert executor.restarts == 1
    assert (report.done, report.failed) == (5, 1)
    _same_outputs(out, reference)


def test_process_pool_gives_up_on_a_row_that_always_kills(demo, tmp_path: Path) -> None:
    executor = ProcessExecutor(1, max_restarts=1)
    with pytest.raises(ExecutorError, match=r"died 2 times.*scene_000"):
        CatalogPipeline(
            open_catalog(demo.catalog).query(time="2024-06-01T10:30:00Z"),
            seed_chain(),
            loader=AlwaysKill("scene_000"),
            writer=CogWriter(tmp_path),
            executor=executor,
        ).run(progress=False)
    assert executor.restarts == 2
    assert _records(tmp_path) == {}  # nothing finished, nothing recorded as done


def test_dask_local_cluster_matches_in_process(demo, reference, tmp_path: Path) -> None:
    report = CatalogPipeline(
        open_catalog(demo.catalog),
        seed_chain(),
        writer=CogWriter(tmp_path),
        executor=DaskExecutor(workers=2),
        on_row_error="log_and_continue",
    ).run(progress=False)
    assert (report.done, report.failed, report.executor) == (5, 1, "dask")
    _same_outputs(tmp_path, reference)


def test_dask_retries_the_task_of_a_killed_worker(demo, reference, tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    out = tmp_path / "out"
    report = CatalogPipeline(
        open_catalog(demo.catalog),
        seed_chain(),
        loader=KillOnce("scene_001", marker),
        writer=CogWriter(out),
        executor=DaskExecutor(workers=2),
        on_row_error="log_and_continue",
    ).run(progress=False)
    assert marker.exists()
    assert (report.done, report.failed) == (5, 1)
    _same_outputs(out, reference)


def test_dask_on_an_existing_scheduler(demo, reference, tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
            processes=True,
        ) as cluster,
        Client(cluster) as client,
    ):
        report = CatalogPipeline(
            open_catalog(demo.catalog).query(properties={"platform": "sentinel-2a"}),
            seed_chain(),
            writer=CogWriter(tmp_path),
            executor=DaskExecutor(cluster.scheduler_address),
            on_row_error="log_and_continue",
        ).run(progress=False)
        assert (report.done, report.failed) == (2, 1)  # scene_004 is corrupt
        assert client.status == "running"  # the executor closed only its own client
    records = _records(tmp_path)
    for row, rec in records.items():
        assert rec["output_digest"] == reference[row]["output_digest"]


def test_unpicklable_loaders_are_refused_before_any_work(demo, tmp_path: Path) -> None:
    with pytest.raises(ExecutorError, match=r"the loader .* cannot be pickled"):
        CatalogPipeline(
            open_catalog(demo.catalog),
            seed_chain(),
            loader=lambda s: load_raster(s),
            writer=CogWriter(tmp_path),
            executor=ProcessExecutor(2),
        ).run(progress=False)
    assert _records(tmp_path) == {}
