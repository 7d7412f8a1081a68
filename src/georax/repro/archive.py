"""Deterministic tar archives, and a streaming reader that refuses hostile ones.

**Writing** (:func:`write_archive`): members in the order given (the artifact sorts them), each a
regular file with fixed metadata -- mtime :data:`ARCHIVE_MTIME`, mode ``0644``, uid/gid 0, empty
user and group names -- in the POSIX ustar format, optionally gzip-compressed with a zero gzip
timestamp and no file name in the gzip header. Nothing about the machine, the user or the clock
enters the bytes, so the same members give a byte-identical archive in any process.

**Reading** (:class:`ArchiveReader`): never ``extractall``. The file is streamed once, through
limits enforced *while* bytes are decompressed, so nothing is trusted before it is checked:

- compression is recognised by magic number (gzip, bzip2, xz, or a plain tar) and decompressed
  by the standard library behind a counting reader: the total decompressed size is capped
  (:attr:`ArchiveLimits.max_total_bytes`, and later the size the manifest declares), and past
  :attr:`ArchiveLimits.ratio_floor` bytes the decompressed/compressed ratio is capped too, so a
  compression bomb stops after a bounded amount of work and memory;
- each member must be a regular file (links, hard links, devices, FIFOs, sparse files are
  refused by type; directory entries, which tools such as ``tar -C dir .`` add, are skipped:
  nothing is ever created from them), have a plain relative name (no absolute path, no ``..``,
  no empty or dot components, a small character set; one leading ``./`` is tolerated) and a
  size within the limits; a name seen twice is refused (tar lets a later member silently
  shadow an earlier one);
- member data is read in chunks into memory, never onto the file system under a name taken
  from the archive.

- after the last member the stream is read to its end, so a compressed stream's own checksum
  (gzip CRC-32, xz CRC) is verified too.

Every refusal is an :class:`~georax.repro.errors.UnsafeArchiveError` naming the member and the
rule. A file that is not a tar at all is an :class:`~georax.repro.errors.ArtifactFormatError`;
a stream that breaks after it started (corrupted, truncated) is an
:class:`~georax.repro.errors.ArtifactTamperedError` naming the member being read.
"""

from __future__ import annotations

import bz2
import contextlib
import dataclasses
import gzip
import io
import lzma
import os
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self

from georax.core.errors import SerializationError
from georax.core.files import open_regular_file
from georax.io.raster import atomic_destination
from georax.repro.errors import ArtifactFormatError, ArtifactTamperedError, UnsafeArchiveError

__all__ = [
    "ARCHIVE_MTIME",
    "DEFAULT_ARCHIVE_LIMITS",
    "ArchiveLimits",
    "ArchiveReader",
    "check_member_name",
    "write_archive",
]

#: The modification time written for every member: 2000-01-01T00:00:00Z (a fixed, plausible
#: date; some tools warn about members dated 1970).
ARCHIVE_MTIME = 946_684_800
_MODE = 0o644
_CHUNK = 1 << 20
_NAME_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_MAX_NAME = 255

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)


@dataclasses.dataclass(frozen=True)
class ArchiveLimits:
    """Limits of :class:`ArchiveReader` (the artifact loader's defence against hostile files).

    **Arguments:**

    - `max_members`: members an archive may hold.
    - `max_member_bytes`: size of one member.
    - `max_total_bytes`: decompressed bytes read from the whole stream (headers included).
    - `max_ratio`: decompressed / compressed bytes, checked once more than `ratio_floor`
      decompressed bytes have been read. Deflate tops out near 1032:1 on runs of zeros, which is
      what a bomb is made of; real rasters and weights compress far less. :func:`write_archive`
      falls back to an uncompressed archive when its own output would exceed the default.
    - `ratio_floor`: decompressed bytes below which the ratio is not checked (a small,
      very compressible artifact is no threat).
    """

    max_members: int = 10_000
    max_member_bytes: int = 4 * 2**30
    max_total_bytes: int = 8 * 2**30
    max_ratio: int = 100
    ratio_floor: int = 64 * 2**20

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UnsafeArchiveError(
                    None, f"ArchiveLimits.{f.name}={value!r}: must be an int >= 1"
                )


#: The limits :func:`georax.repro.load` uses unless told otherwise.
DEFAULT_ARCHIVE_LIMITS = ArchiveLimits()


def check_member_name(name: str) -> None:
    """Refuse any member name that is not a plain relative path of safe components.

    **Raises:** :class:`UnsafeArchiveError` for an absolute path, a drive or backslash, a
    ``..``/``.``/empty component, a control or unusual character, or an over-long name.
    """
    if not name or len(name) > _MAX_NAME:
        raise UnsafeArchiveError(name, f"name must be 1..{_MAX_NAME} characters")
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        raise UnsafeArchiveError(name, "absolute path")
    parts = name.split("/")
    if any(p in ("..", ".", "") for p in parts):
        raise UnsafeArchiveError(name, "path traversal or empty component ('..', '.', '//')")
    for p in parts:
        if not _NAME_PART.fullmatch(p):
            raise UnsafeArchiveError(
                name, f"component {p!r} has characters outside [A-Za-z0-9._-] or starts oddly"
            )


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------
def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = ARCHIVE_MTIME
    info.mode = _MODE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def _write_tar(dest: BinaryIO, members: Sequence[tuple[str, bytes]]) -> None:
    with tarfile.open(fileobj=dest, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))


def _write_file(path: str, members: Sequence[tuple[str, bytes]], compress: bool) -> int:
    """Write the tar (gzipped or not) to ``path``, fsync it, return its size in bytes."""
    with open(path, "wb") as f:
        if compress:
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=6, mtime=0) as gz:
                _write_tar(gz, members)  # type: ignore[arg-type]
        else:
            _write_tar(f, members)
        f.flush()
        os.fsync(f.fileno())
        return f.tell()


def write_archive(
    path: str | os.PathLike[str],
    members: Sequence[tuple[str, bytes]],
    *,
    compress: bool = True,
    limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS,
) -> bool:
    """Write ``members`` as a deterministic tar (gzip-compressed if asked), atomically.

    **Arguments:**

    - `path`: the archive to write (replaced atomically if it exists).
    - `members`: ``(name, bytes)`` in archive order; names must pass
      :func:`check_member_name` and be unique.
    - `compress`: gzip the tar (level 6, zero timestamp, no embedded file name).
    - `limits`: if the compressed archive would be refused by these limits' ratio check
      (extremely compressible content, e.g. an all-NaN output), it is written uncompressed.

    **Returns:** whether the written archive is compressed.
    """
    seen: set[str] = set()
    for name, _ in members:
        check_member_name(name)
        if name in seen:
            raise UnsafeArchiveError(name, "duplicate member name")
        seen.add(name)
    raw = sum(512 + -(-len(d) // 512) * 512 for _, d in members) + 2 * 512
    with atomic_destination(os.fspath(path)) as tmp:
        written = _write_file(tmp, members, compress)
        if compress and raw > limits.ratio_floor and raw > limits.max_ratio * written:
            _write_file(tmp, members, False)
            compress = False
    return compress


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------
def _decompressor(kind: str, raw: BinaryIO) -> BinaryIO:
    """A streaming decompressor reading from ``raw`` (closed with the reader)."""
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if kind == "bzip2":
        return bz2.BZ2File(raw, mode="rb")  # type: ignore[return-value]
    return lzma.LZMAFile(raw, mode="rb")  # type: ignore[return-value]


class _Counting(io.RawIOBase):
    """A read-only view of a binary file that counts the bytes read from it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.raw.read(len(b))
        n = len(data)
        b[:n] = data
        self.count += n
        return n


class _Limited(io.RawIOBase):
    """The decompressed stream, refusing to yield more than the limits allow."""

    def __init__(
        self, inner: BinaryIO, compressed: _Counting | None, limits: ArchiveLimits
    ) -> None:
        self.inner = inner
        self.compressed = compressed
        self.limits = limits
        self.count = 0
        self.cap = limits.max_total_bytes
        self.cap_reason = f"ArchiveLimits.max_total_bytes={limits.max_total_bytes}"

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        want = min(len(b), self.cap - self.count + 1)
        data = self.inner.read(want)
        n = len(data)
        b[:n] = data
        self.count += n
        if self.count > self.cap:
            raise UnsafeArchiveError(
                None, f"decompressed stream exceeds {self.cap} bytes ({self.cap_reason})"
            )
        c = self.compressed
        lim = self.limits
        if c is not None and self.count > lim.ratio_floor and self.count > lim.max_ratio * c.count:
            raise UnsafeArchiveError(
                None,
                f"compression bomb: {self.count} bytes decompressed from {c.count} "
                f"(ratio above ArchiveLimits.max_ratio={lim.max_ratio})",
            )
        return n


def _normalise(name: str) -> str:
    """A member name as written by common tools: one leading ``./`` and a trailing ``/`` dropped
    (``tar -C dir -czf a.tar .`` writes ``./MANIFEST.json``). Anything else is checked as is."""
    if name in (".", "./"):
        return ""
    if name.startswith("./"):
        name = name[2:]
    return name[:-1] if name.endswith("/") else name


def _refuse_type(info: tarfile.TarInfo) -> None:
    if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        return
    kinds = {
        tarfile.SYMTYPE: "a symbolic link",
        tarfile.LNKTYPE: "a hard link",
        tarfile.CHRTYPE: "a character device",
        tarfile.BLKTYPE: "a block device",
        tarfile.FIFOTYPE: "a FIFO",
        tarfile.DIRTYPE: "a directory",
        tarfile.GNUTYPE_SPARSE: "a sparse file",
        tarfile.CONTTYPE: "a contiguous file",
    }
    what = kinds.get(info.type, f"member type {info.type!r}")
    target = f" -> {info.linkname!r}" if info.issym() or info.islnk() else ""
    raise UnsafeArchiveError(info.name, f"is {what}{target}; an artifact holds regular files only")


class ArchiveReader:
    """Stream the members of a (possibly compressed) tar file, refusing anything hostile.

    Use as a context manager and iterate: each item is ``(name, data)`` for one regular-file
    member, in archive order, checked as described in the module docstring. Call
    :meth:`expect_total` once the declared size of the rest is known (the artifact does so after
    reading its manifest) to tighten the cap on decompressed bytes.

    **Arguments:**

    - `path`: the archive.
    - `limits`: the :class:`ArchiveLimits`.
    """

    def __init__(
        self, path: str | os.PathLike[str], limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS
    ) -> None:
        self.path = Path(path)
        self.limits = limits
        self.compression: str | None = None
        self._file: BinaryIO | None = None
        self._stream: _Limited | None = None
        self._tar: tarfile.TarFile | None = None
        #: Called as ``accept(name, size)`` for each member after the safety checks and before
        #: its data is read; raise to refuse it (the artifact checks its manifest here).
        self.accept: Callable[[str, int], None] | None = None

    def __enter__(self) -> Self:
        try:  # a FIFO or a device is refused, never read (closed in __exit__)
            self._file = open_regular_file(self.path, "artifact")
        except SerializationError as e:
            raise ArtifactFormatError(f"cannot open {self.path}: {e}") from None
        head = self._file.read(8)
        self._file.seek(0)
        counting = _Counting(self._file)
        inner: BinaryIO = io.BufferedReader(counting)  # type: ignore[assignment]
        for magic, kind in _MAGIC:
            if head.startswith(magic):
                self.compression = kind
                inner = _decompressor(kind, inner)
                break
        self._stream = _Limited(inner, counting if self.compression else None, self.limits)
        try:
            self._tar = tarfile.open(fileobj=self._stream, mode="r|")  # type: ignore[call-overload]
        except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as e:
            self.__exit__(None, None, None)
            raise ArtifactFormatError(f"{self.path} is not a tar archive: {e}") from None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for closable in (self._tar, self._file):
            if closable is not None:
                # closing a refused (half-read, corrupt) stream must not mask the refusal
                with contextlib.suppress(Exception):
                    closable.close()
        self._tar = self._file = None

    @property
    def bytes_read(self) -> int:
        """Decompressed bytes read so far (what the limits are checked against)."""
        return 0 if self._stream is None else self._stream.count

    def expect_total(self, declared: int, members: int) -> None:
        """Cap the decompressed stream at ``declared`` member bytes plus tar overhead.

        **Arguments:**

        - `declared`: the sum of the sizes of all members still to come, as a manifest records.
        - `members`: how many of them.
        """
        assert self._stream is not None
        overhead = members * 1024 + 64 * 1024  # header + padding per member, end blocks, slack
        cap = self._stream.count + declared + overhead
        if cap < self._stream.cap:
            self._stream.cap = cap
            self._stream.cap_reason = "the sizes the manifest declares"

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        if self._tar is None:
            raise ArtifactFormatError("ArchiveReader must be used as a context manager")
        seen: set[str] = set()
        current: str | None = None
        try:
            for info in self._tar:
                name = _normalise(info.name)
                if info.type == tarfile.DIRTYPE:  # inert: nothing is ever extracted
                    if name:
                        check_member_name(name)
                    continue
                _refuse_type(info)
                check_member_name(name)
                if name in seen:
                    raise UnsafeArchiveError(name, "appears twice (a later copy would shadow)")
                seen.add(name)
                if len(seen) > self.limits.max_members:
                    raise UnsafeArchiveError(
                        name, f"more than ArchiveLimits.max_members={self.limits.max_members}"
                    )
                if info.size > self.limits.max_member_bytes:
                    raise UnsafeArchiveError(
                        name,
                        f"{info.size} bytes exceeds ArchiveLimits.max_member_bytes="
                        f"{self.limits.max_member_bytes}",
                    )
                if self.accept is not None:
                    self.accept(name, info.size)
                current = name
                data = self._read(info, name)
                current = None
                yield name, data
            current = "<end of archive>" if seen else None
            self._drain()  # reach the end of the compressed stream: its checksum is verified
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as e:
            if current is None and not seen:
                raise ArtifactFormatError(
                    f"{self.path} is not a readable tar archive: {e}"
                ) from None
            raise ArtifactTamperedError(
                current or "<archive stream>",
                f"the archive stream is corrupt or truncated here ({type(e).__name__}: {e})",
            ) from None

    def _drain(self) -> None:
        assert self._stream is not None
        while self._stream.read(_CHUNK):
            pass

    def _read(self, info: tarfile.TarInfo, name: str) -> bytes:
        assert self._tar is not None
        f = self._tar.extractfile(info)
        if f is None:  # pragma: no cover - regular files always have data
            raise ArtifactTamperedError(name, "has no data")
        out = bytearray()
        while len(out) < info.size:
            chunk = f.read(min(_CHUNK, info.size - len(out)))
            if not chunk:
                raise ArtifactTamperedError(name, f"is truncated ({len(out)} of {info.size} bytes)")
            out += chunk
        return bytes(out)
