"""``kill -9`` of a whole run, then resume: every row done once, disk and manifest agree."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import georax.data as gd
from _run_support import seed_chain, worker_env
from georax.catalog import open_catalog
from georax.run import MANIFEST_FILE, CatalogPipeline, CogWriter

ROOT = Path(__file__).resolve().parents[1]
N = 12
SCRIPT = """\
import sys
from _run_support import SlowLoader, seed_chain
from georax.catalog import open_catalog
from georax.run import CatalogPipeline, CogWriter

if __name__ == "__main__":
    catalog, out, delay, executor = sys.argv[1:5]
    CatalogPipeline(
        open_catalog(catalog),
        seed_chain(),
        loader=SlowLoader(float(delay)),
        writer=CogWriter(out),
        executor=executor,
        on_row_error="log_and_continue",
    ).run(resume=True, progress=False)
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> gd.DemoCatalog:
    return gd.write_demo_catalog(tmp_path_factory.mktemp("kill"), N, size=24, corrupt=[5])


def _done_records(out: Path) -> dict[str, dict]:
    path = out / MANIFEST_FILE
    if not path.exists():
        return {}
    records = {}
    for line in path.read_bytes().split(b"\n")[1:]:
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # the line the kill cut short
        if rec.get("status") == "done":
            records[rec["row"]] = rec
    return records


@pytest.mark.parametrize("executor", ["local", "process"])
def test_kill_9_then_resume(demo, tmp_path: Path, executor: str) -> None:
    out = tmp_path / "out"
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), demo.catalog, str(out), "0.4", executor],
        env=worker_env(ROOT),
        start_new_session=True,  # its own process group: the kill takes every worker with it
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 300
        while len(_done_records(out)) < 3:
            assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    before = _done_records(out)
    assert 3 <= len(before) < N - 1, "killed mid-run"
    mtimes = {row: (out / rec["output"]).stat().st_mtime_ns for row, rec in before.items()}

    report = CatalogPipeline(
        open_catalog(demo.catalog),
        seed_chain(),
        writer=CogWriter(out),
        on_row_error="log_and_continue",
    ).run(resume=True, progress=False)
    assert report.skipped == len(before)  # nothing done before the kill is done again
    assert report.done + report.skipped == N - 1 and report.failed == 1

    lines = (out / MANIFEST_FILE).read_text().splitlines()
    records = [json.loads(line) for line in lines[1:]]
    assert sorted(r["row"] for r in records) == sorted(demo.ids)  # exactly one record per row
    done = {r["row"]: r for r in records if r["status"] == "done"}
    assert set(done) == set(demo.ids) - {"scene_005"}
    assert {p.name for p in out.glob("*.tif")} == {r["output"] for r in done.values()}
    for rec in done.values():
        data = (out / rec["output"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == rec["output_digest"]
    assert {row: (out / before[row]["output"]).stat().st_mtime_ns for row in before} == mtimes
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".") and ".tmp" in p.name]
    assert leftovers == []
