"""``georax hash`` and ``georax validate``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import pytest

import config_test_ops as tops
import georax as gx
from georax.cli import build_parser, main
from georax.core.hashing import config_hash, params_hash, pipeline_digest
from georax.core.params import save
from georax.core.yaml_io import dumps_yaml

TESTS = Path(__file__).parent  # the checkout under test: its tests and its src
PIPE = gx.Sequential([tops.Scale(band=1, gain=0.5), tops.Clip(lo=0.0, hi=1.0)])


@pytest.fixture
def pipeline_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.yaml"
    path.write_text(dumps_yaml(PIPE))
    return path


def test_help_lists_config_commands() -> None:
    text = build_parser().format_help()
    assert "hash" in text and "validate" in text


def test_hash_prints_the_three_digests(pipeline_yaml: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["hash", str(pipeline_yaml), "--import", "config_test_ops"]) == 0
    lines = dict(line.split() for line in capsys.readouterr().out.strip().splitlines())
    assert lines == {
        "config_hash": config_hash(PIPE),
        "params_hash": params_hash(PIPE),
        "digest": pipeline_digest(PIPE),
    }
    assert main(["hash", "-q", str(pipeline_yaml), "--import", "config_test_ops"]) == 0
    assert capsys.readouterr().out.strip() == config_hash(PIPE)


def test_hash_of_a_saved_directory_verifies_it(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    pipe = gx.Sequential([tops.Kernel(weights=jnp.linspace(0, 1, 1000)), gx.Identity()])
    saved = save(pipe, tmp_path / "saved")
    assert main(["hash", str(tmp_path / "saved"), "--import", "config_test_ops"]) == 0
    assert f"digest       {saved.digest}" in capsys.readouterr().out
    (found,) = (tmp_path / "saved").glob("params-*.eqx")
    found.write_bytes(found.read_bytes()[:-1] + b"\x00")
    assert main(["hash", str(tmp_path / "saved"), "--import", "config_test_ops"]) == 1
    assert "SHA-256" in capsys.readouterr().err


def test_hash_with_variables(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "qc.yaml"
    path.write_text("{_target_: config_test_ops.QC, on_fail: '${qc_policy}'}")
    args = ["hash", "-q", str(path), "--import", "config_test_ops"]
    assert main([*args, "--var", "qc_policy=warn"]) == 0
    assert capsys.readouterr().out.strip() == config_hash(tops.QC(on_fail="warn"))
    assert main(args) == 1
    assert "qc_policy" in capsys.readouterr().err


def test_validate_trusted_and_sandboxed(pipeline_yaml: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["validate", str(pipeline_yaml), "--import", "config_test_ops"]) == 0
    out = capsys.readouterr().out
    assert "ok (trusted): Sequential, 3 operators" in out and config_hash(PIPE) in out
    # config_test_ops is not a georax module: the sandbox refuses it unless allowed
    assert main(["validate", str(pipeline_yaml), "--sandbox", "--import", "config_test_ops"]) == 1
    assert "config_test_ops.Scale" in capsys.readouterr().err
    allow = ["--allow", "config_test_ops.Scale", "--allow", "config_test_ops.Clip"]
    argv = ["validate", str(pipeline_yaml), "--sandbox", *allow, "--import", "config_test_ops"]
    assert main(argv) == 0
    assert "ok (sandboxed)" in capsys.readouterr().out


def test_validate_refuses_malicious_and_over_budget(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    evil = tmp_path / "evil.yaml"
    evil.write_text(
        "_target_: georax.Sequential\noperators:\n  - {_target_: os.system, command: ls}\n"
    )
    assert main(["validate", str(evil), "--sandbox"]) == 1
    assert "'os.system'" in capsys.readouterr().err
    big = tmp_path / "big.yaml"
    big.write_text("{_target_: georax.Sequential, operators: [{_target_: georax.Identity}]}")
    ok = ["validate", str(big), "--sandbox", "--input-shape", "4,64,64", "--budget", "1MiB"]
    assert main(ok) == 0
    out = capsys.readouterr().out
    assert "peak estimate" in out and "within the budget of 1.00 MiB" in out
    over = ["validate", str(big), "--sandbox", "--input-shape", "4,10000,10000", "--budget", "1GiB"]
    assert main(over) == 1
    err = capsys.readouterr().err
    assert "memory budget of 1.00 GiB" in err and "float32[4, 10000, 10000]" in err
    blur = tmp_path / "blur.yaml"
    blur.write_text("{_target_: config_test_ops.BoxBlur, radius: 500}")
    argv = ["validate", str(blur), "--import", "config_test_ops", "--input-shape", "1,256,256"]
    assert main([*argv, "--max-flops", "1e9"]) == 1
    assert "compute budget" in capsys.readouterr().err
    assert main([*argv, "--max-flops", "1e12"]) == 0
    assert "flops" in capsys.readouterr().out


def test_validate_argument_errors(pipeline_yaml: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["validate", str(pipeline_yaml), "--budget", "1MiB"]) == 1
    assert "--input-shape" in capsys.readouterr().err
    assert main(["validate", str(pipeline_yaml), "--max-flops", "10"]) == 1
    with pytest.raises(SystemExit):
        main(["validate", str(pipeline_yaml), "--input-shape", "a,b"])
    with pytest.raises(SystemExit):
        main(["validate", str(pipeline_yaml), "--budget", "lots"])
    assert main(["validate", str(pipeline_yaml.parent / "missing.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_console_script_hash(pipeline_yaml: Path) -> None:
    argv = ["hash", "-q", str(pipeline_yaml), "--import", "config_test_ops"]
    proc = subprocess.run(
        [sys.executable, "-m", "georax.cli", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent / "src")])},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == config_hash(PIPE)
