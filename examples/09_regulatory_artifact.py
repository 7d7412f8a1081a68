"""Seed case 9 -- a pinned, hashed regulatory artifact: freeze, tamper, refuse, rerun bit-exact.

A result for a paper or a regulatory submission must be reproducible years later. Here the
bundled Sentinel-2-like scene is "published" as a GeoTIFF, a pipeline is loaded from YAML (QA
cloud mask -> DN to reflectance -> dark-object subtraction -> NDVI), and
:func:`georax.repro.freeze` runs it and records

- the pipeline (the ``georax.save`` YAML + params file) with its digest,
- the input by SHA-256 of its bytes (and the bytes themselves: it is small enough to embed),
- the reference output by digest and value,
- the environment (Python, platform, every installed package's version, JAX backend and
  devices, XLA flags) and the metadata (author, date, DOI).

The artifact is a deterministic archive; its **digest** (SHA-256 of its manifest, which lists
the digest of every member) is the string to print in the paper. The script then

1. loads it back, pinning that digest;
2. tampers with copies (one byte of the embedded scene; one value in the pipeline YAML) and
   shows each being refused with a typed error naming the member;
3. reruns the artifact **in a fresh process** (``georax rerun ... --expect DIGEST``) and checks
   the result is bit-exact.

Run: ``python examples/09_regulatory_artifact.py [OUTPUT_DIR] [--size N]`` (default output folder
``./georax-out/09``). Writes ``09_artifact.gxa``, ``09_pipeline.yaml``, ``09_scene.tif``,
``09_manifest.json`` and ``09_rerun.json``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import georax as gx
import georax.data as gd
import georax.io as gio
from georax.repro import ArtifactTamperedError, freeze, load

PIPELINE_YAML = """\
_target_: georax.Sequential
operators:
- {_target_: georax.geo.cloud.MaskClouds, qa_band: -1, bits: [10, 11]}
- {_target_: georax.geo.radiometry.ScaleOffset, scale: 0.0001, offset: 0.0}
- {_target_: georax.geo.radiometry.DarkObjectSubtraction, percentile: 1.0}
- {_target_: georax.geo.indices.NDVI}
"""


def tampered_copy(src: Path, dst: Path, member: str, edit: Callable[[bytes], bytes]) -> None:
    """Copy an artifact with one member's bytes edited (what an attacker or a bad disk does)."""
    with tarfile.open(src, "r:*") as tar:  # our own, just-written archive
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            if info.name == member:
                data = edit(data)
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    dst.write_bytes(gzip.compress(buf.getvalue(), mtime=0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Seed case 9: a pinned regulatory artifact")
    parser.add_argument("out", nargs="?", default=os.path.join("georax-out", "09"))
    parser.add_argument("--size", type=int, default=256, help="scene size in pixels")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # === At publication time ===
    scene_path = out / "09_scene.tif"
    gio.write(gd.sentinel2_l1c(args.size, seed=0), scene_path)
    (out / "09_pipeline.yaml").write_text(PIPELINE_YAML)
    pipeline = gx.loads_yaml((out / "09_pipeline.yaml").read_text())
    artifact = freeze(
        pipeline,
        inputs={"scene": scene_path},
        metadata={"author": "ej", "date": "2024-09-15", "doi": "10.xxxx/mars-2024Q3"},
        embed_inputs_below=256 * 2**20,
    )
    path = artifact.save(out / "09_artifact.gxa")
    published = artifact.digest
    print(artifact.summary())
    print(f"wrote {path} ({path.stat().st_size} bytes); publish digest {published}")
    (out / "09_manifest.json").write_text(json.dumps(artifact.manifest, indent=1, sort_keys=True))

    # === Years later: load, pinning the published digest ===
    art = load(path, expected_digest=published)
    assert art.pipeline_digest == gx.pipeline_digest(pipeline)
    print(
        f"\nloaded and verified: {len(art.member_names)} members, "
        f"pipeline {art.config_hash[:16]}..."
    )
    print(art.config_yaml)

    # === Tampering is refused, naming the member ===
    scene_member = next(r["member"] for r in art.inputs if r["name"] == "scene")
    attacks = {
        scene_member: lambda b: b[:-10] + bytes([b[-10] ^ 1]) + b[-9:],
        "pipeline/pipeline.yaml": lambda b: b.replace(b"percentile: 1.0", b"percentile: 5.0"),
    }
    refused = 0
    for member, edit in attacks.items():
        bad = out / "09_tampered.gxa"
        tampered_copy(path, bad, member, edit)
        try:
            load(bad)
        except ArtifactTamperedError as e:
            refused += 1
            print(f"tampered {member}: refused -> {e}")
        finally:
            bad.unlink(missing_ok=True)
    if refused != len(attacks):
        print("ERROR: a tampered artifact was accepted", file=sys.stderr)
        return 1

    # === Rerun in a fresh process, as a reviewer would ===
    proc = subprocess.run(
        [sys.executable, "-m", "georax.cli", "rerun", str(path), "--expect", published, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        print(proc.stdout + proc.stderr, file=sys.stderr)
        return 1
    report = json.loads(proc.stdout)
    (out / "09_rerun.json").write_text(json.dumps(report, indent=1))
    print(f"\nrerun in a fresh process: {report['status']}")
    for o in report["outputs"]:
        print(f"  {o['key']}: {o['status']} ({o['detail']})")
    drift = report["environment_drift"]
    print("  environment drift:", "none" if not any(drift.values()) else drift)
    return 0 if report["status"] == "bit-exact" else 1


if __name__ == "__main__":
    sys.exit(main())
