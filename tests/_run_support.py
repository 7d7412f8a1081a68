"""Shared fixtures of the catalog/run tests: the seed chain and fault-injecting loaders.

The loaders are module-level classes so that spawned process-pool and Dask workers can unpickle
them (they import this module by name; the tests put ``tests/`` on ``PYTHONPATH``).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import georax as gx
from georax.catalog import GeoSlice, load_raster
from georax.geo.cloud import MaskClouds
from georax.geo.indices import NDVI
from georax.geo.radiometry import DarkObjectSubtraction, DNToReflectance

# Few, simple operators with default fields only (field renames elsewhere do not touch these).
SEED_CHAIN_YAML = """\
_target_: georax.Sequential
operators:
- {_target_: georax.geo.cloud.MaskClouds}
- {_target_: georax.geo.radiometry.DNToReflectance}
- {_target_: georax.geo.radiometry.DarkObjectSubtraction}
- {_target_: georax.geo.indices.NDVI}
"""


def seed_chain() -> gx.Sequential:
    """QA cloud mask -> DN scale -> dark-object subtraction -> NDVI (seed cases 1, 2)."""
    return gx.Sequential([MaskClouds(), DNToReflectance(), DarkObjectSubtraction(), NDVI()])


class KillOnce:
    """A loader that kills its own process (SIGKILL) the first time it loads `row`.

    The marker file is created before dying, so the re-run of the row loads normally: a worker
    lost mid-task, exactly once.
    """

    def __init__(self, row: str, marker: str | os.PathLike[str]) -> None:
        self.row = row
        self.marker = os.fspath(marker)

    def __call__(self, slice_: GeoSlice) -> gx.GeoTensor:
        if slice_.id == self.row and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return load_raster(slice_)


class AlwaysKill:
    """A loader that kills its own process every time it loads `row` (a poison row)."""

    def __init__(self, row: str) -> None:
        self.row = row

    def __call__(self, slice_: GeoSlice) -> gx.GeoTensor:
        if slice_.id == self.row:
            os.kill(os.getpid(), signal.SIGKILL)
        return load_raster(slice_)


class SlowLoader:
    """A loader that sleeps before loading (gives a test time to kill a run mid-way)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, slice_: GeoSlice) -> gx.GeoTensor:
        time.sleep(self.seconds)
        return load_raster(slice_)


def worker_env(root: Path) -> dict[str, str]:
    """Environment for subprocesses/workers: this checkout's ``src`` and ``tests`` importable."""
    paths = [str(root / "src"), str(root / "tests")]
    old = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths + ([old] if old else []))}
