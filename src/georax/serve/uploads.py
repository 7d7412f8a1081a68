"""What an uploaded raster may be: TIFF bytes only.

GDAL picks a driver from a file's content, not its name, so an upload handed to it as
``upload.tif`` could be a VRT (XML) whose sources are this server's local files, or another
format that references files. Uploads are therefore checked for the TIFF signature before GDAL
sees them; a GeoTIFF or COG cannot reference local files.
"""

from __future__ import annotations

__all__ = ["TIFF_SIGNATURES", "is_tiff", "upload_problem"]

#: The first four bytes of a classic TIFF or a BigTIFF, little and big endian.
TIFF_SIGNATURES: frozenset[bytes] = frozenset({b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"})


def is_tiff(data: bytes) -> bool:
    """Whether `data` starts with a (Big)TIFF signature."""
    return data[:4] in TIFF_SIGNATURES


def upload_problem(data: bytes) -> str | None:
    """Why `data` is refused as an upload, or ``None`` when it may go to GDAL."""
    if is_tiff(data):
        return None
    return f"the upload is not a (Big)TIFF: it starts with {data[:8]!r}"
