"""Everything a run ships to workers pickles and cloudpickles: operators, loaders, writers.

Over the whole registry (``gx.registry.public_operators()``): each operator constructible with
its defaults must round-trip through ``pickle`` and ``cloudpickle`` with the same pipeline digest
(config and every array leaf) and compute the same result. Each operator is the instance of the
registry-wide example table (tests/operator_examples.py), so classes that need arguments are
covered too.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import cloudpickle
import jax
import numpy as np
import pytest

import georax as gx
import georax.data as gd
from _run_support import seed_chain
from georax.catalog import (
    CatalogFormatError,
    GeoSlice,
    RasterLoader,
    SliceError,
    SliceTooLargeError,
    load_raster,
)
from georax.run import (
    CogWriter,
    CompiledPipeline,
    RowFailedError,
    RunLockedError,
    StatsWriter,
    run_task,
)
from georax.run.rows import RowRunner

import operator_examples

PICKLERS: list[tuple[str, Callable[[Any], bytes], Callable[[bytes], Any]]] = [
    ("pickle", pickle.dumps, pickle.loads),
    ("cloudpickle", cloudpickle.dumps, cloudpickle.loads),
]


operator_examples.import_all()


def _construct(path: str) -> gx.Operator:
    cls = gx.registry.lookup(path)
    factory = operator_examples.EXAMPLES.get(cls)
    assert factory is not None, f"{path} has no example in tests/operator_examples.py"
    return factory().op


@pytest.mark.parametrize("path", sorted(gx.registry.public_operators()))
@pytest.mark.parametrize(("name", "dumps", "loads"), PICKLERS, ids=[p[0] for p in PICKLERS])
def test_public_operator_round_trips(path: str, name: str, dumps, loads) -> None:
    op = _construct(path)
    again = loads(dumps(op))
    assert type(again) is type(op)
    assert gx.pipeline_digest(again) == gx.pipeline_digest(op)
    assert gx.config_hash(again) == gx.config_hash(op)


@pytest.mark.parametrize(("name", "dumps", "loads"), PICKLERS, ids=[p[0] for p in PICKLERS])
def test_the_seed_chain_round_trips_and_computes_the_same(name: str, dumps, loads) -> None:
    pipe = seed_chain()
    scene = gd.sentinel2_l1c(32, seed=2)
    again = loads(dumps(pipe))
    assert gx.pipeline_digest(again) == gx.pipeline_digest(pipe)
    np.testing.assert_array_equal(
        np.asarray(jax.jit(again)(scene).values), np.asarray(jax.jit(pipe)(scene).values)
    )


@pytest.mark.parametrize(("name", "dumps", "loads"), PICKLERS, ids=[p[0] for p in PICKLERS])
def test_loaders_writers_and_runners_round_trip(name: str, dumps, loads, tmp_path) -> None:
    scene = gd.sentinel2_l1c(16, seed=1)
    path = gx.io.write_cog(scene, str(tmp_path / "s.tif"))
    s = GeoSlice(tuple(scene.bounds), scene.crs, (16, 16), uri=path, id="s")
    assert loads(dumps(s)) == s and loads(dumps(s)).hash == s.hash
    for loader in (load_raster, RasterLoader(resampling="bilinear", dtype="float32")):
        again = loads(dumps(loader))
        np.testing.assert_array_equal(np.asarray(again(s).values), np.asarray(loader(s).values))
    for writer in (CogWriter(tmp_path / "o", compress="zstd"), StatsWriter(tmp_path / "o")):
        again = loads(dumps(writer))
        assert type(again) is type(writer) and vars(again) == vars(writer)
    compiled = CompiledPipeline(seed_chain())
    compiled(load_raster(s))
    assert compiled.traces == 1
    fresh = loads(dumps(compiled))  # programs stay behind: the copy compiles its own
    assert fresh.traces == 0
    np.testing.assert_array_equal(
        np.asarray(fresh(load_raster(s)).values), np.asarray(compiled(load_raster(s)).values)
    )
    runner = RowRunner(seed_chain(), load_raster, CogWriter(tmp_path / "o"))
    _ = runner.compiled
    copy = loads(dumps(runner))
    assert copy._compiled is None and gx.pipeline_digest(copy.pipeline) == gx.pipeline_digest(
        runner.pipeline
    )
    assert loads(dumps(run_task)) is run_task


@pytest.mark.parametrize(("name", "dumps", "loads"), PICKLERS, ids=[p[0] for p in PICKLERS])
def test_catalog_and_run_errors_cross_process_boundaries(name: str, dumps, loads) -> None:
    errors = [
        SliceError("crs", "is not a CRS"),
        SliceTooLargeError("/x.tif", 10, 5),
        CatalogFormatError("/c.csv: no footprint"),
        RowFailedError("scene_001", "CorruptRasterError", "truncated"),
        RunLockedError("/out: busy"),
    ]
    for error in errors:
        again = loads(dumps(error))
        assert type(again) is type(error) and str(again) == str(error)
        assert vars(again) == vars(error)
