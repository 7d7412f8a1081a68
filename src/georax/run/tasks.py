"""Orchestrator task units (seed case 12): one plain, pickleable function per slice.

Prefect, Airflow, Dagster (or bare Dask futures) own retries, parallelism and alerting; georax
owns what to compute. The interface is :func:`run_task`: it takes only strings and a dict (the
pipeline YAML, a :meth:`GeoSlice.to_dict`, an output folder), so it pickles trivially, and it
is idempotent -- the output's name is the *content key* (SHA-256 of the pipeline digest and the
slice hash), and the file is written atomically, so a retried or duplicated task overwrites the
same file with the same bytes and never leaves a second copy or a partial file::

    from prefect import flow, task

    @task(retries=3, retry_delay_seconds=60)
    def ndvi(pipeline_yaml: str, slice_dict: dict, out_dir: str) -> dict:
        return georax.run.run_task(pipeline_yaml, slice_dict, out_dir)

    @flow
    def nightly(catalog_path: str, pipeline_yaml: str, out_dir: str) -> list[dict]:
        cat = georax.catalog.open_catalog(catalog_path)
        futures = [ndvi.submit(pipeline_yaml, s.to_dict(), out_dir) for s in cat.iter_slices()]
        return [f.result() for f in futures]

The pipeline is rebuilt on the worker through the *sandboxed* loader (only registered public
operators, sandbox limits), and cached per process by the YAML's hash, so a worker compiles
each pipeline once per input shape however many tasks it runs.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

# Imported for their side effect: every built-in operator registers itself, so the sandboxed
# loader's allow-list is complete in a fresh worker process.
import georax.array
import georax.geo
import georax.patch
from georax.catalog import GeoSlice, load_raster
from georax.core.errors import GeoraxError
from georax.core.hashing import config_hash, pipeline_digest
from georax.core.operator import Operator
from georax.core.registry import public_operators
from georax.core.sandbox import SANDBOX_LIMITS
from georax.core.yaml_io import loads_yaml
from georax.run.compiled import CompiledPipeline
from georax.run.errors import RunError
from georax.run.writers import CogWriter

__all__ = ["TASK_KEY_FORMAT", "content_key", "run_task"]

#: Version prefix of the content key, so a change of scheme never reuses old names.
TASK_KEY_FORMAT = "georax.task/1"
_OPERATOR_LAYERS = (georax.array, georax.patch, georax.geo)
_CACHE: OrderedDict[str, tuple[Operator, str, str, CompiledPipeline]] = OrderedDict()
_CACHE_SIZE = 8


def content_key(pipeline_digest_hex: str, slice_hash: str) -> str:
    """SHA-256 (hex) naming the output of one pipeline on one slice."""
    text = f"{TASK_KEY_FORMAT}\n{pipeline_digest_hex}\n{slice_hash}"
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _read_document(path: str) -> str:
    """A pipeline file's text: regular files only, at most the sandbox's document size."""
    limit = SANDBOX_LIMITS.max_bytes
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise RunError(f"{path}: not a regular file (a pipeline must be a YAML file)")
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise RunError(f"{path}: cannot read the pipeline: {e.strerror or e}") from None
    if len(data) > limit:
        raise RunError(f"{path}: larger than the pipeline document limit of {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RunError(f"{path}: not UTF-8 text") from None


def _pipeline_text(pipeline_yaml: str | os.PathLike[str]) -> str:
    if isinstance(pipeline_yaml, os.PathLike):
        return _read_document(os.fspath(pipeline_yaml))
    if not isinstance(pipeline_yaml, str):
        raise RunError(
            f"pipeline_yaml must be YAML text or a path, got {type(pipeline_yaml).__name__}"
        )
    if "\n" not in pipeline_yaml and os.path.isfile(pipeline_yaml):
        return _read_document(pipeline_yaml)
    return pipeline_yaml


def _pipeline(text: str) -> tuple[Operator, str, str, CompiledPipeline]:
    """Build (sandboxed) and cache ``(op, digest, config hash, compiled)`` for a YAML text."""
    key = hashlib.sha256(text.encode("utf-8")).hexdigest()
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    op = loads_yaml(text, allowed=public_operators())
    entry = (op, pipeline_digest(op), config_hash(op), CompiledPipeline(op))
    _CACHE[key] = entry
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return entry


def run_task(
    pipeline_yaml: str | os.PathLike[str],
    slice_dict: Mapping[str, Any],
    out_dir: str | os.PathLike[str],
) -> dict[str, Any]:
    """Run a YAML pipeline on one slice and write ``{out_dir}/{content key}.tif``.

    **Arguments:**

    - `pipeline_yaml`: the pipeline's YAML text, or the path of a YAML file. It is loaded with
      the sandboxed loader (public georax operators only).
    - `slice_dict`: a :meth:`GeoSlice.to_dict` (with a ``uri``).
    - `out_dir`: the output folder (created if missing).

    **Returns:** ``{"out_uri", "stats", "config_hash", "pipeline_digest", "content_key",
    "output_digest"}`` -- plain strings and numbers, JSON-ready.

    **Raises:** the sandbox's errors for a refused pipeline, :class:`GeoSlice` errors for a bad
    slice, the loading errors of :func:`~georax.catalog.load_raster`, and
    :class:`~georax.run.errors.RunError`; every one is a typed georax error, so an
    orchestrator can decide which ones are worth a retry.
    """
    try:
        return _run(pipeline_yaml, slice_dict, out_dir)
    except GeoraxError as e:
        # Orchestrators pickle a failed task's exception back to the scheduler; the chained
        # GDAL/rasterio errors behind a typed georax error do not pickle (their text is already
        # in its message), so the typed error travels alone.
        e.__cause__ = e.__context__ = None
        e.__suppress_context__ = True
        raise


def _run(
    pipeline_yaml: str | os.PathLike[str],
    slice_dict: Mapping[str, Any],
    out_dir: str | os.PathLike[str],
) -> dict[str, Any]:
    if not isinstance(out_dir, str | os.PathLike):
        raise RunError(f"out_dir must be a path, got {out_dir!r}")
    _, digest, chash, compiled = _pipeline(_pipeline_text(pipeline_yaml))
    slice_ = GeoSlice.from_dict(slice_dict)
    result = compiled(load_raster(slice_))
    key = content_key(digest, slice_.hash)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise RunError(f"{out_dir}: cannot create the output folder: {e.strerror or e}") from None
    writer = CogWriter(out_dir, stats_table=None)
    written = writer.write(result, key)
    return {
        "out_uri": writer.path(f"{key}.tif"),
        "stats": written.stats,
        "config_hash": chash,
        "pipeline_digest": digest,
        "content_key": key,
        "output_digest": written.digest,
    }
