"""georax.repro: freeze -> save -> load -> rerun; determinism; tamper detection; drift."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import jax
import numpy as np
import pytest

import config_test_ops as tops
import georax as gx
import georax.data as gd
import georax.io as gio
from georax.core.errors import SerializationError, UntrustedTargetError
from georax.geo.cloud import MaskClouds
from georax.geo.indices import NDVI
from georax.geo.radiometry import DarkObjectSubtraction, ScaleOffset
from georax.geo.sar import LinearToDB
from georax.repro import (
    ArtifactFormatError,
    ArtifactTamperedError,
    InputMismatchError,
    ReproError,
    capture_environment,
    environment_drift,
    freeze,
    load,
)
from georax.repro.archive import ARCHIVE_MTIME

ROOT = Path(__file__).resolve().parents[1]


def seed_pipeline() -> gx.Sequential:
    """The seeds' case-9 chain: QA cloud mask -> DN scale -> dark-object subtraction -> NDVI."""
    return gx.Sequential(
        [MaskClouds(), ScaleOffset(scale=1e-4), DarkObjectSubtraction(percentile=1.0), NDVI()]
    )


def scale_pipeline(scale: float = 2.0) -> gx.Sequential:
    return gx.Sequential([ScaleOffset(scale=scale, offset=1.0)])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_members(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    """Every member of a (trusted, test-made) archive, in order."""
    with tarfile.open(path, "r:*") as tar:
        return [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]


def write_members(path: Path, members: list[tuple[str, bytes]], compress: bool = True) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    path.write_bytes(gzip.compress(raw, mtime=0) if compress else raw)


def rewrite(src: Path, dst: Path, edit) -> None:  # type: ignore[no-untyped-def]
    """Copy an artifact, passing every (name, data) through ``edit`` (None drops a member)."""
    out = []
    for info, data in read_members(src):
        new = edit(info.name, data)
        if new is not None:
            out.append(new)
    write_members(dst, out)


def flip(data: bytes) -> bytes:
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scene") / "scene.tif"
    gio.write(gd.sentinel2_l1c(48, seed=3), path)
    return path


@pytest.fixture(scope="module")
def artifact_path(tmp_path_factory: pytest.TempPathFactory, scene_file: Path) -> Path:
    lock = tmp_path_factory.mktemp("lock") / "requirements.lock"
    lock.write_text("numpy==2.0.0\njax==0.10.2\n")
    art = freeze(
        seed_pipeline(),
        inputs={"scene": scene_file, "inline": gd.sentinel2_l1c(32, seed=5)},
        metadata={"author": "ej", "doi": "10.0000/test"},
        embed_inputs_below=10**7,
        deps_lock=lock,
    )
    return art.save(tmp_path_factory.mktemp("art") / "artifact.gxa")


# ------------------------------------------------------------------------------------------------
# Round trip
# ------------------------------------------------------------------------------------------------
def test_freeze_records_pipeline_inputs_outputs_environment(
    artifact_path: Path, scene_file: Path
) -> None:
    art = load(artifact_path)
    pipe = seed_pipeline()
    assert art.pipeline_digest == gx.pipeline_digest(pipe)
    assert art.config_hash == gx.config_hash(pipe)
    assert gx.config_hash(art.pipeline) == gx.config_hash(pipe)
    assert "georax.geo.cloud.MaskClouds" in art.config_yaml
    assert art.metadata == {"author": "ej", "doi": "10.0000/test"}
    by_name = {r["name"]: r for r in art.inputs}
    # input digests are the bytes' SHA-256 (files byte for byte)
    assert by_name["scene"]["sha256"] == sha256(scene_file.read_bytes())
    assert by_name["scene"]["path"] == str(scene_file.resolve())
    assert by_name["inline"]["geo"]["crs"] == gd.sentinel2_l1c(32, seed=5).crs
    # reference output digests are those of the pipeline's own outputs
    expected = np.asarray(jax.jit(pipe)(gio.read(scene_file)).values)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(expected), version=(1, 0))
    out = {r["key"]: r for r in art.outputs}
    assert out["scene"]["sha256"] == sha256(buf.getvalue())
    env = art.environment
    assert env["python"]["version"] == capture_environment()["python"]["version"]
    assert env["packages"]["numpy"] == np.__version__
    assert env["jax"]["backend"] == jax.default_backend()
    assert "XLA_FLAGS" in env["env"] or all(not k.startswith("XLA_") for k in os.environ)
    assert art.manifest["deps_lock"]["name"] == "requirements.lock"


def test_every_member_is_listed_with_its_digest(artifact_path: Path) -> None:
    members = read_members(artifact_path)
    names = [m.name for m, _ in members]
    assert names == sorted(names) and names[:2] == ["MANIFEST.json", "MANIFEST.sha256"]
    manifest = json.loads(members[0][1])
    assert members[1][1].decode() == f"{sha256(members[0][1])}  MANIFEST.json\n"
    listed = manifest["members"]
    assert sorted(listed) == names[2:]
    for info, data in members[2:]:
        assert listed[info.name] == {"sha256": sha256(data), "bytes": len(data)}
    kinds = {n.split("/")[0] for n in names[2:]}
    assert kinds == {"environment", "inputs", "outputs", "pipeline"}


def test_archive_metadata_is_fixed(artifact_path: Path) -> None:
    raw = artifact_path.read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\x00\x00\x00\x00"  # gzip mtime 0
    for info, _ in read_members(artifact_path):
        assert info.isreg()
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode) == (
            ARCHIVE_MTIME,
            0,
            0,
            "",
            "",
            0o644,
        )


def test_rerun_is_bit_exact_and_reports_no_drift(artifact_path: Path) -> None:
    report = load(artifact_path).rerun()
    assert report.status == "bit-exact" and report.ok
    assert {o.key for o in report.outputs} == {"scene", "inline"}
    assert not report.drift
    assert "bit-exact" in str(report)


FREEZE_SCRIPT = """
import sys
import georax as gx, georax.data as gd
from georax.repro import freeze
from georax.geo.cloud import MaskClouds
from georax.geo.indices import NDVI
from georax.geo.radiometry import DarkObjectSubtraction
pipe = gx.Sequential([MaskClouds(), DarkObjectSubtraction(percentile=1.0), NDVI()])
art = freeze(pipe, inputs={"scene": gd.sentinel2_l1c(32, seed=7)}, metadata={"run": 1})
art.save(sys.argv[1])
print(art.digest)
"""

RERUN_SCRIPT = """
import sys
from georax.repro import load
r = load(sys.argv[1], expected_digest=sys.argv[2]).rerun()
print(r.status)
"""


def run_python(code: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]))
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_same_freeze_is_byte_identical_in_another_process_and_reruns_there(tmp_path: Path) -> None:
    d1 = run_python(FREEZE_SCRIPT, str(tmp_path / "one.gxa"))
    d2 = run_python(FREEZE_SCRIPT, str(tmp_path / "two.gxa"))
    assert d1 == d2
    assert (tmp_path / "one.gxa").read_bytes() == (tmp_path / "two.gxa").read_bytes()
    assert run_python(RERUN_SCRIPT, str(tmp_path / "one.gxa"), d1) == "bit-exact"


# ------------------------------------------------------------------------------------------------
# Tampering
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "prefix",
    [
        "MANIFEST.json",
        "MANIFEST.sha256",
        "pipeline/pipeline.yaml",
        "pipeline/params-",
        "inputs/000",
        "inputs/001",
        "outputs/000",
        "environment/lockfile",
    ],
)
def test_tampering_with_each_kind_of_member_is_detected(
    artifact_path: Path, tmp_path: Path, prefix: str
) -> None:
    target = next(m.name for m, _ in read_members(artifact_path) if m.name.startswith(prefix))
    bad = tmp_path / "tampered.gxa"
    rewrite(artifact_path, bad, lambda n, d: (n, flip(d) if n == target else d))
    with pytest.raises(ArtifactTamperedError) as e:
        load(bad)
    if target == "MANIFEST.sha256":
        assert e.value.member in ("MANIFEST.json", "MANIFEST.sha256")
    else:
        assert e.value.member == target
    assert target in str(e.value) or "MANIFEST" in str(e.value)


def test_empty_params_member_tamper_detected(tmp_path: Path) -> None:
    """A pipeline without arrays has an empty params file: appending to it is caught too."""
    path = freeze(gx.Sequential([MaskClouds(), NDVI()])).save(tmp_path / "a.gxa")
    bad = tmp_path / "bad.gxa"
    rewrite(path, bad, lambda n, d: (n, d + b"x" if n.startswith("pipeline/params-") else d))
    with pytest.raises(ArtifactTamperedError, match="params-"):
        load(bad)


def test_an_added_or_a_missing_member_is_detected(artifact_path: Path, tmp_path: Path) -> None:
    added = tmp_path / "added.gxa"
    members = [(m.name, d) for m, d in read_members(artifact_path)]
    write_members(added, [*members, ("outputs/999.npy", b"extra")])
    with pytest.raises(ArtifactTamperedError, match="not listed") as e:
        load(added)
    assert e.value.member == "outputs/999.npy"
    missing = tmp_path / "missing.gxa"
    rewrite(artifact_path, missing, lambda n, d: None if n == "outputs/000.npy" else (n, d))
    with pytest.raises(ArtifactTamperedError, match="missing") as e:
        load(missing)
    assert e.value.member == "outputs/000.npy"


def _reseal(members: list[tuple[str, bytes]], edit_manifest=None) -> list[tuple[str, bytes]]:  # type: ignore[no-untyped-def]
    """Recompute the manifest's member digests and MANIFEST.sha256: a consistent forgery."""
    body = dict(members[2:])
    manifest = json.loads(members[0][1])
    manifest["members"] = {n: {"sha256": sha256(d), "bytes": len(d)} for n, d in body.items()}
    if edit_manifest is not None:
        edit_manifest(manifest)
    text = (json.dumps(manifest, sort_keys=True, indent=1) + "\n").encode()
    return [
        ("MANIFEST.json", text),
        ("MANIFEST.sha256", f"{sha256(text)}  MANIFEST.json\n".encode()),
        *sorted(body.items()),
    ]


def test_a_resealed_forgery_is_caught_by_the_pipeline_digests_or_a_pinned_digest(
    tmp_path: Path,
) -> None:
    path = freeze(scale_pipeline(2.0), inputs={"x": np.ones((1, 4, 4), np.float32)}).save(
        tmp_path / "a.gxa"
    )
    original = load(path).digest
    members = [(m.name, d) for m, d in read_members(path)]
    # edit a value in pipeline.yaml and reseal every digest above it: the pipeline's own hashes
    # (recomputed by the sandboxed loader) no longer match
    edited = [
        (n, d.replace(b"scale: 2.0", b"scale: 3.0") if n.endswith("pipeline.yaml") else d)
        for n, d in members
    ]
    assert edited != members
    forged = tmp_path / "forged.gxa"
    write_members(forged, _reseal(edited))
    with pytest.raises(ArtifactTamperedError) as e:
        load(forged)
    assert e.value.member == "pipeline/pipeline.yaml"
    # resealing metadata only is a valid artifact -- with another digest, refused when pinned
    meta = tmp_path / "meta.gxa"
    write_members(meta, _reseal(members, lambda m: m["metadata"].update(doi="forged")))
    assert load(meta).metadata == {"doi": "forged"}
    with pytest.raises(ArtifactTamperedError, match="expected"):
        load(meta, expected_digest=original)
    assert load(path, expected_digest=original).digest == original


def test_a_forged_manifest_with_bad_fields_is_a_typed_error(tmp_path: Path) -> None:
    path = freeze(scale_pipeline(), inputs={"x": np.ones((1, 4, 4), np.float32)}).save(
        tmp_path / "a.gxa"
    )
    members = [(m.name, d) for m, d in read_members(path)]
    for edit in (
        lambda m: m.update(inputs="nope"),
        lambda m: m["pipeline"].update(yaml="../../etc/passwd"),
        lambda m: m["outputs"][0].update(member="outputs/777.npy"),
        lambda m: m["run"].update(seed=-1),
    ):
        bad = tmp_path / "bad.gxa"
        write_members(bad, _reseal(members, edit))
        with pytest.raises(ArtifactTamperedError, match="malformed"):
            load(bad)
    not_json = tmp_path / "notjson.gxa"
    text = b"{not json"
    write_members(
        not_json,
        [("MANIFEST.json", text), ("MANIFEST.sha256", f"{sha256(text)}  MANIFEST.json\n".encode())],
    )
    with pytest.raises(ArtifactFormatError, match="not valid JSON"):
        load(not_json)


# ------------------------------------------------------------------------------------------------
# Rerun: inputs by path, tolerance, drift
# ------------------------------------------------------------------------------------------------
def test_inputs_by_path_are_verified_at_rerun(tmp_path: Path) -> None:
    scene = tmp_path / "scene.tif"
    gio.write(gd.sentinel2_l1c(32, seed=11), scene)
    path = freeze(seed_pipeline(), inputs={"scene": scene}).save(tmp_path / "a.gxa")
    art = load(path)
    assert art.inputs[0]["member"] is None  # not embedded: found again by path
    assert art.rerun().status == "bit-exact"
    moved = tmp_path / "moved.tif"
    scene.rename(moved)
    with pytest.raises(InputMismatchError, match="cannot read") as e:
        art.rerun()
    assert e.value.name == "scene"
    assert art.rerun({"scene": moved}).status == "bit-exact"
    gio.write(gd.sentinel2_l1c(32, seed=12), moved)  # same name, other bytes
    with pytest.raises(InputMismatchError, match="not the file that was frozen"):
        art.rerun({"scene": moved})
    with pytest.raises(InputMismatchError, match="no such input"):
        art.rerun({"other": moved})


def test_rerun_reports_within_tolerance_and_differs_with_the_amount(tmp_path: Path) -> None:
    x = np.linspace(0, 1, 48, dtype=np.float32).reshape(1, 6, 8)
    art = load(freeze(scale_pipeline(2.0), inputs={"x": x}).save(tmp_path / "a.gxa"))
    ref = x * np.float32(2.0) + np.float32(1.0)
    # the numbers move a little, as a BLAS or XLA upgrade would move them
    art.pipeline = scale_pipeline(2.0 * (1 + 3e-7))
    near = art.rerun()
    assert near.status == "within-tolerance" and near.ok
    assert 0 < near.outputs[0].max_abs_diff < 1e-5
    art.pipeline = scale_pipeline(2.5)
    far = art.rerun()
    assert far.status == "differs" and not far.ok
    new = x * np.float32(2.5) + np.float32(1.0)
    assert far.outputs[0].max_abs_diff == pytest.approx(float(np.max(np.abs(new - ref))))
    tight = art.rerun(rtol=1.0)
    assert tight.status == "within-tolerance"


def test_without_embedded_outputs_a_difference_is_reported_without_amount(tmp_path: Path) -> None:
    x = np.ones((1, 4, 4), np.float32)
    art = load(
        freeze(scale_pipeline(), inputs={"x": x}, embed_outputs_below=0).save(tmp_path / "a")
    )
    assert art.outputs[0]["member"] is None
    assert art.rerun().status == "bit-exact"
    art.pipeline = scale_pipeline(3.0)
    check = art.rerun().outputs[0]
    assert check.status == "differs" and check.max_abs_diff is None
    assert "not embedded" in check.detail


def test_environment_drift_names_what_changed() -> None:
    now = capture_environment()
    then = json.loads(json.dumps(now))
    then["packages"]["numpy"] = "1.0.0"
    then["packages"]["ancient-lib"] = "0.1"
    del then["packages"]["jax"]
    then["jax"]["backend"] = "tpu"
    drift = environment_drift(then, now)
    assert drift.changed == {"numpy": ("1.0.0", now["packages"]["numpy"])}
    assert drift.removed == {"ancient-lib": "0.1"}
    assert drift.added == {"jax": now["packages"]["jax"]}
    assert drift.other == {"jax.backend": ("tpu", now["jax"]["backend"])}
    text = str(drift)
    assert "numpy: 1.0.0 ->" in text and "ancient-lib" in text
    assert not environment_drift(now, now)


# ------------------------------------------------------------------------------------------------
# Graphs, weights, the sandbox, bad arguments
# ------------------------------------------------------------------------------------------------
def test_a_graph_takes_its_named_inputs(tmp_path: Path) -> None:
    opt, sar = gx.Input("optical"), gx.Input("sar")
    g = gx.Graph(
        inputs={"optical": opt, "sar": sar},
        outputs={"ndvi": NDVI()(MaskClouds()(opt)), "db": LinearToDB()(sar)},
    )
    fused = gd.fusion_scenes(32)
    inputs = {"optical": fused["s2"], "sar": fused["s1"]}
    art = load(freeze(g, inputs=inputs).save(tmp_path / "g.gxa"))
    assert sorted(r["key"] for r in art.outputs) == ["db", "ndvi"]
    assert art.rerun().status == "bit-exact"
    with pytest.raises(ReproError, match="name the inputs exactly"):
        freeze(g, inputs={"optical": fused["s2"]})


def test_pipeline_weights_round_trip_and_the_sandbox_is_enforced(tmp_path: Path) -> None:
    model = tops.TinyMLP.init((3, 32, 16, 2), jax.random.key(0))
    pipe = gx.Sequential([tops.Scale(gain=1.5), gx.ModelOp(model)])
    x = np.asarray(jax.random.uniform(jax.random.key(1), (3, 8, 8)))
    path = freeze(pipe, inputs={"x": x}).save(tmp_path / "w.gxa")
    with pytest.raises(UntrustedTargetError, match="config_test_ops"):
        load(path)  # default allow-list: georax's public operators only
    # ModelOp is forbid_in_yaml in the public list; a model with config is allowed explicitly
    allowed = gx.registry.public_operators(include_modules=["georax", "config_test_ops"]) | {
        "georax.ModelOp"
    }
    art = load(path, allowed=allowed)
    assert gx.params_hash(art.pipeline) == gx.params_hash(pipe)
    assert art.rerun().status == "bit-exact"


def test_freeze_refuses_what_it_cannot_record(tmp_path: Path) -> None:
    with pytest.raises(SerializationError, match="Lambda"):
        freeze(gx.Lambda(lambda v: v))
    with pytest.raises(ReproError, match="metadata must be JSON"):
        freeze(scale_pipeline(), metadata={"when": {1, 2}})
    with pytest.raises(ReproError, match="cannot read"):
        freeze(scale_pipeline(), inputs={"x": tmp_path / "absent.tif"})
    with pytest.raises(ReproError, match="embed_inputs_below"):
        freeze(scale_pipeline(), embed_inputs_below=-1)
    with pytest.raises(ReproError, match="nothing to rerun"):
        load(freeze(scale_pipeline()).save(tmp_path / "empty.gxa")).rerun()


def test_loading_a_non_artifact_is_a_format_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gxa"
    junk.write_bytes(b"this is not a tar file at all" * 40)
    with pytest.raises(ArtifactFormatError):
        load(junk)
    other = tmp_path / "other.tar"
    write_members(other, [("README", b"hello")])
    with pytest.raises(ArtifactFormatError, match="not a georax artifact"):
        load(other)
    with pytest.raises(ArtifactFormatError, match="cannot open"):
        load(tmp_path / "absent.gxa")
