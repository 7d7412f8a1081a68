"""Frozen, verifiable pipeline runs: ``freeze`` -> ``Artifact.save`` -> ``load`` -> ``rerun``.

The seeds' case 9: a result that must be reproducible years later (a paper, a regulatory
submission, a methane attribution) pins three things together -- the operator graph, the inputs
by content, and the software environment -- and treats the graph as the deliverable::

    art = gx.repro.freeze(pipeline, inputs={"scene": "emit_2024Q3.tif"},
                          metadata={"doi": "10.xxxx/mars-2024Q3"}, embed_inputs_below=2**28)
    art.save("mars_methane_2024Q3.gxa")          # prints nothing; art.digest is what you publish
    ...
    art = gx.repro.load("mars_methane_2024Q3.gxa", expected_digest="5f0c...")
    report = art.rerun()                          # bit-exact / within tolerance / differs + drift

**The archive** is a deterministic tar (see :mod:`georax.repro.archive`), members in byte order::

    MANIFEST.json            what everything below must be (canonical JSON)
    MANIFEST.sha256          the SHA-256 of MANIFEST.json: the artifact's digest
    environment/lockfile     (optional) a lock file you passed as deps_lock
    inputs/000.tif           embedded inputs: files byte for byte, arrays as .npy
    outputs/000.npy          the reference outputs (embedded up to a size)
    pipeline/params-<hex>.eqx, pipeline/pipeline.yaml     exactly what georax.save writes

``MANIFEST.json`` records the SHA-256 and size of every other member, the pipeline's
``digest``/``config_hash``/``params_hash``, each input (name, SHA-256 of its bytes computed
before anything runs, its path if it came from a file, its georeferencing if it was a
GeoTensor), each reference output (SHA-256 of its canonical ``.npy`` bytes, dtype, shape,
georeferencing), the environment (:func:`~georax.repro.environment.capture_environment`) and
your metadata. The artifact's **digest** is the SHA-256 of ``MANIFEST.json``: it covers every
member transitively, so it is the one string to publish and to pin.

**Loading verifies everything** before anything runs: the archive is streamed through hard
limits (no links, devices, traversal, bombs: :class:`~georax.repro.archive.ArchiveReader`);
``MANIFEST.json`` must match ``MANIFEST.sha256`` (and ``expected_digest`` when you pin one);
every member must be listed, present, of the recorded size and SHA-256; and the pipeline is
rebuilt only through the sandboxed loader (:func:`georax.load` with an allow-list of registered
operators), which re-derives its config and params hashes and checks them against the recorded
digest. Any mismatch is an :class:`~georax.repro.errors.ArtifactTamperedError` naming the member.
A forger who rewrites a member *and* every digest above it produces a different artifact digest:
pin the published digest (``expected_digest=``, ``georax verify --expect``) to catch that too.

**What "reproducible" means here**: the graph and the inputs are guaranteed (by digest); the
numbers are bit-exact when the environment is the same, and :meth:`Artifact.rerun` reports how
far they moved and which packages changed when it is not (BLAS, XLA and drivers reorder
floating-point work; for a guarantee, archive a container image digest in ``metadata``).

Inputs are run the way the pipeline takes them: a :class:`georax.Graph` is called once with the
inputs as its named arguments (``inputs`` must name exactly the graph's inputs); any other
pipeline is run once per input (``{"scene_a": ..., "scene_b": ...}`` freezes a batch of scenes).
Both freeze and rerun call the pipeline through :func:`equinox.filter_jit`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np

from georax.core import registry
from georax.core.carrier import Carrier
from georax.core.errors import GeoraxError, SerializationError
from georax.core.files import check_npy_header, read_regular_file
from georax.core.graph import Graph
from georax.core.operator import Operator
from georax.core.params import PIPELINE_FILE, ParamsIntegrityError
from georax.core.params import load as load_pipeline
from georax.core.params import save as save_pipeline
from georax.core.sandbox import DEFAULT_LIMITS
from georax.io import read as read_raster
from georax.repro.archive import (
    DEFAULT_ARCHIVE_LIMITS,
    ArchiveLimits,
    ArchiveReader,
    check_member_name,
    write_archive,
)
from georax.repro.environment import EnvironmentDrift, capture_environment, environment_drift
from georax.repro.errors import (
    ArtifactFormatError,
    ArtifactTamperedError,
    InputMismatchError,
    ReproError,
    UnsafeArchiveError,
)
from georax.repro.payload import decode_array, encode_array, geo_of, rebuild

__all__ = [
    "FORMAT",
    "MANIFEST",
    "MANIFEST_DIGEST",
    "Artifact",
    "OutputCheck",
    "RerunReport",
    "freeze",
    "load",
]

#: The ``format`` field of a manifest this version writes and reads.
FORMAT = "georax.artifact/1"
MANIFEST = "MANIFEST.json"
MANIFEST_DIGEST = "MANIFEST.sha256"
_MAX_MANIFEST_BYTES = 16 * 2**20
_LOCKFILE = "environment/lockfile"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")
#: Reference outputs up to this many bytes are embedded by default (larger: digest only).
EMBED_OUTPUTS_BELOW = 64 * 2**20
_STATUS_ORDER = {"bit-exact": 0, "within-tolerance": 1, "differs": 2}

InputLike = str | os.PathLike[str] | Any  # a path, a GeoTensor or an array


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical_json(doc: Any) -> bytes:
    try:
        text = json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ReproError(f"manifest is not JSON-serialisable: {e}") from None
    return (text + "\n").encode("utf-8")


# ------------------------------------------------------------------------------------------------
# Running a pipeline the way freeze and rerun both do
# ------------------------------------------------------------------------------------------------
@eqx.filter_jit
def _apply(pipeline: Operator, x: Any, key: jax.Array | None) -> Any:
    return pipeline(x, key=key)


@eqx.filter_jit
def _apply_graph(pipeline: Graph, inputs: dict[str, Any], key: jax.Array | None) -> Any:
    return pipeline(key=key, **inputs)


def _leaves(out: Any, prefix: str) -> list[tuple[str, Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(out, is_leaf=lambda v: isinstance(v, Carrier))
    items = []
    for path, leaf in flat:
        tail = jax.tree_util.keystr(path, simple=True, separator="/")
        items.append(
            (f"{prefix}/{tail}" if prefix and tail else (prefix or tail or "output"), leaf)
        )
    return items


def _run(pipeline: Operator, values: dict[str, Any], seed: int | None) -> list[tuple[str, Any]]:
    """Run ``pipeline`` on the named inputs; the outputs as ``(key, leaf)`` in a fixed order."""
    key = None if seed is None else jax.random.key(seed)
    if isinstance(pipeline, Graph):
        if set(values) != set(pipeline.inputs):
            raise ReproError(
                f"the Graph takes inputs {sorted(pipeline.inputs)}, the artifact has "
                f"{sorted(values)}: name the inputs exactly as the Graph does"
            )
        return _leaves(_apply_graph(pipeline, values, key), "")
    outputs: list[tuple[str, Any]] = []
    for name in sorted(values):
        outputs += _leaves(_apply(pipeline, values[name], key), name)
    return outputs


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------
def _read_bytes(path: Path, name: str, when: str) -> bytes:
    """The bytes of an input file; unreadable is a :class:`ReproError` at freeze time and an
    :class:`InputMismatchError` at rerun time (the recorded file is gone)."""
    try:  # a FIFO or a device is refused, never read
        return read_regular_file(path, DEFAULT_ARCHIVE_LIMITS.max_member_bytes, "input file")
    except SerializationError as e:
        problem = str(e)
        if when == "rerun":
            raise InputMismatchError(name, problem) from None
        raise ReproError(f"input {name!r}: {problem}") from None


def _decode_file(data: bytes, suffix: str, what: str) -> Any:
    """An input file's value from its bytes: ``.npy`` with NumPy, anything else as a raster."""
    if suffix.lower() == ".npy":
        f = io.BytesIO(data)
        try:
            check_npy_header(f, what)  # nothing is allocated for a header that lies
            return np.load(f, allow_pickle=False)
        except SerializationError as e:
            raise ReproError(str(e)) from None
        except (ValueError, OSError, EOFError) as e:
            raise ReproError(f"{what}: not a valid .npy file: {e}") from None
    with tempfile.TemporaryDirectory(prefix="georax-input-") as tmp:
        path = Path(tmp) / ("input" + (suffix if _SUFFIX.fullmatch(suffix) else ""))
        path.write_bytes(data)
        return read_raster(path)


def _record_input(
    name: str, item: Any, index: int, embed_below: int | None
) -> tuple[dict[str, Any], bytes | None, Any]:
    """The manifest record of one input, its embedded member bytes (or None), and its value."""
    if not isinstance(name, str) or not name:
        raise ReproError(f"input names must be non-empty strings, got {name!r}")
    if isinstance(item, str | os.PathLike):
        path = Path(item).resolve()
        data = _read_bytes(path, name, "freeze")
        suffix = path.suffix if _SUFFIX.fullmatch(path.suffix) else ""
        embed = embed_below is not None and len(data) < embed_below
        record = {
            "name": name,
            "kind": "file",
            "path": str(path),
            "suffix": suffix,
            "sha256": _sha256(data),
            "bytes": len(data),
            "member": f"inputs/{index:03d}{suffix}" if embed else None,
        }
        return record, data if embed else None, _decode_file(data, suffix, f"input {name!r}")
    data = encode_array(item, f"input {name!r}")
    values = np.asarray(item.values if isinstance(item, Carrier) else item)
    record = {
        "name": name,
        "kind": "array",
        "sha256": _sha256(data),
        "bytes": len(data),
        "dtype": values.dtype.name,
        "shape": list(values.shape),
        "geo": geo_of(item),
        "member": f"inputs/{index:03d}.npy",  # an in-memory input has no other home
    }
    return record, data, item


# ------------------------------------------------------------------------------------------------
# Rerun report
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class OutputCheck:
    """How one rerun output compares with its reference.

    Attributes:
        key: the output's name (``"<input>"`` or ``"<input>/<field>"``; a Graph's output name).
        status: ``"bit-exact"``, ``"within-tolerance"`` or ``"differs"``.
        max_abs_diff: the largest absolute difference over pixels finite in both (``None`` when
            not measurable: bit-exact, shapes differ, or no reference values were embedded).
        detail: a sentence for people.
    """

    key: str
    status: str
    max_abs_diff: float | None
    detail: str


@dataclasses.dataclass(frozen=True)
class RerunReport:
    """What :meth:`Artifact.rerun` found.

    Attributes:
        status: the worst output status (``"bit-exact"`` < ``"within-tolerance"`` <
            ``"differs"``).
        outputs: one :class:`OutputCheck` per reference output.
        drift: how the environment changed since the freeze.
        rtol, atol: the tolerance used (``|new - ref| <= atol + rtol * |ref|``).
    """

    status: str
    outputs: tuple[OutputCheck, ...]
    drift: EnvironmentDrift
    rtol: float
    atol: float

    @property
    def ok(self) -> bool:
        """True when every output is bit-exact or within tolerance."""
        return self.status != "differs"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {
            "status": self.status,
            "rtol": self.rtol,
            "atol": self.atol,
            "outputs": [dataclasses.asdict(o) for o in self.outputs],
            "environment_drift": self.drift.to_dict(),
        }

    def __str__(self) -> str:
        lines = [f"rerun: {self.status} (rtol={self.rtol:g}, atol={self.atol:g})"]
        lines += [f"  {o.key}: {o.status} -- {o.detail}" for o in self.outputs]
        lines.append(str(self.drift))
        return "\n".join(lines)


def _compare(
    record: dict[str, Any], leaf: Any, ref_data: bytes | None, rtol: float, atol: float
) -> OutputCheck:
    key = record["key"]
    data = encode_array(leaf, f"output {key!r}")
    geo = geo_of(leaf)
    if geo != record.get("geo"):
        return OutputCheck(
            key, "differs", None, f"georeferencing changed: {record.get('geo')} -> {geo}"
        )
    if _sha256(data) == record["sha256"]:
        return OutputCheck(key, "bit-exact", None, "identical bytes")
    new = np.asarray(leaf.values if isinstance(leaf, Carrier) else leaf)
    if ref_data is None:
        return OutputCheck(
            key,
            "differs",
            None,
            "differs from the recorded digest (reference values not embedded: cannot say how much)",
        )
    ref = decode_array(ref_data, record["dtype"], f"output {key!r}")
    if ref.shape != new.shape or ref.dtype != new.dtype:
        return OutputCheck(
            key, "differs", None, f"{ref.dtype}{list(ref.shape)} -> {new.dtype}{list(new.shape)}"
        )
    a, b = ref.astype(np.float64), new.astype(np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    diff = float(np.max(np.abs(a - b)[both], initial=0.0))
    nan_moved = int(np.count_nonzero(np.isnan(a) != np.isnan(b)))
    close = np.allclose(b, a, rtol=rtol, atol=atol, equal_nan=True)
    detail = f"max |new - ref| = {diff:.6g}" + (
        f", {nan_moved} pixels changed missingness" if nan_moved else ""
    )
    return OutputCheck(key, "within-tolerance" if close else "differs", diff, detail)


# ------------------------------------------------------------------------------------------------
# The artifact
# ------------------------------------------------------------------------------------------------
class Artifact:
    """A frozen pipeline run: pipeline, inputs by digest (and bytes if embedded), reference
    outputs, environment and metadata. Build one with :func:`freeze`, read one with
    :func:`load`.

    Attributes:
        manifest: the parsed ``MANIFEST.json``.
        pipeline: the pipeline (rebuilt through the sandboxed loader when loaded).
        digest: SHA-256 of ``MANIFEST.json``; publish and pin this.
        source: the file it was loaded from (``None`` for a fresh freeze).
    """

    def __init__(
        self,
        manifest_bytes: bytes,
        members: Mapping[str, bytes],
        pipeline: Operator,
        source: Path | None = None,
    ) -> None:
        self._manifest_bytes = manifest_bytes
        self._members = dict(members)
        self.manifest: dict[str, Any] = json.loads(manifest_bytes)
        self.pipeline = pipeline
        self.digest = _sha256(manifest_bytes)
        self.source = source

    # -------------------------------------------------------------- what it records
    @property
    def pipeline_digest(self) -> str:
        """:func:`georax.pipeline_digest` of the frozen pipeline (config + params)."""
        return self.manifest["pipeline"]["digest"]

    @property
    def config_hash(self) -> str:
        """:func:`georax.config_hash` of the frozen pipeline."""
        return self.manifest["pipeline"]["config_hash"]

    @property
    def config_yaml(self) -> str:
        """The frozen ``pipeline.yaml`` (config, digests, params file reference)."""
        return self._members[self.manifest["pipeline"]["yaml"]].decode("utf-8")

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata given to :func:`freeze`."""
        return self.manifest["metadata"]

    @property
    def environment(self) -> dict[str, Any]:
        """The environment recorded at freeze time."""
        return self.manifest["environment"]

    @property
    def inputs(self) -> list[dict[str, Any]]:
        """The input records (name, kind, sha256, bytes, path, member...)."""
        return self.manifest["inputs"]

    @property
    def outputs(self) -> list[dict[str, Any]]:
        """The reference output records (key, sha256, dtype, shape, geo, member)."""
        return self.manifest["outputs"]

    @property
    def member_names(self) -> list[str]:
        """Every archive member, in archive order."""
        return [MANIFEST, MANIFEST_DIGEST, *sorted(self._members)]

    def summary(self) -> str:
        """A few lines for people: digest, pipeline, inputs, outputs, metadata."""
        lines = [
            f"artifact digest  {self.digest}",
            f"pipeline digest  {self.pipeline_digest}",
            f"config hash      {self.config_hash}",
            f"pipeline         {self.pipeline.display_name}",
        ]
        for r in self.inputs:
            where = "embedded" if r["member"] else f"by path {r.get('path')}"
            lines.append(
                f"input  {r['name']}: sha256 {r['sha256'][:16]}..., {r['bytes']} B, {where}"
            )
        for r in self.outputs:
            kept = "values embedded" if r["member"] else "digest only"
            lines.append(f"output {r['key']}: {r['dtype']}{r['shape']}, {kept}")
        if self.metadata:
            lines.append(f"metadata         {json.dumps(self.metadata, sort_keys=True)}")
        return "\n".join(lines)

    # -------------------------------------------------------------- writing
    def save(self, path: str | os.PathLike[str], *, compress: bool = True) -> Path:
        """Write the artifact as a deterministic archive (atomically).

        **Arguments:**

        - `path`: the file to write.
        - `compress`: gzip it (deterministically); falls back to a plain tar for content so
          compressible that the default loader limits would take it for a bomb.

        **Returns:** the path written.
        """
        digest_line = f"{self.digest}  {MANIFEST}\n".encode()
        members = [(MANIFEST, self._manifest_bytes), (MANIFEST_DIGEST, digest_line)]
        members += sorted(self._members.items())
        write_archive(path, members, compress=compress)
        return Path(path)

    # -------------------------------------------------------------- rerunning
    def _input_value(self, record: dict[str, Any], override: Any) -> Any:
        name = record["name"]
        if override is None and record["member"] is not None:
            data = self._members[record["member"]]
        elif override is None or isinstance(override, str | os.PathLike):
            path = Path(override if override is not None else record["path"])
            data = _read_bytes(path, name, "rerun")
            if _sha256(data) != record["sha256"]:
                raise InputMismatchError(
                    name,
                    f"{path} has SHA-256 {_sha256(data)}, the artifact recorded "
                    f"{record['sha256']}: not the file that was frozen",
                )
        else:
            data = encode_array(override, f"input {name!r}")
            if _sha256(data) != record["sha256"]:
                raise InputMismatchError(name, "the array given differs from the one frozen")
            if geo_of(override) != record.get("geo"):
                raise InputMismatchError(name, "the array given has different georeferencing")
            return override
        if record["kind"] == "file":
            return _decode_file(data, record["suffix"], f"input {name!r}")
        values = decode_array(data, record["dtype"], f"input {name!r}")
        return rebuild(values, record.get("geo"), f"input {name!r}")

    def rerun(
        self,
        inputs: Mapping[str, InputLike] | None = None,
        *,
        rtol: float = 1e-5,
        atol: float = 1e-8,
    ) -> RerunReport:
        """Re-read the inputs, rerun the pipeline and compare with the reference outputs.

        **Arguments:**

        - `inputs`: replacements for inputs recorded by path (files move in ten years):
          ``{name: new path}`` (or an array); each must have the recorded SHA-256.
        - `rtol`, `atol`: what "within tolerance" means, ``|new - ref| <= atol + rtol * |ref|``.

        **Returns:** a :class:`RerunReport`: bit-exact, within tolerance or differs per output,
        and the environment drift.

        **Raises:** :class:`InputMismatchError` naming an input whose bytes are missing or differ.
        """
        overrides = dict(inputs or {})
        unknown = sorted(set(overrides) - {r["name"] for r in self.inputs})
        if unknown:
            raise InputMismatchError(
                unknown[0],
                f"the artifact has no such input (has {[r['name'] for r in self.inputs]})",
            )
        if not self.inputs:
            raise ReproError("the artifact records no inputs, so there is nothing to rerun")
        values = {r["name"]: self._input_value(r, overrides.get(r["name"])) for r in self.inputs}
        produced = dict(_run(self.pipeline, values, self.manifest["run"]["seed"]))
        checks = []
        for record in self.outputs:
            key = record["key"]
            if key not in produced:
                checks.append(OutputCheck(key, "differs", None, "the rerun did not produce it"))
                continue
            ref = self._members.get(record["member"]) if record["member"] else None
            checks.append(_compare(record, produced.pop(key), ref, rtol, atol))
        checks += [OutputCheck(k, "differs", None, "not produced at freeze time") for k in produced]
        status = max((c.status for c in checks), key=_STATUS_ORDER.__getitem__, default="bit-exact")
        return RerunReport(status, tuple(checks), environment_drift(self.environment), rtol, atol)


# ------------------------------------------------------------------------------------------------
# freeze
# ------------------------------------------------------------------------------------------------
def _pipeline_members(pipeline: Operator) -> tuple[dict[str, Any], dict[str, bytes]]:
    with tempfile.TemporaryDirectory(prefix="georax-freeze-") as tmp:
        saved = save_pipeline(pipeline, tmp)
        yaml_name = f"pipeline/{PIPELINE_FILE}"
        params_name = f"pipeline/{saved.params_path.name}"
        members = {
            yaml_name: saved.yaml_path.read_bytes(),
            params_name: saved.params_path.read_bytes(),
        }
    record = {
        "digest": saved.digest,
        "config_hash": saved.config_hash,
        "params_hash": saved.params_hash,
        "operator": pipeline.display_name,
        "yaml": yaml_name,
        "params": params_name,
    }
    return record, members


def freeze(
    pipeline: Operator,
    inputs: Mapping[str, InputLike] | None = None,
    *,
    metadata: Mapping[str, Any] | None = None,
    embed_inputs_below: int | None = None,
    embed_outputs_below: int | None = EMBED_OUTPUTS_BELOW,
    deps_lock: str | os.PathLike[str] | None = None,
    seed: int | None = None,
) -> Artifact:
    """Freeze a pipeline run: hash the inputs, run, record outputs, environment and metadata.

    **Arguments:**

    - `pipeline`: a YAML-writable pipeline (what :func:`georax.save` accepts).
    - `inputs`: ``{name: path | GeoTensor | array}``. Files are hashed byte for byte *before*
      anything runs and read as rasters (``.npy`` with NumPy); in-memory values are always
      embedded (they have no other home). A Graph gets them as its named inputs; any other
      pipeline is run once per input.
    - `metadata`: JSON-able facts to carry (author, date, DOI, container image digest...).
    - `embed_inputs_below`: embed input *files* smaller than this many bytes (``None``: embed
      none; they are then found again by path and verified by digest at rerun).
    - `embed_outputs_below`: embed reference outputs smaller than this many bytes (so a rerun
      can say by how much it differs); larger ones are recorded by digest only.
    - `deps_lock`: a lock file (``poetry.lock``, ``uv.lock``, ``requirements.txt``) to embed
      next to the recorded environment.
    - `seed`: for stochastic pipelines, the seed of the ``key`` passed to every run.

    **Returns:** an :class:`Artifact` (write it with :meth:`Artifact.save`).

    **Raises:** ``SerializationError`` for a pipeline YAML cannot hold (a Lambda...),
    :class:`ReproError` for unreadable inputs or metadata that is not JSON.
    """
    if not isinstance(pipeline, Operator):
        raise ReproError(f"freeze needs a georax Operator, got {type(pipeline).__name__}")
    for label, value in (
        ("embed_inputs_below", embed_inputs_below),
        ("embed_outputs_below", embed_outputs_below),
        ("seed", seed),
    ):
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            raise ReproError(f"{label}={value!r}: must be an int >= 0 or None")
    pipe_record, members = _pipeline_members(pipeline)
    records, values = [], {}
    for index, name in enumerate(sorted(inputs or {})):
        record, data, value = _record_input(name, (inputs or {})[name], index, embed_inputs_below)
        records.append(record)
        values[name] = value
        if data is not None:
            members[record["member"]] = data
    outputs = []
    if values:
        for index, (key, leaf) in enumerate(_run(pipeline, values, seed)):
            data = encode_array(leaf, f"output {key!r}")
            embed = embed_outputs_below is not None and len(data) < embed_outputs_below
            member = f"outputs/{index:03d}.npy" if embed else None
            values_ = np.asarray(leaf.values if isinstance(leaf, Carrier) else leaf)
            outputs.append(
                {
                    "key": key,
                    "sha256": _sha256(data),
                    "bytes": len(data),
                    "dtype": values_.dtype.name,
                    "shape": list(values_.shape),
                    "geo": geo_of(leaf),
                    "member": member,
                }
            )
            if member:
                members[member] = data
    lock = None
    if deps_lock is not None:
        path = Path(deps_lock)
        data = _read_bytes(path, "deps_lock", "freeze")
        lock = {"name": path.name, "sha256": _sha256(data), "bytes": len(data), "member": _LOCKFILE}
        members[_LOCKFILE] = data
    manifest = {
        "format": FORMAT,
        "pipeline": pipe_record,
        "inputs": records,
        "outputs": outputs,
        "run": {
            "seed": seed,
            "jit": True,
            "mode": "graph" if isinstance(pipeline, Graph) else "each",
        },
        "environment": capture_environment(),
        "deps_lock": lock,
        "metadata": _check_metadata(metadata),
        "members": {n: {"sha256": _sha256(d), "bytes": len(d)} for n, d in sorted(members.items())},
    }
    return Artifact(_canonical_json(manifest), members, pipeline)


def _check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    meta = dict(metadata or {})
    for k in meta:
        if not isinstance(k, str):
            raise ReproError(f"metadata keys must be strings, got {k!r}")
    try:
        json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ReproError(
            f"metadata must be JSON (str, numbers, bool, None, lists, dicts): {e}"
        ) from None
    return meta


# ------------------------------------------------------------------------------------------------
# load
# ------------------------------------------------------------------------------------------------
def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ArtifactTamperedError(MANIFEST, f"key {dup!r} appears twice")
    return dict(pairs)


def _refuse_constant(name: str) -> Any:
    raise ArtifactTamperedError(MANIFEST, f"non-standard JSON constant {name}")


def _parse_manifest(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(
            data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ArtifactFormatError(f"{MANIFEST} is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ArtifactFormatError(f"{MANIFEST}: format is {got!r}, this georax reads {FORMAT!r}")
    _check_schema(doc)
    return doc


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise ArtifactTamperedError(MANIFEST, f"malformed: {what}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_schema(doc: dict[str, Any]) -> None:
    """Every field the loader and rerun touch has the right type (a forged manifest fails here)."""
    members = doc.get("members")
    _need(isinstance(members, dict), "'members' must be a mapping")
    for name, rec in members.items():
        check_member_name(name)
        _need(name not in (MANIFEST, MANIFEST_DIGEST), f"'members' lists {name}")
        _need(
            isinstance(rec, dict)
            and isinstance(rec.get("sha256"), str)
            and bool(_HEX64.fullmatch(rec["sha256"]))
            and _is_int(rec.get("bytes")),
            f"members[{name!r}] must be {{sha256, bytes}}",
        )
    pipe = doc.get("pipeline")
    _need(isinstance(pipe, dict), "'pipeline' must be a mapping")
    for k in ("digest", "config_hash", "params_hash"):
        _need(isinstance(pipe.get(k), str) and bool(_HEX64.fullmatch(pipe[k])), f"pipeline.{k}")
    _need(pipe.get("yaml") == f"pipeline/{PIPELINE_FILE}", "pipeline.yaml member name")
    _need(
        isinstance(pipe.get("params"), str)
        and bool(re.fullmatch(r"pipeline/params-[0-9a-f]{16}\.eqx", pipe["params"])),
        "pipeline.params member name",
    )
    _need(
        isinstance(doc.get("inputs"), list) and isinstance(doc.get("outputs"), list),
        "'inputs'/'outputs' must be lists",
    )
    for r in doc["inputs"]:
        _need(
            isinstance(r, dict)
            and isinstance(r.get("name"), str)
            and r.get("kind") in ("file", "array"),
            "input record",
        )
        _need(
            isinstance(r.get("sha256"), str) and _is_int(r.get("bytes")),
            f"input {r.get('name')!r} digest",
        )
        _need(
            r.get("member") is None or isinstance(r["member"], str), f"input {r['name']!r} member"
        )
        if r["kind"] == "file":
            _need(
                isinstance(r.get("path"), str) and isinstance(r.get("suffix"), str),
                f"input {r['name']!r} path",
            )
        else:
            _need(
                isinstance(r.get("dtype"), str) and r.get("member") is not None,
                f"input {r['name']!r} array",
            )
    _need(len({r["name"] for r in doc["inputs"]}) == len(doc["inputs"]), "input names repeat")
    for r in doc["outputs"]:
        _need(
            isinstance(r, dict)
            and isinstance(r.get("key"), str)
            and isinstance(r.get("sha256"), str)
            and isinstance(r.get("dtype"), str),
            "output record",
        )
        _need(
            r.get("member") is None or isinstance(r["member"], str), f"output {r['key']!r} member"
        )
    run = doc.get("run")
    _need(isinstance(run, dict) and (run.get("seed") is None or _is_int(run.get("seed"))), "'run'")
    _need(
        isinstance(doc.get("environment"), dict) and isinstance(doc.get("metadata"), dict),
        "'environment'/'metadata'",
    )
    referenced = [pipe["yaml"], pipe["params"]]
    referenced += [r["member"] for r in (*doc["inputs"], *doc["outputs"]) if r["member"]]
    if doc.get("deps_lock") is not None:
        _need(
            isinstance(doc["deps_lock"], dict) and doc["deps_lock"].get("member") == _LOCKFILE,
            "'deps_lock'",
        )
        referenced.append(_LOCKFILE)
    for name in referenced:
        _need(name in members, f"{name} is referenced but not listed in 'members'")
    for r in (*doc["inputs"], *doc["outputs"]):
        if r["member"]:
            _need(
                members[r["member"]]["sha256"] == r["sha256"],
                f"{r['member']} digest disagrees with its record",
            )


class _Verifier:
    """Checks members against the manifest as they stream past.

    The manifest (and its seal, ``MANIFEST.sha256``) comes first in archives written here, so
    every later member is checked -- listed, of the recorded size -- before its data is read.
    An archive re-packed by another tool may put them anywhere: members seen before the
    manifest are held (within the archive limits) and checked as soon as it arrives.
    """

    def __init__(self, reader: ArchiveReader, expected_digest: str | None) -> None:
        self.reader = reader
        self.expected_digest = expected_digest
        self.manifest_bytes: bytes | None = None
        self.seal: bytes | None = None
        self.manifest: dict[str, Any] | None = None
        self.table: dict[str, dict[str, Any]] | None = None
        self.pending: list[tuple[str, bytes]] = []
        self.members: dict[str, bytes] = {}

    def take(self, name: str, data: bytes) -> None:
        if name == MANIFEST:
            if len(data) > _MAX_MANIFEST_BYTES:
                raise UnsafeArchiveError(MANIFEST, f"larger than {_MAX_MANIFEST_BYTES} bytes")
            self.manifest_bytes = data
        elif name == MANIFEST_DIGEST:
            self.seal = data
        elif self.table is None:
            self.pending.append((name, data))
        else:
            self.check(name, data)
        if self.table is None and self.manifest_bytes is not None and self.seal is not None:
            self.open_manifest(self.manifest_bytes, self.seal)

    def open_manifest(self, manifest_bytes: bytes, seal: bytes) -> None:
        digest = _sha256(manifest_bytes)
        recorded = seal.decode("ascii", "replace").split()
        if recorded != [digest, MANIFEST]:
            raise ArtifactTamperedError(
                MANIFEST,
                f"SHA-256 {digest} does not match {MANIFEST_DIGEST} "
                f"({' '.join(recorded)[:80]!r}): one of the two was modified",
            )
        if self.expected_digest is not None and digest != self.expected_digest:
            raise ArtifactTamperedError(
                MANIFEST, f"artifact digest {digest} is not the expected {self.expected_digest}"
            )
        self.manifest = _parse_manifest(manifest_bytes)
        table: dict[str, dict[str, Any]] = self.manifest["members"]
        self.table = table
        later = {n: r["bytes"] for n, r in table.items() if n not in dict(self.pending)}
        self.reader.expect_total(sum(later.values()), len(later))
        self.reader.accept = self.accept
        for name, data in self.pending:
            self.accept(name, len(data))
            self.check(name, data)
        self.pending.clear()

    def accept(self, name: str, size: int) -> None:
        assert self.table is not None
        if name not in self.table:
            raise ArtifactTamperedError(
                name, "is not listed in the manifest (added after freezing)"
            )
        if size != self.table[name]["bytes"]:
            raise ArtifactTamperedError(
                name, f"has {size} bytes, the manifest records {self.table[name]['bytes']}"
            )

    def check(self, name: str, data: bytes) -> None:
        assert self.table is not None
        got = _sha256(data)
        if got != self.table[name]["sha256"]:
            raise ArtifactTamperedError(
                name, f"SHA-256 {got} does not match the manifest's {self.table[name]['sha256']}"
            )
        self.members[name] = data


def load(
    path: str | os.PathLike[str],
    *,
    expected_digest: str | None = None,
    allowed: Iterable[str] | None = None,
    limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS,
) -> Artifact:
    """Open an artifact, verifying every member, and rebuild its pipeline in the sandbox.

    **Arguments:**

    - `path`: the archive written by :meth:`Artifact.save`.
    - `expected_digest`: the artifact digest you published; anything else is refused.
    - `allowed`: the sandbox allow-list of ``_target_`` strings (default: every public
      georax operator, :func:`georax.registry.public_operators`); add your own operators'
      paths if the pipeline uses them.
    - `limits`: :class:`~georax.repro.archive.ArchiveLimits` for the hostile-archive checks.

    **Returns:** the verified :class:`Artifact`.

    **Raises:** :class:`ArtifactTamperedError` (naming the member),
    :class:`UnsafeArchiveError`, :class:`ArtifactFormatError`, and the sandbox's
    ``UntrustedTargetError`` for an operator outside ``allowed``.
    """
    with ArchiveReader(path, limits) as reader:
        verifier = _Verifier(reader, expected_digest)
        for name, data in reader:
            verifier.take(name, data)
    manifest_bytes = verifier.manifest_bytes
    if manifest_bytes is None:
        raise ArtifactFormatError(f"{path} is not a georax artifact: it has no {MANIFEST}")
    if verifier.manifest is None or verifier.table is None:
        raise ArtifactTamperedError(MANIFEST_DIGEST, "is missing (it seals the manifest)")
    manifest, table, members = verifier.manifest, verifier.table, verifier.members
    missing = sorted(set(table) - set(members))
    if missing:
        raise ArtifactTamperedError(
            missing[0], "is listed in the manifest but missing from the archive"
        )
    pipeline = _rebuild_pipeline(manifest, members, allowed)
    return Artifact(manifest_bytes, members, pipeline, Path(path))


def _rebuild_pipeline(
    manifest: dict[str, Any], members: dict[str, bytes], allowed: Iterable[str] | None
) -> Operator:
    pipe = manifest["pipeline"]
    if allowed is None:
        # Importing any georax module imports the package face, which registers every
        # built-in operator; nothing needs discovering here.
        allowed = registry.public_operators()
    with tempfile.TemporaryDirectory(prefix="georax-artifact-") as tmp:
        # Only these two names are ever written, both fixed by the manifest schema check.
        (Path(tmp) / PIPELINE_FILE).write_bytes(members[pipe["yaml"]])
        (Path(tmp) / Path(pipe["params"]).name).write_bytes(members[pipe["params"]])
        try:
            return load_pipeline(
                tmp, allowed=allowed, expected_digest=pipe["digest"], limits=DEFAULT_LIMITS
            )
        except ParamsIntegrityError as e:
            raise ArtifactTamperedError(
                pipe["yaml"], f"the pipeline does not match its digests: {e}"
            ) from None
        except GeoraxError:
            raise
        except Exception as e:  # pragma: no cover - the loader is expected to raise typed errors
            raise ArtifactTamperedError(
                pipe["yaml"], f"cannot rebuild the pipeline: {type(e).__name__}: {e}"
            ) from None
