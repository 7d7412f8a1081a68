"""``georax.save(pipeline, directory)`` / ``georax.load(directory)``: config YAML + params file.

A saved pipeline is a directory holding two files::

    pipeline.yaml                 # config, digests, and the params file named by its SHA-256
    params-<sha256[:16]>.eqx      # every array leaf of the pipeline

``pipeline.yaml`` reads::

    georax: georax.saved/1
    digest: 5f0c...            # pipeline_digest: config + params together
    config_hash: 9a1e...
    params_hash: c0d2...
    params: {file: params-1b2c3d4e5f607182.eqx, sha256: 1b2c..., bytes: 40960}
    pipeline:
      _target_: georax.Sequential
      operators:
      - {_target_: my.pkg.Threshold, threshold: 0.3}
      - _target_: georax.ModelOp
        model:
          _target_: my.pkg.TinyCNN
          channels: [4, 8, 1]
          weights: {_param_: operators[1].model.weights, shape: [8, 4, 3, 3], dtype: float32}

Small arrays are inline (they are config: readable, diffable, hashed with it); large ones are
placeholders giving key, shape and dtype. The params file holds *every* array leaf -- derived
ones (a LUT, weights initialised in ``__init__`` and then trained) included, so a model whose
architecture is a registered Operator class round-trips exactly.

**Why equinox's leaf serialisation** (:func:`equinox.tree_serialise_leaves`) rather than
orbax-checkpoint: equinox is already a hard dependency, while orbax pulls in tensorstore and an
async checkpoint manager built for sharded, multi-host training state -- not what a pipeline
artifact needs. Equinox writes one flat file of ``.npy`` records in pytree order, which (a) is
deterministic, so equal weights give a byte-identical file and the file can be named and verified
by its SHA-256; (b) is read back with ``allow_pickle=False``, so a params file cannot execute
code; and (c) restores into a skeleton, which is exactly our flow: the YAML rebuilds the
structure (through the same registry and, if asked, the same sandbox as ``loads_yaml``), the file
fills the leaves.

**Verified on load**, in this order, each failure a :class:`ParamsIntegrityError` saying what
differs: the expected digest (if the caller pins one), the params file's size and SHA-256
against the YAML, every leaf's shape and dtype against the skeleton, no trailing bytes, and
finally ``config_hash``, ``params_hash`` and ``pipeline_digest`` recomputed from the loaded
pipeline against the recorded ones (so an inline value edited in the YAML but not in the params
file is caught too). A tampered file is an error, never silently loaded.

**Atomic writes**: each file is written to a temporary file in the same directory, flushed and
fsynced, then renamed over the target (``os.replace``). The params file is content-addressed and
written first, so a reader never sees a ``pipeline.yaml`` whose params file is missing or
half-written; params files no longer referenced are removed after the YAML is in place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from georax.core.config import INLINE_MAX, TARGET, from_config, to_config
from georax.core.errors import GeoraxError, SerializationError
from georax.core.files import check_npy_header, read_regular_file
from georax.core.hashing import combine_digest, config_hash, params_hash
from georax.core.operator import Operator, semantic_checks_suspended
from georax.core.sandbox import DEFAULT_LIMITS, Limits, parse_yaml
from georax.core.yaml_io import SAVED_FORMAT, dump_config_yaml, loader_stage

__all__ = ["PIPELINE_FILE", "ParamsIntegrityError", "Saved", "load", "save"]

PIPELINE_FILE = "pipeline.yaml"
_PARAMS_NAME = re.compile(r"params-[0-9a-f]{16}\.eqx")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class ParamsIntegrityError(SerializationError):
    """A saved pipeline does not match its recorded digests (tampered, truncated or edited)."""


@dataclasses.dataclass(frozen=True)
class Saved:
    """What :func:`save` wrote.

    Attributes:
        directory: the directory.
        yaml_path: the ``pipeline.yaml`` path.
        params_path: the params file path.
        config_hash: :func:`~georax.core.hashing.config_hash` of the pipeline.
        params_hash: :func:`~georax.core.hashing.params_hash` of the pipeline.
        digest: :func:`~georax.core.hashing.pipeline_digest` (pin this).
    """

    directory: Path
    yaml_path: Path
    params_path: Path
    config_hash: str
    params_hash: str
    digest: str


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a same-directory temporary file and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable where the OS allows it
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def save(
    pipeline: Operator, directory: str | os.PathLike[str], *, max_inline: int | None = INLINE_MAX
) -> Saved:
    """Save ``pipeline`` as ``directory/pipeline.yaml`` plus a content-addressed params file.

    **Arguments:**

    - `pipeline`: any YAML-writable operator (see :func:`~georax.core.config.to_config`).
    - `directory`: created if missing; an existing saved pipeline there is replaced atomically.
    - `max_inline`: arrays up to this many elements are also written inline in the YAML.

    **Returns:** a :class:`Saved` with the paths and digests.

    **Raises:** `SerializationError` if the pipeline cannot be written (e.g. it holds a Lambda).
    """
    cfg = to_config(pipeline, max_inline=max_inline)
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, pipeline)
    blob = buf.getvalue()
    file_sha = hashlib.sha256(blob).hexdigest()
    c_hash, p_hash = config_hash(pipeline), params_hash(pipeline)
    digest = combine_digest(c_hash, p_hash)
    name = f"params-{file_sha[:16]}.eqx"
    doc = {
        "georax": SAVED_FORMAT,
        "digest": digest,
        "config_hash": c_hash,
        "params_hash": p_hash,
        "params": {"file": name, "sha256": file_sha, "bytes": len(blob)},
        "max_inline": max_inline,
        "pipeline": cfg,
    }
    root = Path(directory)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file where the directory should be, a read-only parent...
        raise SerializationError(f"cannot save to {root}: {e.strerror or e}") from None
    params_path, yaml_path = root / name, root / PIPELINE_FILE
    _atomic_write(params_path, blob)
    _atomic_write(yaml_path, dump_config_yaml(doc).encode("utf-8"))
    for stale in root.glob("params-*.eqx"):
        if stale.name != name and _PARAMS_NAME.fullmatch(stale.name):
            with contextlib.suppress(OSError):
                stale.unlink()
    return Saved(root, yaml_path, params_path, c_hash, p_hash, digest)


def _require(doc: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in doc or not isinstance(doc[key], kind):
        raise SerializationError(f"saved pipeline: {key!r} is missing or malformed")
    return doc[key]


def _load_leaf(f: Any, like: Any) -> Any:
    if isinstance(like, jax.Array | np.ndarray):
        try:  # the header is checked before NumPy allocates what it declares
            shape, dtype = check_npy_header(f, "params file")
        except SerializationError as e:
            raise ParamsIntegrityError(str(e)) from None
        if shape != tuple(like.shape) or dtype != like.dtype:
            raise ParamsIntegrityError(
                f"params file holds a {dtype}{list(shape)} array where the pipeline "
                f"expects {like.dtype}{list(like.shape)}"
            )
        arr = np.load(f, allow_pickle=False)
        if isinstance(like, np.ndarray) or (
            arr.dtype.itemsize == 8 and not jax.config.jax_enable_x64
        ):
            return arr  # numpy stays numpy (equinox checks leaf types); see _to_jax
        return jnp.asarray(arr)
    return eqx.default_deserialise_filter_spec(f, like)


def _to_jax(value: Any) -> Any:
    """A loaded placeholder leaf as a JAX array (64-bit values stay NumPy unless x64 is on)."""
    if value.dtype.itemsize == 8 and not jax.config.jax_enable_x64:
        return value
    return jnp.asarray(value)


def _first_difference(a: Any, b: Any, path: str) -> str | None:
    """The path of the first place two configs differ (``None`` if equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{path}.{k}" if path else str(k)
            sub = _first_difference(a[k], b[k], f"{path}.{k}" if path else str(k))
            if sub is not None:
                return sub
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            sub = _first_difference(x, y, f"{path}[{i}]")
            if sub is not None:
                return sub
        return None
    same = type(a) is type(b) and (a == b or (a != a and b != b))  # NaN equals NaN here
    return None if same else path


def _placeholder(key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    # A read-only broadcast view: no memory for the values the params file is about to fill.
    return np.broadcast_to(np.zeros((), dtype=dtype), shape)


@dataclasses.dataclass(frozen=True)
class _Record:
    """The ``params:`` entry of a saved document, checked for shape."""

    file: str
    sha256: str
    size: int


def _read_document(directory: str | os.PathLike[str], limits: Limits) -> tuple[Path, Any]:
    path = Path(directory)
    yaml_path = path / PIPELINE_FILE if path.is_dir() else path
    text = read_regular_file(yaml_path, limits.max_bytes, "pipeline document")
    return yaml_path, loader_stage("parse", parse_yaml, text, limits)


def _saved_parts(yaml_path: Path, doc: Any) -> tuple[dict[str, str], _Record, dict[str, Any]]:
    """The recorded digests, the params record and the pipeline config of a saved document."""
    if not isinstance(doc, dict) or doc.get("georax") != SAVED_FORMAT:
        raise SerializationError(
            f"{yaml_path} is not a saved georax pipeline (expected 'georax: {SAVED_FORMAT}')"
        )
    digests = {key: _require(doc, key, str) for key in ("digest", "config_hash", "params_hash")}
    params = _require(doc, "params", dict)
    cfg = _require(doc, "pipeline", dict)
    name, sha, size = params.get("file"), params.get("sha256"), params.get("bytes")
    if not (
        isinstance(name, str)
        and _PARAMS_NAME.fullmatch(name)
        and isinstance(sha, str)
        and _HEX64.fullmatch(sha)
        and isinstance(size, int)
        and not isinstance(size, bool)
        and size >= 0
    ):
        raise SerializationError(
            f"{yaml_path}: 'params' must be {{file: params-<16 hex>.eqx, sha256: <64 hex>, "
            f"bytes: <int >= 0>}}, got {params!r}"
        )
    return digests, _Record(name, sha, size), cfg


def _read_params(params_path: Path, record: _Record, limits: Limits) -> bytes:
    """The params file's bytes, refused unless regular, of the recorded size and SHA-256."""
    if record.size > limits.max_params_bytes:
        raise ParamsIntegrityError(
            f"{params_path}: the YAML records {record.size} bytes of params, over "
            f"Limits.max_params_bytes={limits.max_params_bytes}"
        )
    if not params_path.exists():
        raise ParamsIntegrityError(f"params file {params_path} is missing")
    try:
        blob = read_regular_file(params_path, record.size, "params file")
    except GeoraxError as e:
        raise ParamsIntegrityError(f"params file {params_path}: {e}") from None
    if len(blob) != record.size:
        raise ParamsIntegrityError(
            f"params file {params_path} has {len(blob)} bytes, the YAML records {record.size}"
        )
    actual = hashlib.sha256(blob).hexdigest()
    if actual != record.sha256:
        raise ParamsIntegrityError(
            f"params file {params_path} has SHA-256 {actual}, the YAML records {record.sha256}: "
            "the file was modified or replaced"
        )
    return blob


def _restore(
    cfg: dict[str, Any],
    blob: bytes,
    params_path: Path,
    allowed: Iterable[str] | None,
    limits: Limits,
) -> Operator:
    """Rebuild the pipeline with its real params, validated like any construction.

    A skeleton built with placeholders (zeros) gives the params file its layout; its semantic
    checks are suspended because zeros are not the values (``std > 0`` would fail). The file's
    values are then read into it, and the pipeline is built *again* from the config with the
    real arrays, so every ``__check_init__`` sees what will run. Derived leaves (a LUT trained
    after construction) are then taken from the file too.
    """
    keys: dict[int, str] = {}

    def placeholder(key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        leaf = _placeholder(key, shape, dtype)
        keys[id(leaf)] = key
        return leaf

    with semantic_checks_suspended():
        skeleton = loader_stage(
            "build", from_config, cfg, allowed=allowed, limits=limits, param_factory=placeholder
        )
    f = io.BytesIO(blob)
    try:
        loaded = eqx.tree_deserialise_leaves(f, skeleton, filter_spec=_load_leaf)
    except ParamsIntegrityError:
        raise
    except Exception as e:
        inner: BaseException | None = e  # equinox wraps a leaf's error in path errors
        while inner is not None and not isinstance(inner, ParamsIntegrityError):
            inner = inner.__cause__ or inner.__context__
        if inner is not None:
            raise ParamsIntegrityError(f"params file {params_path}, {e}: {inner}") from None
        raise ParamsIntegrityError(
            f"params file {params_path} does not fit the pipeline: {type(e).__name__}: {e}"
        ) from None
    if f.read(1):
        raise ParamsIntegrityError(f"params file {params_path} has trailing data")
    restored = jax.tree_util.tree_map(
        lambda like, new: _to_jax(new) if id(like) in keys else new, skeleton, loaded
    )
    values: dict[str, Any] = {}
    jax.tree_util.tree_map(
        lambda like, new: values.setdefault(keys[id(like)], new) if id(like) in keys else None,
        skeleton,
        restored,
    )
    # Validation with the real values: the operators' checks run on this build. It equals
    # `restored` except for derived leaves, which `restored` takes from the file.
    loader_stage(
        "build",
        from_config,
        cfg,
        allowed=allowed,
        limits=limits,
        param_factory=lambda key, shape, dtype: values[key],
    )
    return restored


def _verify(
    yaml_path: Path,
    pipeline: Operator,
    cfg: dict[str, Any],
    doc: dict[str, Any],
    digests: dict[str, str],
) -> None:
    """The loaded pipeline must write the recorded config and hash to the recorded digests."""
    max_inline = doc.get("max_inline", INLINE_MAX)
    if max_inline is not None and (not isinstance(max_inline, int) or isinstance(max_inline, bool)):
        raise SerializationError(f"{yaml_path}: max_inline must be an int or null")
    where = _first_difference(to_config(pipeline, max_inline=max_inline), cfg, "")
    if where is not None:
        raise ParamsIntegrityError(
            f"{yaml_path}: the YAML and the params file disagree at {where or '<root>'} "
            "(an inline value was edited in one but not the other)"
        )
    checks = (
        ("config_hash", config_hash(pipeline), digests["config_hash"]),
        ("params_hash", params_hash(pipeline), digests["params_hash"]),
    )
    for what, got, recorded in checks:
        if got != recorded:
            raise ParamsIntegrityError(
                f"{yaml_path}: the loaded pipeline's {what} is {got}, the file records "
                f"{recorded} (inline values and params file disagree, or the YAML was edited)"
            )
    if combine_digest(digests["config_hash"], digests["params_hash"]) != digests["digest"]:
        raise ParamsIntegrityError(f"{yaml_path}: digest does not combine its two hashes")


def load(
    directory: str | os.PathLike[str],
    *,
    allowed: Iterable[str] | None = None,
    expected_digest: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Operator:
    """Load a pipeline written by :func:`save`, verifying it against its recorded digests.

    Both files are read as regular files only, capped at their limits
    (``limits.max_bytes`` for the document, the recorded size -- at most
    ``limits.max_params_bytes`` -- for the params file): a FIFO, a device or a symlink to one
    is refused, never read. The pipeline is built with its real parameter values, so its
    operators validate what will run.

    **Arguments:**

    - `directory`: the directory (or its ``pipeline.yaml``). A plain pipeline YAML without a
      params file also loads (its arrays must then all be inline).
    - `allowed`: sandbox allow-list of targets, as for :func:`~georax.loads_yaml`.
    - `expected_digest`: the pipeline digest you pinned; anything else is refused.
    - `limits`: document limits (``max_array_elements`` also bounds each params placeholder).

    **Returns:** the pipeline, bit-identical to the one saved.

    **Raises:** :class:`ParamsIntegrityError` on any mismatch, `SerializationError` for a
    malformed directory or unreadable file, and the loader's errors (``UntrustedTargetError``,
    ``ConfigError``...); only georax errors.
    """
    yaml_path, doc = _read_document(directory, limits)
    if isinstance(doc, dict) and TARGET in doc:
        if expected_digest is not None:
            raise ParamsIntegrityError(
                f"{yaml_path} is a plain pipeline document without recorded digests; "
                "cannot verify expected_digest"
            )
        return loader_stage("build", from_config, doc, allowed=allowed, limits=limits)
    digests, record, cfg = _saved_parts(yaml_path, doc)
    if expected_digest is not None and digests["digest"] != expected_digest:
        raise ParamsIntegrityError(
            f"{yaml_path} records digest {digests['digest']}, not the expected {expected_digest}"
        )
    params_path = yaml_path.parent / record.file
    blob = _read_params(params_path, record, limits)
    pipeline = _restore(cfg, blob, params_path, allowed, limits)
    loader_stage("verify", _verify, yaml_path, pipeline, cfg, doc, digests)
    return pipeline
