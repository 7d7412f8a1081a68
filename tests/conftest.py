"""Fixtures shared by the test modules.

- ``run_example``: run a script from ``examples/`` as a new user would (a subprocess), and return
  its stdout after asserting it exited 0.
- ``isolated_registry``: operator classes defined while a test runs are unregistered when it
  ends, so a class defined inside a test never leaks into the global registry (and into the
  allow-list or registry walks of later tests).
- an autouse guard fails any test that defines an operator class in its body without
  ``isolated_registry``.
- ``patient_sandbox``: the sandbox limits with a wall-clock limit fit for a loaded CI machine.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from georax.core import registry
from georax.core.sandbox import SANDBOX_LIMITS, Limits

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_example() -> Callable[..., str]:
    """``run_example(name, *args, cwd=ROOT)`` -> the example's stdout (exit status 0 asserted)."""

    def run(name: str, *args: str, cwd: Path = ROOT, timeout: float = 300) -> str:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "examples" / name), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    return run


@pytest.fixture
def isolated_registry() -> Iterator[None]:
    """Unregister every operator class defined during the test (concrete or abstract)."""
    before = {**registry.all_operators(), **registry.abstract_operators()}
    yield
    after = {**registry.all_operators(), **registry.abstract_operators()}
    for path, cls in after.items():
        if before.get(path) is not cls:
            registry.unregister(cls)


@pytest.fixture(autouse=True)
def _no_operator_class_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that defines an operator class in its body without ``isolated_registry``.

    Such a class would stay registered (and, if its module is under ``georax``, allowed) for
    every later test in the same process.
    """
    before = {**registry.all_operators(), **registry.abstract_operators()}
    yield
    if "isolated_registry" in request.fixturenames:
        return
    after = {**registry.all_operators(), **registry.abstract_operators()}
    leaked = [p for p, c in after.items() if before.get(p) is not c and "<locals>" in p]
    if leaked:
        pytest.fail(
            f"operator classes defined in the test leak into the registry: {leaked}; "
            "use the isolated_registry fixture"
        )


@pytest.fixture
def patient_sandbox() -> Limits:
    """The sandbox limits with a wall-clock limit fit for a loaded CI machine.

    ``SANDBOX_LIMITS.max_seconds`` (2 s) bounds pricing on a server; on a shared test machine an
    honest pipeline's compilation alone can take longer, so tests that expect an honest pipeline
    to be priced successfully use this instead. Refusals never depend on it.
    """
    return dataclasses.replace(SANDBOX_LIMITS, max_seconds=120.0)
