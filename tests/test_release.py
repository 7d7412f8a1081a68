"""The package as a user installs it: the wheel's contents, its metadata, and `georax demo` run
from a fresh virtual environment into which only the wheel was installed.

The fresh environment gets georax from the wheel alone (``--no-deps``, no index); its
third-party dependencies come from this interpreter's site-packages through a ``.pth`` line, so
the test needs no network. Only that folder is added: ``.pth`` files inside it (such as an
editable install of georax) are not processed, so the georax that runs is the wheel's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

import georax

ROOT = Path(__file__).resolve().parents[1]


def test_version_is_defined_once() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["hatch"]["version"]["path"] == "src/georax/__init__.py"
    assert georax.__version__.count(".") >= 2


def test_extras_are_documented() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    guide = (ROOT / "docs" / "guides" / "getting-started.md").read_text()
    for extra in project["project"]["optional-dependencies"]:
        if extra == "bench":  # benchmark peers, documented in pyproject.toml and benchmarks/
            continue
        assert f"georax[{extra}]" in guide, f"extra {extra!r} is not in the install table"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("build")
    pytest.importorskip("hatchling")
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (path,) = out.glob("georax-*.whl")
    return path


def test_wheel_ships_the_package_typed_with_its_command(wheel: Path) -> None:
    assert wheel.name.startswith(f"georax-{georax.__version__}-")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = f"georax-{georax.__version__}.dist-info"
        metadata = z.read(f"{info}/METADATA").decode()
        entry_points = z.read(f"{info}/entry_points.txt").decode()
    assert "georax/py.typed" in names
    assert {"georax/__init__.py", "georax/cli/demo.py", "georax/geo/retrieval/physics.py"} <= names
    assert not any(n.startswith(("tests/", "docs/", "examples/")) for n in names)
    assert f"Version: {georax.__version__}" in metadata
    for extra in ("spectral", "cluster", "orchestrate", "docs", "dev"):
        assert f"Provides-Extra: {extra}" in metadata
    assert "georax = georax.cli:main" in entry_points


def test_wheel_installs_into_a_fresh_venv_and_runs_the_demo(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    proc = subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "_georax_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["MPLBACKEND"] = "Agg"
    where = subprocess.run(
        [str(python), "-c", "import georax; print(georax.__file__, georax.__version__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert where.returncode == 0, where.stderr
    path, version = where.stdout.split()
    assert Path(path).is_relative_to(venv), f"georax imported from {path}, not the wheel"
    assert version == georax.__version__
    assert (Path(path).parent / "py.typed").is_file()

    out = tmp_path / "out"
    demo = subprocess.run(
        [str(venv / "bin" / "georax"), "demo", "--size", "64", "--repeats", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    written = {p.suffix for p in out.iterdir()}
    assert {".tif", ".png", ".yaml"} <= written, sorted(p.name for p in out.iterdir())
