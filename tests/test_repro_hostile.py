"""Hostile archives are refused by georax.repro.load before anything reaches the file system.

Each test builds an archive the way an attacker would (tarfile directly) and checks the refusal
*and* its mechanism: the error names the member and rule, nothing is written outside, and a bomb
is stopped after a bounded number of decompressed bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import georax as gx
from georax.geo.radiometry import ScaleOffset
from georax.repro import (
    ArchiveLimits,
    ArtifactFormatError,
    ArtifactTamperedError,
    UnsafeArchiveError,
    freeze,
    load,
)
from georax.repro.archive import ArchiveReader, check_member_name


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def good_members(tmp_path: Path) -> list[tuple[str, bytes]]:
    pipe = gx.Sequential([ScaleOffset(scale=2.0)])
    path = freeze(pipe, inputs={"x": np.ones((1, 4, 4), np.float32)}).save(tmp_path / "ok.gxa")
    with tarfile.open(path, "r:*") as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]


def build(path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "gz") -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for e in entries:
            if isinstance(e, tarfile.TarInfo):
                tar.addfile(e)
            else:
                info = tarfile.TarInfo(e[0])
                info.size = len(e[1])
                tar.addfile(info, io.BytesIO(e[1]))
    raw = buf.getvalue()
    data = {"gz": lambda: gzip.compress(raw), "xz": lambda: lzma.compress(raw), "tar": lambda: raw}
    path.write_bytes(data[mode]())
    return path


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info


@pytest.mark.parametrize(
    ("entry", "rule"),
    [
        (("../../escaped.txt", b"pwned"), "traversal"),
        (("inputs/../../escaped.txt", b"pwned"), "traversal"),
        (("/tmp/georax-absolute-escape.txt", b"pwned"), "absolute"),
        (("inputs/\x1b[31mred", b"x"), "characters"),
        (special("inputs/link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
        (special("inputs/hard", tarfile.LNKTYPE, "MANIFEST.json"), "hard link"),
        (special("inputs/dev", tarfile.CHRTYPE), "character device"),
        (special("inputs/blk", tarfile.BLKTYPE), "block device"),
        (special("inputs/fifo", tarfile.FIFOTYPE), "FIFO"),
        (special("../outside", tarfile.DIRTYPE), "traversal"),
    ],
)
@pytest.mark.parametrize("position", ["first", "after_manifest"])
def test_hostile_members_are_refused(tmp_path: Path, entry, rule: str, position: str) -> None:  # type: ignore[no-untyped-def]
    members = good_members(tmp_path)
    entries = [entry, *members] if position == "first" else [*members[:2], entry, *members[2:]]
    path = build(tmp_path / "hostile.gxa", entries)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(UnsafeArchiveError, match=rule) as e:
            load(path)
    finally:
        os.chdir(cwd)
    name = entry.name if isinstance(entry, tarfile.TarInfo) else entry[0]
    assert e.value.member == name
    assert not (tmp_path.parent / "escaped.txt").exists()
    assert not (tmp_path.parent.parent / "escaped.txt").exists()
    assert not Path("/tmp/georax-absolute-escape.txt").exists()


def test_an_artifact_repacked_by_another_tool_still_verifies(tmp_path: Path) -> None:
    """``tar -C dir -czf a.gxa .`` writes ``./`` names, directory entries, its own order."""
    members = good_members(tmp_path)
    shuffled = members[2:][::-1] + members[:2][::-1]  # manifest last: held members checked later
    entries: list = [special(".", tarfile.DIRTYPE), special("./inputs/", tarfile.DIRTYPE)]
    entries += [(f"./{n}", d) for n, d in shuffled]
    art = load(build(tmp_path / "repacked.gxa", entries))
    assert art.digest == sha256(members[0][1])
    assert art.rerun().status == "bit-exact"
    edited = [
        e
        if not (isinstance(e, tuple) and e[0].startswith("./inputs/"))
        else (e[0], e[1][:-1] + bytes([e[1][-1] ^ 1]))
        for e in entries
    ]
    with pytest.raises(ArtifactTamperedError) as err:
        load(build(tmp_path / "edited.gxa", edited))
    assert err.value.member.startswith("inputs/")


def test_a_flipped_byte_anywhere_in_the_compressed_stream_is_refused(tmp_path: Path) -> None:
    members = good_members(tmp_path)
    path = build(tmp_path / "ok.gxa", members)
    data = path.read_bytes()
    # every byte from the end of the gzip header (10 bytes: magic, flags, mtime, xfl, os --
    # not content) to the CRC-32 and size trailer
    positions = np.linspace(10, len(data) - 1, 25).astype(int)
    for i in positions:
        bad = tmp_path / "flipped.gxa"
        bad.write_bytes(data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1 :])
        with pytest.raises((ArtifactTamperedError, ArtifactFormatError, UnsafeArchiveError)):
            load(bad)


def test_a_duplicate_member_that_would_shadow_is_refused(tmp_path: Path) -> None:
    members = good_members(tmp_path)
    yaml_member = next(m for m in members if m[0].endswith("pipeline.yaml"))
    path = build(tmp_path / "dup.gxa", [*members, (yaml_member[0], b"_target_: evil\n")])
    with pytest.raises(UnsafeArchiveError, match="twice") as e:
        load(path)
    assert e.value.member == yaml_member[0]


def _bomb_members(tmp_path: Path, size: int) -> list[tuple[str, bytes]]:
    """A valid manifest that declares a huge all-zero output member (a consistent bomb)."""
    members = good_members(tmp_path)
    manifest = json.loads(members[0][1])
    manifest["members"]["outputs/zzz.npy"] = {"sha256": "0" * 64, "bytes": size}
    text = (json.dumps(manifest, sort_keys=True, indent=1) + "\n").encode()
    return [
        ("MANIFEST.json", text),
        ("MANIFEST.sha256", f"{sha256(text)}  MANIFEST.json\n".encode()),
        *members[2:],
    ]


def _write_bomb(path: Path, head: list[tuple[str, bytes]], name: str, size: int) -> int:
    """gzip(tar(head + one member of `size` zero bytes)), streamed; returns the file size."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for n, d in head:
            info = tarfile.TarInfo(n)
            info.size = len(d)
            tar.addfile(info, io.BytesIO(d))
        info = tarfile.TarInfo(name)
        info.size = size
        tar.addfile(info)  # the header only; the zeros are streamed below
        prefix = buf.getvalue()[: tar.offset]
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip container
    zeros = bytes(1 << 20)
    with path.open("wb") as f:
        f.write(comp.compress(prefix))
        for _ in range(size // len(zeros)):
            f.write(comp.compress(zeros))
        f.write(comp.compress(bytes(1024)))  # end-of-archive blocks
        f.write(comp.flush())
        return f.tell()


def test_a_compression_bomb_is_stopped_early(tmp_path: Path) -> None:
    size = 256 * 2**20  # 256 MiB of zeros, about 250 KiB compressed
    head = _bomb_members(tmp_path, size)
    path = tmp_path / "bomb.gxa"
    compressed = _write_bomb(path, head, "outputs/zzz.npy", size)
    assert compressed < size // 500
    with pytest.raises(UnsafeArchiveError, match="compression bomb"):
        load(path)  # default limits
    # the mechanism: the stream is cut soon after the ratio floor, far before the member's end
    limits = ArchiveLimits(ratio_floor=8 * 2**20)
    with ArchiveReader(path, limits) as reader, pytest.raises(UnsafeArchiveError, match="bomb"):
        for _ in reader:
            pass
    assert reader.bytes_read < 16 * 2**20


def test_a_member_larger_than_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    size = 64 * 2**20
    path = tmp_path / "big.gxa"
    _write_bomb(path, _bomb_members(tmp_path, size), "outputs/zzz.npy", size)
    limits = ArchiveLimits(max_member_bytes=2**20)
    with (
        ArchiveReader(path, limits) as reader,
        pytest.raises(UnsafeArchiveError, match="max_member_bytes"),
    ):
        for _ in reader:
            pass
    assert reader.bytes_read < 2**20


def test_an_unlisted_or_missized_member_is_refused_before_its_data_is_read(tmp_path: Path) -> None:
    size = 64 * 2**20
    path = tmp_path / "unlisted.gxa"
    _write_bomb(path, good_members(tmp_path), "outputs/zzz.npy", size)  # not in the manifest
    with pytest.raises(ArtifactTamperedError, match="not listed") as e:
        load(path, limits=ArchiveLimits(ratio_floor=2**40))  # no ratio check: the listing decides
    assert e.value.member == "outputs/zzz.npy"
    head = _bomb_members(tmp_path, 100)  # declared 100 bytes, the header says 64 MiB
    path2 = tmp_path / "missized.gxa"
    _write_bomb(path2, head, "outputs/zzz.npy", size)
    with pytest.raises(ArtifactTamperedError, match="has 67108864 bytes"):
        load(path2, limits=ArchiveLimits(ratio_floor=2**40))


def test_member_count_and_total_size_limits(tmp_path: Path) -> None:
    members = good_members(tmp_path)
    with pytest.raises(UnsafeArchiveError, match="max_members"):
        load(build(tmp_path / "a.gxa", members), limits=ArchiveLimits(max_members=3))
    with pytest.raises(UnsafeArchiveError, match="max_total_bytes"):
        load(build(tmp_path / "b.gxa", members), limits=ArchiveLimits(max_total_bytes=4096))


def test_other_compressions_are_streamed_through_the_same_checks(tmp_path: Path) -> None:
    members = good_members(tmp_path)
    assert load(build(tmp_path / "ok.tar.xz", members, "xz")).rerun().status == "bit-exact"
    assert load(build(tmp_path / "ok.tar", members, "tar")).digest
    bad = build(
        tmp_path / "bad.tar.xz", [*members, special("inputs/s", tarfile.SYMTYPE, "/")], "xz"
    )
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        load(bad)


def test_a_truncated_archive_is_a_format_error(tmp_path: Path) -> None:
    path = build(tmp_path / "ok.gxa", good_members(tmp_path))
    data = path.read_bytes()
    cut = tmp_path / "cut.gxa"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises((ArtifactFormatError, ArtifactTamperedError)):
        load(cut)


@pytest.mark.parametrize(
    "name", ["a/../b", "./a", "a//b", "/abs", "C:/win", "a\\b", "", "x" * 300, "a/-", "a/.hidden"]
)
def test_member_names_must_be_plain(name: str) -> None:
    with pytest.raises(UnsafeArchiveError):
        check_member_name(name)


def test_plain_member_names_pass() -> None:
    for name in ("MANIFEST.json", "inputs/000.tif", "pipeline/params-0123456789abcdef.eqx"):
        check_member_name(name)
