"""Files on the host side of :mod:`georax.io`: what may be opened, and how outputs land.

Reading: :func:`require_readable` refuses, *before* GDAL opens anything, a path that is not a
regular file -- a FIFO (opening it blocks until a writer appears), a character device
(``/dev/zero`` never ends), a directory, a symlink to any of those -- and the same for the
side-car files GDAL would open next to it (``.aux.xml``, ``.ovr``, ``.msk``, world files). GDAL
only ever reads the parts of a regular file it needs, never the whole file.

Writing: :func:`atomic_destination` stages every output under a temporary name in the
destination's directory and renames it over the destination only when complete, so a crash,
an exception or ``kill -9`` never leaves a half-written file under the final name. Temporary
names carry the writer's pid and a random token, ``.<name>.<pid>-<token>.tmp`` (plus any file
GDAL derives from it, such as ``.tmp.ovr.tmp``), next to a ``.<name>.<pid>-<token>.lock`` that
the writer holds an exclusive :func:`fcntl.flock` on while it works. The next write to the same
destination removes the temporaries of writers whose lock is no longer held (dead ones) and
leaves those of live writers alone; the lock (unlike a pid check) also holds across pid reuse
and containers sharing a volume.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import uuid
from collections.abc import Iterator
from typing import Any
from xml.etree import ElementTree

from georax.io.errors import RasterNotFoundError, RasterReadError, RasterWriteError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, so stale temporaries are kept
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "as_path",
    "atomic_destination",
    "is_local",
    "remove_stale_temporaries",
    "require_readable",
]

PathLike = str | os.PathLike[str]

_SIDECAR = ".aux.xml"
_VRT_MAX_BYTES = 16 * 2**20  # a VRT document read to check its sources
_VRT_MAX_DEPTH = 8
# GDAL virtual file systems whose path continues with a local file (archives, sub-files).
_LOCAL_CHAIN = re.compile(r"^/vsi(zip|gzip|tar|7z|rar|subfile|cached|sparse)/")


def as_path(path: Any, error: type[OSError], who: str) -> str:
    """``path`` as a ``str``, or `error` naming what was passed instead.

    **Arguments:**

    - `path`: a ``str`` or :class:`os.PathLike`.
    - `error`: the typed error class to raise (a read or a write error).
    - `who`: the calling function, for the message.
    """
    try:
        p = os.fspath(path)
    except TypeError:
        raise error(
            f"{who}: path must be a str or os.PathLike, got {type(path).__name__}"
        ) from None
    if not isinstance(p, str):
        raise error(f"{who}: path must be a str (not bytes), got {p!r}")
    if "\0" in p:
        raise error(f"{who}: path {p!r} contains a NUL byte")
    return p


def is_local(path: str) -> bool:
    """Whether `path` names a local file (not a URL nor a GDAL ``/vsi...`` path)."""
    return "://" not in path and not path.startswith("/vsi")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _require_regular(p: str, shown: str) -> None:
    try:
        mode = os.stat(p).st_mode  # follows symlinks: a link to /dev/zero is a device
    except FileNotFoundError:
        raise RasterNotFoundError(f"{shown}: no such file") from None
    except OSError as e:
        raise RasterReadError(f"{shown}: cannot stat: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        raise RasterReadError(f"{shown}: is {_kind(mode)}, not a regular raster file")


def _local_part(p: str) -> str | None:
    """The local file a ``/vsizip/``-style chain reads from (its longest existing prefix)."""
    while True:
        m = _LOCAL_CHAIN.match(p)
        if m is None:
            break
        p = p[m.end() - 1 :]
        if m.group(1) == "subfile":  # /vsisubfile/<offset>_<size>,<path>
            p = p.partition(",")[2]
    if not p.startswith("/") or p.startswith("/vsi"):
        return None
    while p and p != "/" and not os.path.lexists(p):
        p = os.path.dirname(p)
    return p if p and p != "/" else None


def _check_sidecars(p: str) -> None:
    directory, name = os.path.split(os.path.abspath(p))
    stem = os.path.splitext(name)[0]
    prefixes = (name + ".", stem + ".")
    try:
        siblings = os.listdir(directory)
    except OSError:
        return  # GDAL cannot list it either, so it will not open side-cars from it
    for sibling in siblings:
        if sibling != name and sibling.startswith(prefixes):
            try:
                mode = os.stat(os.path.join(directory, sibling)).st_mode
            except OSError:  # a dangling link: GDAL cannot open it either
                continue
            if not stat.S_ISREG(mode):
                raise RasterReadError(
                    f"{p}: side-car {sibling!r} (which GDAL would open) is {_kind(mode)}, "
                    "not a regular file"
                )


def require_readable(p: str) -> None:
    """Refuse anything but a regular file (and regular side-cars) before GDAL opens `p`.

    Remote paths (``https://``, ``/vsicurl/``, ``/vsis3/``...) are left to GDAL; a ``/vsizip/``,
    ``/vsigzip/``, ``/vsitar/`` or ``/vsisubfile/`` chain has its local file checked.
    ``/vsistdin/`` is refused: it reads standard input to its end.

    **Raises:** :class:`~georax.io.errors.RasterNotFoundError`,
    :class:`~georax.io.errors.RasterReadError` naming the path and what it is.
    """
    if p.startswith("/vsistdin"):
        raise RasterReadError(f"{p}: reading standard input is not supported")
    if is_local(p):
        _require_regular(p, p)
        _check_sidecars(p)
        _check_vrt_sources(p, p, 0)
        return
    local = _local_part(p)
    if local is not None:
        _require_regular(local, f"{p} (local file {local})")


def _check_vrt_sources(p: str, shown: str, depth: int) -> None:
    """A local VRT's source files must be regular files too (GDAL opens them, a FIFO blocks).

    A VRT is an XML file naming other files (``<SourceFilename>``, in simple, complex and raw
    bands and overviews); GDAL opens them with a blocking ``open``. Sources that are VRTs are
    checked in turn, up to a small depth.
    """
    try:
        with open(p, "rb") as f:
            head = f.read(1024)  # a raster's first bytes: only a VRT is read further
            if not head.lstrip().startswith(b"<VRTDataset"):
                return
            head += f.read(_VRT_MAX_BYTES + 1 - len(head))
    except OSError:
        return  # GDAL cannot read it either and says so
    if depth >= _VRT_MAX_DEPTH or len(head) > _VRT_MAX_BYTES:
        raise RasterReadError(
            f"{shown}: VRT nested deeper than {_VRT_MAX_DEPTH} or larger than {_VRT_MAX_BYTES} "
            "bytes; refused"
        )
    try:
        root = ElementTree.fromstring(head)
    except ElementTree.ParseError as e:
        raise RasterReadError(f"{shown}: not a readable VRT: {e}") from None
    base = os.path.dirname(os.path.abspath(p))
    for element in root.iter("SourceFilename"):
        name = (element.text or "").strip()
        relative = element.get("relativeToVRT", element.get("relativetoVRT", "0")) == "1"
        source = os.path.join(base, name) if relative and is_local(name) else name
        where = f"{shown} (VRT source {name!r})"
        if source.startswith("/vsistdin"):
            raise RasterReadError(f"{where}: reading standard input is not supported")
        local = source if is_local(source) else _local_part(source)
        if local is not None and os.path.lexists(local):
            _require_regular(local, where)
            _check_vrt_sources(local, where, depth + 1)


# ----------------------------------------------------------------------------- writing
def _temp_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(name)}\.(\d+-[0-9a-f]{{12}})\.(lock|tmp.*)$")


def _holder_is_alive(lock_path: str) -> bool:
    """Whether some process holds the flock on `lock_path` (False once its holder died)."""
    if fcntl is None:  # pragma: no cover - cannot tell: assume alive, keep its files
        return True
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by a live writer (or no locks on this file system: keep its files)
        return True
    finally:
        os.close(fd)  # releases our probe lock, if we got it
    return False


def remove_stale_temporaries(path: str) -> list[str]:
    """Remove the temporaries dead writers left next to `path`; keep live writers' ones.

    **Arguments:**

    - `path`: a destination written through :func:`atomic_destination`.

    **Returns:** the names removed.
    """
    directory, name = os.path.split(os.path.abspath(path))
    pattern = _temp_pattern(name)
    by_token: dict[str, list[str]] = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir(directory):
            m = pattern.match(entry)
            if m is not None:
                by_token.setdefault(m.group(1), []).append(entry)
    removed = []
    for token, entries in by_token.items():
        lock = os.path.join(directory, f".{name}.{token}.lock")
        if _holder_is_alive(lock):
            continue
        # temporaries first, the lock last: a temporary never exists without its lock
        for entry in sorted(entries, key=lambda e: e.endswith(".lock")):
            try:
                os.remove(os.path.join(directory, entry))
            except OSError:  # gone already, or not ours to remove (a directory): leave it
                continue
            removed.append(entry)
    return removed


def _fsync(path: str, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
        # some file systems refuse fsync on a directory; the rename is then as durable as it gets
    finally:
        os.close(fd)


def _check_destination(p: str, overwrite: bool) -> str:
    directory, name = os.path.split(os.path.abspath(p))
    if not name:
        raise RasterWriteError(f"{p}: not a file name")
    if not os.path.isdir(directory):
        raise RasterWriteError(f"{p}: directory {directory} does not exist")
    if os.path.lexists(p):
        if not overwrite:
            raise RasterWriteError(f"{p}: exists and overwrite=False")
        mode = os.stat(p).st_mode if os.path.exists(p) else stat.S_IFLNK
        if stat.S_ISDIR(mode):
            raise RasterWriteError(f"{p}: is a directory; give a file path inside it")
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            raise RasterWriteError(f"{p}: exists and is {_kind(mode)}, not a regular file")
    return directory


def _remove_prefixed(directory: str, prefix: str) -> None:
    with contextlib.suppress(OSError):
        for entry in os.listdir(directory):
            if entry.startswith(prefix):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(directory, entry))


def _commit(tmp: str, p: str, directory: str, durable: bool) -> None:
    """Move the finished temporary (and its side-car, or the lack of one) over `p`."""
    if not os.path.isfile(tmp):
        raise RasterWriteError(f"{p}: the writer produced no file")
    new_sidecar = os.path.exists(tmp + _SIDECAR)
    if durable:
        _fsync(tmp)
        if new_sidecar:
            _fsync(tmp + _SIDECAR)
    # A stale side-car must not describe the new file: remove it first, so a crash in between
    # leaves the new file without a side-car rather than with a wrong one.
    with contextlib.suppress(FileNotFoundError):
        os.remove(p + _SIDECAR)
    os.replace(tmp, p)
    if new_sidecar:
        os.replace(tmp + _SIDECAR, p + _SIDECAR)
    if durable:
        _fsync(directory, directory=True)


@contextlib.contextmanager
def atomic_destination(
    path: PathLike, overwrite: bool = True, *, durable: bool = True
) -> Iterator[str]:
    """Yield a temporary path next to `path`; on success it replaces `path` atomically.

    Every georax raster writer goes through this. On entry, temporaries that dead writers left
    for the same destination are removed (:func:`remove_stale_temporaries`). The caller writes
    the file at the yielded path; further scratch files it names ``<yielded path>.<suffix>`` are
    removed with it. On success the file (fsynced when `durable`) replaces `path`, its GDAL
    ``.aux.xml`` side-car moves with it (an old side-car of `path` is removed when the new file
    has none), and the directory is fsynced. On failure `path` is untouched and every temporary
    is removed.

    **Arguments:**

    - `path`: the destination file.
    - `overwrite`: replace an existing file (default) or refuse.
    - `durable`: fsync the file and the directory, so the new content survives a power loss
      once this returns.

    **Yields:** the temporary path to write.

    **Raises:** :class:`~georax.io.errors.RasterWriteError` for a missing directory, a
    destination that is a directory or a special file, an existing file with
    ``overwrite=False``, or an OS error while committing.
    """
    p = as_path(path, RasterWriteError, "atomic_destination")
    directory = _check_destination(p, overwrite)
    name = os.path.basename(os.path.abspath(p))
    remove_stale_temporaries(p)
    stem = os.path.join(directory, f".{name}.{os.getpid()}-{uuid.uuid4().hex[:12]}")
    try:
        lock_fd = os.open(stem + ".lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as e:
        raise RasterWriteError(f"{p}: cannot create files in {directory}: {e.strerror}") from e
    tmp = stem + ".tmp"
    try:
        if fcntl is not None:
            # Without locks on this file system the probe fails too and nothing is cleaned.
            with contextlib.suppress(OSError):
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield tmp
        try:
            _commit(tmp, p, directory, durable)
        except OSError as e:
            if isinstance(e, RasterWriteError):
                raise
            raise RasterWriteError(f"{p}: could not move the finished file into place: {e}") from e
    finally:
        _remove_prefixed(directory, os.path.basename(tmp))
        with contextlib.suppress(FileNotFoundError):
            os.remove(stem + ".lock")
        os.close(lock_fd)
