"""File-system discipline of a run folder: one live run at a time, atomic files, no stale temps.

- :class:`RunLock`: an exclusive ``flock`` on ``.georax-run.lock`` in the output folder. The
  kernel drops it when the holding process dies, even by ``kill -9``, so a crashed run never
  blocks the next one, while two live runs on one folder are refused.
- :func:`clean_stale_temps`: while holding the lock, every hidden ``.*.tmp*`` file in the folder
  belongs to a writer of a run that is no longer alive (GDAL's temporary COGs and overviews,
  half-written manifests and tables), so it is removed before the run starts.
- :func:`atomic_write`: write to a hidden temporary file in the destination's folder, then
  :func:`os.replace` it onto the destination -- readers see the old file or the new one.
- :func:`sha256_file`: the digest the manifest records for every output.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from georax.run.errors import RunError, RunLockedError

__all__ = ["LOCK_FILE", "RunLock", "atomic_write", "clean_stale_temps", "sha256_file"]

LOCK_FILE = ".georax-run.lock"
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def temp_name(path: str | os.PathLike[str]) -> str:
    """A hidden temporary path next to ``path`` (``.name.<hex>.tmp``)."""
    p = Path(path)
    return str(p.with_name(f".{p.name}.{uuid.uuid4().hex[:12]}.tmp"))


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], object]) -> str:
    """Call ``write(tmp)`` to fill a temporary file, then move it onto ``path`` atomically.

    **Returns:** ``path`` as a string. On any failure the temporary file is removed and the
    destination is untouched.
    """
    tmp = temp_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    return os.fspath(path)


def is_temp(name: str) -> bool:
    """Whether a file name is one of the hidden temporaries georax writers create."""
    return name.startswith(".") and ".tmp" in name and name != LOCK_FILE


def clean_stale_temps(folder: str | os.PathLike[str]) -> list[str]:
    """Remove hidden temporary files left in ``folder`` by writers that died.

    Call only while holding the folder's :class:`RunLock` (then no live writer owns them).

    **Returns:** the removed paths.
    """
    removed = []
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False) and is_temp(entry.name):
            with contextlib.suppress(FileNotFoundError):
                os.remove(entry.path)
                removed.append(entry.path)
    return removed


class RunLock:
    """Exclusive, crash-safe ownership of a run folder (a context manager).

    **Raises:** :class:`~georax.run.errors.RunLockedError` when another live process holds it.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = os.path.join(os.fspath(folder), LOCK_FILE)
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunError(f"{self.path}: cannot create the run lock: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(
                f"{os.path.dirname(self.path)}: another georax run is using this output folder"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@contextlib.contextmanager
def locked_folder(folder: str | os.PathLike[str]) -> Iterator[list[str]]:
    """Create ``folder``, take its :class:`RunLock` and clean stale temporaries.

    **Yields:** the temporary files that were removed.
    """
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise RunError(f"{folder}: cannot create the output folder: {e.strerror or e}") from None
    if not os.path.isdir(folder):
        raise RunError(f"{folder}: is not a folder")
    with RunLock(folder):
        yield clean_stale_temps(folder)
