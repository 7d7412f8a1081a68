"""Examples 06 (sandboxed user pipelines) and 08 (QC operators) run and report what they claim."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path


def test_06_user_uploaded_pipelines_refuses_each_attack(
    tmp_path: Path, run_example: Callable[..., str]
) -> None:
    out = run_example("06_user_uploaded_pipelines.py", cwd=tmp_path)
    assert "budgets 256MiB and 1e+08 FLOPs per request" in out  # compute is priced by default
    assert re.search(r"safe submission: ran in \d+ ms", out)
    assert re.search(r"result: GeoTensor \(6, 256, 256\), mean \d+\.\d+, crs EPSG:32630", out)
    # a stochastic pipeline runs: the server supplies the key
    assert re.search(r"stochastic submission: ran in \d+ ms", out)
    for attack, reason in [
        ("malicious _target_", "os.system"),
        ("python tag", "UnsafeYAMLError"),
        ("billion laughs", "SandboxLimitError"),
        ("over budget", "over the memory budget"),
        ("huge window", "stage: precheck"),
        ("abstract base", "AbstractTargetError"),
        ("typo in a field", "NDVI.nri=3: unknown field"),
    ]:
        block = out.split(f"{attack}: refused in", 1)
        assert len(block) == 2, f"{attack} was not refused:\n{out}"
        assert reason in block[1].split("\n", 2)[1], (attack, block[1][:200])
    # the pre-check refuses the billion-pixel window from its config, in milliseconds
    ms = int(re.search(r"huge window: refused in (\d+) ms", out)[1])
    assert ms < 2000


def test_08_qc_operators_each_policy_behaves(
    tmp_path: Path, run_example: Callable[..., str]
) -> None:
    out = run_example("08_qc_operators.py", cwd=tmp_path)
    assert "transform kept: True" in out
    assert "WARNING (QCWarning): AssertValueRange: values span [1, 60000]" in out
    assert re.search(r"caught QCError from compiled code: AssertValidFraction: valid fraction", out)
    assert "CRS is EPSG:32631, expected EPSG:32630" in out
    assert "loaded production pipeline equals the one built in code: True" in out
