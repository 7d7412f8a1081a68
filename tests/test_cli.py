"""The ``georax`` command: dispatch, help and the demo."""

from __future__ import annotations

import subprocess
import sys

from georax.cli import build_parser, main


def test_help_lists_demo() -> None:
    assert "demo" in build_parser().format_help()


def test_no_command_prints_help_and_fails(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([]) == 2
    assert "usage: georax" in capsys.readouterr().out


def test_console_script_runs_demo(tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run(
        [sys.executable, "-m", "georax.cli", "demo", "--size", "64", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "compile" in proc.stdout and "run" in proc.stdout
