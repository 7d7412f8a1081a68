"""A package that needs an optional extra says which one, with a typed error, when it is missing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

import georax as gx
from georax.core.extras import require_extra


def test_require_extra_names_the_missing_modules_and_the_extra() -> None:
    require_extra("georax.core", "none", ("json", "numpy"))  # all present: no error
    with pytest.raises(gx.errors.MissingDependencyError) as info:
        require_extra("georax.thing", "thing", ("json", "no_such_module_xyz"))
    message = str(info.value)
    assert "no_such_module_xyz" in message and "json" not in message
    assert "pip install 'georax[thing]'" in message
    assert isinstance(info.value, ImportError)  # `except ImportError` still catches it


@pytest.mark.parametrize(
    ("module", "extra", "hidden"),
    [("georax.serve", "serve", "fastapi"), ("georax.learn.nets", "train", "flax")],
)
def test_a_package_without_its_extra_raises_a_typed_error(
    module: str, extra: str, hidden: str
) -> None:
    assert importlib.util.find_spec(hidden) is not None  # installed here: hide it in a child
    code = (  # the child process sees `hidden` as not installed
        "import importlib.util\n"
        "_find = importlib.util.find_spec\n"
        f"importlib.util.find_spec = lambda n, *a: None if n == {hidden!r} else _find(n, *a)\n"
        "import georax as gx\n"
        "try:\n"
        f"    import {module}\n"
        "except gx.errors.MissingDependencyError as e:\n"
        "    print('typed:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"typed: {module} needs {hidden}" in out.stdout
    assert f"georax[{extra}]" in out.stdout
