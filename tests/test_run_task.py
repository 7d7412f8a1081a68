"""run_task: the orchestrator unit -- sandboxed rebuild, content-keyed idempotent output."""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

import georax as gx
import georax.data as gd
import georax.io as gio
from _run_support import SEED_CHAIN_YAML, seed_chain, worker_env
from georax.catalog import GeoSlice, SliceError, load_raster, open_catalog
from georax.core.errors import UntrustedTargetError
from georax.run import RunError, content_key, run_task

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def slices(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    demo = gd.write_demo_catalog(tmp_path_factory.mktemp("task"), 4, size=32, corrupt=[3])
    return [s.to_dict() for s in open_catalog(demo.catalog).iter_slices()]


def test_writes_the_content_keyed_output(slices, tmp_path: Path) -> None:
    result = run_task(SEED_CHAIN_YAML, slices[0], tmp_path)
    pipe = gx.loads_yaml(SEED_CHAIN_YAML)
    slice_ = GeoSlice.from_dict(slices[0])
    key = content_key(gx.pipeline_digest(pipe), slice_.hash)
    assert (
        key
        == hashlib.sha256(
            f"georax.task/1\n{gx.pipeline_digest(pipe)}\n{slice_.hash}".encode()
        ).hexdigest()
    )
    assert result["out_uri"] == str(tmp_path / f"{key}.tif")
    assert result["config_hash"] == gx.config_hash(pipe) == gx.config_hash(seed_chain())
    assert result["pipeline_digest"] == gx.pipeline_digest(pipe) and result["content_key"] == key
    written = gio.read(result["out_uri"])
    expected = seed_chain()(load_raster(slice_))
    np.testing.assert_allclose(
        np.asarray(written.values), np.asarray(expected.values), rtol=1e-6, equal_nan=True
    )
    assert written.transform == expected.transform
    ok = np.isfinite(np.asarray(expected.values))
    assert result["stats"]["mean"] == pytest.approx(float(np.asarray(expected.values)[ok].mean()))
    assert (
        result["output_digest"] == hashlib.sha256(Path(result["out_uri"]).read_bytes()).hexdigest()
    )


def test_a_retry_overwrites_and_never_duplicates(slices, tmp_path: Path) -> None:
    first = run_task(SEED_CHAIN_YAML, slices[0], tmp_path)
    again = run_task(SEED_CHAIN_YAML, dict(reversed(list(slices[0].items()))), tmp_path)
    assert again == first
    assert [p.name for p in tmp_path.iterdir()] == [Path(first["out_uri"]).name]
    other = run_task(SEED_CHAIN_YAML, slices[1], tmp_path)
    assert other["out_uri"] != first["out_uri"]
    changed = SEED_CHAIN_YAML.replace(
        "DarkObjectSubtraction}", "DarkObjectSubtraction, percentile: 2.0}"
    )
    assert run_task(changed, slices[0], tmp_path)["out_uri"] != first["out_uri"]
    assert len(list(tmp_path.iterdir())) == 3


def test_pipeline_from_a_file(slices, tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(SEED_CHAIN_YAML)
    by_text = run_task(SEED_CHAIN_YAML, slices[2], tmp_path / "a")
    assert run_task(path, slices[2], tmp_path / "b")["content_key"] == by_text["content_key"]
    assert run_task(str(path), slices[2], tmp_path / "c")["content_key"] == by_text["content_key"]


def test_untrusted_documents_and_bad_slices_are_refused(slices, tmp_path: Path) -> None:
    with pytest.raises(UntrustedTargetError):
        run_task("{_target_: os.system, command: 'rm -rf /'}", slices[0], tmp_path)
    with pytest.raises(SliceError, match="uri"):
        run_task(SEED_CHAIN_YAML, {**slices[0], "uri": None}, tmp_path)
    with pytest.raises(SliceError, match="unknown keys"):
        run_task(SEED_CHAIN_YAML, {**slices[0], "payload": 1}, tmp_path)
    with pytest.raises(RunError, match="out_dir must be a path"):
        run_task(SEED_CHAIN_YAML, slices[0], None)  # type: ignore[arg-type]
    with pytest.raises(RunError, match="YAML text or a path"):
        run_task(42, slices[0], tmp_path)  # type: ignore[arg-type]
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(RunError, match="not a regular file"):
        run_task(fifo, slices[0], tmp_path)
    assert not list(tmp_path.glob("*.tif"))


def test_runs_in_a_spawned_worker(slices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", worker_env(ROOT)["PYTHONPATH"])
    local = run_task(SEED_CHAIN_YAML, slices[1], tmp_path / "local")
    with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        remote = pool.submit(
            run_task, SEED_CHAIN_YAML, slices[1], str(tmp_path / "remote")
        ).result()
    assert remote["content_key"] == local["content_key"]
    assert remote["output_digest"] == local["output_digest"]  # bit-identical in another process
    # a failure arrives as its typed error (the GDAL errors chained behind it stay behind)
    with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        future = pool.submit(run_task, SEED_CHAIN_YAML, slices[3], str(tmp_path / "remote"))
        with pytest.raises(gio.CorruptRasterError, match=r"scene_003\.tif"):
            future.result()
