"""georax freeze / verify / rerun / diff / ab: output and exit codes (0 ok, 1 error, 3 check)."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

import georax as gx
import georax.data as gd
import georax.io as gio
from georax.cli import build_parser, main
from georax.cli.repro_cmds import CHECK_FAILED
from georax.geo.cloud import MaskClouds
from georax.geo.indices import NDVI
from georax.geo.radiometry import DarkObjectSubtraction
from georax.geo.sar import LeeSpeckle

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    old = gx.Sequential([MaskClouds(), DarkObjectSubtraction(percentile=1.0), NDVI()])
    new = gx.Sequential([MaskClouds(), DarkObjectSubtraction(percentile=2.0), LeeSpeckle(), NDVI()])
    (d / "old.yaml").write_text(gx.dumps_yaml(old))
    (d / "new.yaml").write_text(gx.dumps_yaml(new))
    scenes = d / "scenes"
    scenes.mkdir()
    for k in range(4):
        gio.write(gd.sentinel2_l1c(32, seed=k), scenes / f"s{k}.tif")
    return {"dir": d, "old": d / "old.yaml", "new": d / "new.yaml", "scenes": scenes}


def test_help_lists_the_commands() -> None:
    text = build_parser().format_help()
    for cmd in ("freeze", "verify", "rerun", "diff", "ab"):
        assert cmd in text


def test_freeze_verify_rerun(files: dict[str, Path], tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    art = tmp_path / "a.gxa"
    scene = files["scenes"] / "s0.tif"
    code = main(
        [
            "freeze",
            str(files["old"]),
            "--input",
            f"scene={scene}",
            "--meta",
            "doi=10.1/x",
            "--embed-below",
            "1MiB",
            "-o",
            str(art),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    digest = next(
        line.split()[-1] for line in out.splitlines() if line.startswith("artifact digest")
    )
    assert main(["verify", str(art), "--expect", digest]) == 0
    assert "every digest matches" in capsys.readouterr().out
    assert main(["rerun", str(art), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "bit-exact"
    # a pinned digest that is not this artifact's: refused, exit 1, one clean line
    assert main(["verify", str(art), "--expect", "0" * 64]) == 1
    err = capsys.readouterr().err
    assert "georax verify: error:" in err and "not the expected" in err


def _tamper(src: Path, dst: Path, member_prefix: str) -> None:
    with tarfile.open(src, "r:*") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for m, data in members:
            if m.name.startswith(member_prefix):
                data = data[:-1] + bytes([data[-1] ^ 1])
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    dst.write_bytes(gzip.compress(buf.getvalue()))


def test_a_tampered_artifact_fails_verify_and_rerun_in_a_subprocess_without_traceback(
    files: dict[str, Path], tmp_path: Path
) -> None:
    art = tmp_path / "a.gxa"
    assert (
        main(
            [
                "freeze",
                str(files["old"]),
                "--input",
                f"s={files['scenes'] / 's1.tif'}",
                "--embed-below",
                "10MiB",
                "-o",
                str(art),
            ]
        )
        == 0
    )
    bad = tmp_path / "bad.gxa"
    _tamper(art, bad, "inputs/")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    for cmd in ("verify", "rerun"):
        proc = subprocess.run(
            [sys.executable, "-m", "georax.cli", cmd, str(bad)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert proc.returncode == 1, proc.stderr
        assert "inputs/000.tif" in proc.stderr and "Traceback" not in proc.stderr


def test_rerun_that_differs_exits_3(files: dict[str, Path], tmp_path: Path) -> None:
    x = tmp_path / "x.npy"
    np.save(x, np.linspace(0, 1, 32, dtype=np.float32).reshape(2, 4, 4))
    y = tmp_path / "scale.yaml"
    y.write_text("_target_: georax.geo.radiometry.ScaleOffset\nscale: 2.0\noffset: 0.0\n")
    art = tmp_path / "a.gxa"
    assert main(["freeze", str(y), "--input", f"x={x}", "-o", str(art)]) == 0
    assert main(["rerun", str(art)]) == 0
    np.save(x, np.zeros((2, 4, 4), np.float32))  # the file at the recorded path changed
    assert main(["rerun", str(art)]) == 1  # typed InputMismatchError
    moved = tmp_path / "moved.npy"
    np.save(moved, np.linspace(0, 1, 32, dtype=np.float32).reshape(2, 4, 4))
    assert main(["rerun", str(art), "--input", f"x={moved}"]) == 0


def test_diff_text_json_and_exit_code(files: dict[str, Path], capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["diff", str(files["old"]), str(files["new"])]) == 0
    text = capsys.readouterr().out
    assert "+ operators[2] LeeSpeckle" in text and "percentile" in text
    assert (
        main(["diff", str(files["old"]), str(files["new"]), "--json", "--exit-code"])
        == CHECK_FAILED
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["counts"] == {"changed": 1, "added": 1}
    assert main(["diff", str(files["old"]), str(files["old"]), "--exit-code"]) == 0
    assert main(["diff", str(files["old"]), str(files["dir"] / "absent.yaml")]) == 1


def test_ab_gate_pass_and_fail(files: dict[str, Path], tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    args = [
        "ab",
        str(files["old"]),
        str(files["new"]),
        "--inputs",
        str(files["scenes"]),
        "--metric",
        "rmse",
        "--metric",
        "fraction_changed",
    ]
    assert main([*args, "--gate", "rmse:p99<=1e9", "--out", str(tmp_path / "ab")]) == 0
    out = capsys.readouterr().out
    assert "gate: PASSED" in out and "A/B over 4 inputs" in out
    assert (tmp_path / "ab" / "ab_report.json").exists()
    assert (tmp_path / "ab" / "ab_histogram.png").read_bytes()[:4] == b"\x89PNG"
    assert main([*args, "--gate", "fraction_changed:p50<=0.0"]) == CHECK_FAILED
    assert "gate: FAILED" in capsys.readouterr().out
    same = ["ab", str(files["old"]), str(files["old"]), "--inputs", str(files["scenes"])]
    assert main([*same, "--gate", "max<=0"]) == 0
    assert main([*same, "--gate", "p77<=1"]) == 1  # a malformed gate is an error, not a pass
    assert "expected [METRIC:]STAT<=VALUE" in capsys.readouterr().err
