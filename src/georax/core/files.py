"""Reading documents and params files from disk without trusting what the path points to.

An upload directory is attacker-shaped: ``pipeline.yaml`` may be a FIFO (an ``open`` blocks
forever), a symlink to ``/dev/zero`` (``read()`` never ends and exhausts memory) or a 1 GB file
behind a 64 KiB document limit. :func:`read_regular_file` opens without blocking, refuses anything
that is not a regular file (checked on the opened descriptor, so a path swapped after the check
is still refused), and reads at most ``limit + 1`` bytes whatever the file claims.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

import numpy as np

from georax.core.errors import SerializationError
from georax.core.sandbox import SandboxLimitError

__all__ = ["check_npy_header", "open_regular_file", "read_regular_file"]

_CHUNK = 1 << 20


def open_regular_file(path: str | os.PathLike[str], what: str) -> BinaryIO:
    """``path`` opened for binary reading, refused unless it is a regular file.

    The file is opened without blocking (a FIFO without a writer fails at once instead of
    hanging) and checked on the opened descriptor, so a path swapped after a check is still
    refused; the returned file object reads normally (blocking).

    **Arguments:**

    - `path`: the file (symlinks are followed; what they point to must be a regular file).
    - `what`: what the file is, for messages (``"artifact"``, ``"input file"``).

    **Returns:** an open binary file object; the caller closes it.

    **Raises:** :class:`~georax.errors.SerializationError` naming the file when it cannot be
    opened or is not a regular file (FIFO, device, directory, socket).
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.EISDIR):  # a FIFO without writer / a directory
            raise SerializationError(f"{what} {p} is not a regular file") from None
        raise SerializationError(f"cannot read {what} {p}: {e.strerror or e}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise SerializationError(
                f"{what} {p} is not a regular file (it is a {_kind(mode)}); "
                "only regular files are read"
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: str | os.PathLike[str], limit: int, what: str) -> bytes:
    """The bytes of ``path``, refused unless it is a regular file of at most ``limit`` bytes.

    **Arguments:**

    - `path`: the file (symlinks are followed; what they point to must be a regular file).
    - `limit`: the most bytes accepted.
    - `what`: what the file is, for messages (``"pipeline document"``, ``"params file"``).

    **Returns:** the file's bytes.

    **Raises:** :class:`~georax.errors.SerializationError` naming the file when it cannot be
    opened or is not a regular file (FIFO, device, directory, socket);
    :class:`~georax.errors.SandboxLimitError` (``max_bytes``) when it holds more than
    ``limit`` bytes (found without reading more than ``limit + 1``).
    """
    p = Path(path)
    with open_regular_file(p, what) as f:
        try:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise SandboxLimitError("max_bytes", size, limit, f"{what} {p}")
            chunks: list[bytes] = []
            total = 0
            while total <= limit:  # at most limit + 1 bytes, whatever the file claims
                chunk = f.read(min(_CHUNK, limit + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
        except OSError as e:
            raise SerializationError(f"cannot read {what} {p}: {e.strerror or e}") from None
    if total > limit:  # the file grew after fstat
        raise SandboxLimitError("max_bytes", total, limit, f"{what} {p}")
    return b"".join(chunks)


def check_npy_header(f: BinaryIO, what: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a ``.npy`` record declares, refused if its data cannot be there.

    NumPy allocates the array its header declares *before* reading the data, so a 100-byte
    record whose header says ``shape: (60000, 60000)`` asks for 13 GiB. This reads the header
    at ``f``'s position (the position is restored) and refuses a record whose data would need
    more bytes than remain in ``f``, or that holds Python objects, before anything is allocated.

    **Arguments:**

    - `f`: a seekable binary stream positioned at the record's magic string.
    - `what`: what the record is, for messages.

    **Returns:** ``(shape, dtype)`` as declared.

    **Raises:** :class:`~georax.errors.SerializationError` naming `what` and the problem.
    """
    start = f.tell()
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
        data_at = f.tell()
        available = f.seek(0, os.SEEK_END) - data_at
    except (ValueError, OSError, EOFError, SyntaxError) as e:
        raise SerializationError(f"{what}: not a valid .npy record: {e}") from None
    finally:
        f.seek(start)
    if dtype.hasobject:
        raise SerializationError(f"{what}: .npy record holds Python objects ({dtype}); refused")
    needed = dtype.itemsize
    for n in shape:
        needed *= n
    if needed > available:
        raise SerializationError(
            f"{what}: .npy header declares {dtype}{list(shape)} ({needed} bytes) but only "
            f"{available} bytes of data follow it"
        )
    return tuple(shape), dtype


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"
