"""Stable digests of pipelines: ``config_hash``, ``params_hash``, and ``pipeline_digest`` of both.

All three are hex SHA-256 digests of a versioned, canonical byte string, so equal pipelines hash
equal in another process, on another machine, and after a YAML round-trip.

**Config** (:func:`config_hash`): the canonical JSON of :func:`~georax.core.config.to_config`
prefixed with :data:`CONFIG_FORMAT`: keys sorted, separators ``,`` and ``:``, UTF-8, no
whitespace, so key order and YAML formatting (flow vs block, quoting, comments, anchors) never
matter. It covers the structure, every static value and the arrays small enough to be written
inline (thresholds, gains); larger arrays enter only through their shape and dtype (their values
are the params' business).

Float handling, precisely:

- a float is written with Python's shortest round-tripping ``repr`` of its float64 value, so
  ``0.1`` typed in YAML and ``0.1`` in Python hash alike, and any change of value (even in the
  last bit) changes the hash;
- array leaves are first reduced to the shortest decimal that round-trips *in their own dtype*
  (a float32 ``0.3`` is hashed as ``0.3``), which is what the YAML holds, so an operator and its
  reloaded copy hash alike;
- ``1`` and ``1.0`` hash differently (they build an int32 or a float32 leaf), as do ``0.0`` and
  ``-0.0`` (they differ under division) and ``true`` and ``1``;
- NaN and the infinities are written ``NaN``, ``Infinity``, ``-Infinity`` (one NaN: payloads
  are not distinguished).

**Params** (:func:`params_hash`): every array leaf of the pipeline, in pytree order, as its key
path, dtype, shape and raw little-endian bytes, prefixed with :data:`PARAMS_FORMAT`. Weights,
LUTs and derived arrays are all covered, bit for bit.

**Pipeline** (:func:`pipeline_digest`): SHA-256 over :data:`DIGEST_FORMAT`, the config hash and
the params hash -- the one string to pin (the seeds' case 9).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import numpy as np

from georax.core.config import to_config
from georax.core.errors import SerializationError
from georax.core.operator import Operator

__all__ = [
    "CONFIG_FORMAT",
    "DIGEST_FORMAT",
    "PARAMS_FORMAT",
    "canonical_json",
    "config_hash",
    "params_hash",
    "pipeline_digest",
]

CONFIG_FORMAT = "georax.config/1"
PARAMS_FORMAT = "georax.params/1"
DIGEST_FORMAT = "georax.pipeline/1"


def canonical_json(cfg: Any) -> str:
    """The canonical JSON text of a config (sorted keys, fixed separators, repr floats).

    **Raises:** `SerializationError` if ``cfg`` holds anything but dicts with string keys, lists,
    str, int, float, bool and None.
    """
    try:
        return json.dumps(
            cfg, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True
        )
    except (TypeError, ValueError) as e:
        raise SerializationError(f"config is not canonicalisable: {e}") from None


def _sha256(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))  # length-prefixed: no ambiguity between parts
        h.update(p)
    return h.hexdigest()


def config_hash(pipeline: Operator | Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a pipeline's config, with a format version.

    **Arguments:**

    - `pipeline`: an operator (its :func:`~georax.core.config.to_config` is hashed), or a
      config mapping, hashed exactly as given (pass the operator to hash its normalised form,
      defaults filled in).

    **Returns:** 64 hex characters.
    """
    cfg = to_config(pipeline) if isinstance(pipeline, Operator) else pipeline
    return _sha256(CONFIG_FORMAT.encode(), canonical_json(cfg).encode("utf-8"))


def params_hash(pipeline: Any) -> str:
    """SHA-256 of every array leaf of ``pipeline`` (path, dtype, shape, bytes), with a version.

    **Arguments:**

    - `pipeline`: an operator (or any pytree).

    **Returns:** 64 hex characters. A pipeline without arrays has a fixed, valid hash.
    """
    arrays = eqx.filter(pipeline, eqx.is_array)
    leaves = jax.tree_util.tree_leaves_with_path(arrays)
    parts = [PARAMS_FORMAT.encode(), str(len(leaves)).encode()]
    for path, value in leaves:
        a = np.asarray(value)
        if a.dtype.kind not in "biufc" and a.dtype.name != "bfloat16":
            raise SerializationError(
                f"params_hash: leaf {jax.tree_util.keystr(path)} has unsupported dtype {a.dtype}"
            )
        if a.dtype.byteorder == ">":
            a = a.byteswap().view(a.dtype.newbyteorder("<"))
        parts += [
            jax.tree_util.keystr(path).encode(),
            a.dtype.name.encode(),
            json.dumps(list(a.shape)).encode(),
            np.ascontiguousarray(a).tobytes(),
        ]
    return _sha256(*parts)


def pipeline_digest(pipeline: Operator) -> str:
    """One digest for config and params together: what to pin for a reproducible artifact."""
    return combine_digest(config_hash(pipeline), params_hash(pipeline))


def combine_digest(config_digest: str, params_digest: str) -> str:
    """The pipeline digest from its two parts (what :func:`pipeline_digest` computes)."""
    return _sha256(DIGEST_FORMAT.encode(), config_digest.encode(), params_digest.encode())
