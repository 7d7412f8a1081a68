"""Examples 06 (sandboxed user pipelines) and 08 (QC operators) run and report what they claim."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(name: str, cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_06_user_uploaded_pipelines_refuses_each_attack(tmp_path: Path) -> None:
    out = _run("06_user_uploaded_pipelines.py", tmp_path)
    assert re.search(r"safe submission: ran in \d+ ms", out)
    assert re.search(r"result: NDVI \(1, 256, 256\), mean 0\.\d+, crs EPSG:32630", out)
    for attack, reason in [
        ("malicious _target_", "os.system"),
        ("python tag", "UnsafeYAMLError"),
        ("billion laughs", "SandboxLimitError"),
        ("over budget", "over the memory budget"),
        ("typo in a field", "NDVI.nri=3: unknown field"),
    ]:
        block = out.split(f"{attack}: refused in", 1)
        assert len(block) == 2, f"{attack} was not refused:\n{out}"
        assert reason in block[1].split("\n", 2)[1], (attack, block[1][:200])


def test_08_qc_operators_each_policy_behaves(tmp_path: Path) -> None:
    out = _run("08_qc_operators.py", tmp_path)
    assert "transform kept: True" in out
    assert "WARNING (QCWarning): AssertValueRange: values span [1, 60000]" in out
    assert re.search(r"caught QCError from compiled code: AssertValidFraction: valid fraction", out)
    assert "CRS is EPSG:32631, expected EPSG:32630" in out
    assert "loaded production pipeline equals the one built in code: True" in out
