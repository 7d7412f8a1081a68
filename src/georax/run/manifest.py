"""The run manifest: one JSON line per finished row, appended as rows finish.

``manifest.jsonl`` in the output folder starts with a header line and then holds one record per
row outcome::

    {"georax": "georax.run-manifest/1"}
    {"row": "scene_000", "status": "done", "pipeline_digest": "...", "config_hash": "...",
     "input_digest": "<GeoSlice.hash>", "writer": "cog", "output": "scene_000.tif",
     "output_digest": "<sha256 of the file>", "output_bytes": 123, "stats": {...},
     "error_type": null, "error": null, "seconds": 0.2, "worker": "host:pid", "finished": "..."}

Appending is crash-safe: each record is one ``write`` of one line on a file opened in append
mode, so a ``kill -9`` leaves at most one truncated last line, which the reader ignores. The
driver process is the only writer (workers return their records). When a run starts and when it
ends the file is *compacted*: rewritten atomically with only the latest record of each row, so
the manifest always agrees with the outputs on disk.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from georax.run.errors import ManifestError
from georax.run.files import atomic_write

__all__ = ["MANIFEST_FILE", "MANIFEST_FORMAT", "Manifest"]

MANIFEST_FILE = "manifest.jsonl"
MANIFEST_FORMAT = "georax.run-manifest/1"
_HEADER = {"georax": MANIFEST_FORMAT}


def _line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n"


class Manifest:
    """The records of one output folder, latest per row.

    **Arguments:**

    - `path`: the ``manifest.jsonl`` file (it need not exist yet).

    Attributes: ``records`` (``{row id: latest record}``), ``ignored_lines`` (unreadable lines
    skipped while reading: a truncated last line after a crash).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.records: dict[str, dict[str, Any]] = {}
        self.ignored_lines = 0
        if os.path.exists(self.path):
            self._read()

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                lines = f.read().split(b"\n")
        except OSError as e:
            raise ManifestError(f"{self.path}: cannot read: {e.strerror or e}") from None
        parsed: list[Any] = []
        for raw in lines:
            if not raw.strip():
                continue
            try:
                parsed.append(json.loads(raw))
            except (json.JSONDecodeError, UnicodeDecodeError):
                self.ignored_lines += 1
        if not parsed:
            return
        if parsed[0] != _HEADER:
            raise ManifestError(
                f"{self.path}: not a georax run manifest (first line {parsed[0]!r}); use another "
                "output folder"
            )
        for record in parsed[1:]:
            if isinstance(record, dict) and isinstance(record.get("row"), str):
                self.records[record["row"]] = record
            else:
                self.ignored_lines += 1

    def __len__(self) -> int:
        return len(self.records)

    def get(self, row: str) -> dict[str, Any] | None:
        """The latest record of `row`, or None."""
        return self.records.get(row)

    def append(self, record: Mapping[str, Any]) -> None:
        """Add a record (one line, appended; crash-safe) and make it the row's latest."""
        line = _line(record).encode("utf-8")
        new = not os.path.exists(self.path)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (_line(_HEADER).encode() if new else b"") + line)
            finally:
                os.close(fd)
        except OSError as e:
            raise ManifestError(f"{self.path}: cannot append: {e.strerror or e}") from None
        self.records[str(record["row"])] = dict(record)

    def compact(self, order: Iterable[str] | None = None) -> None:
        """Rewrite the file atomically with the header and each row's latest record.

        **Arguments:**

        - `order`: row ids to write first, in this order (the catalog's); the remaining rows
          follow sorted by id.
        """
        first = [r for r in (order or ()) if r in self.records]
        rest = sorted(set(self.records) - set(first))
        text = _line(_HEADER) + "".join(_line(self.records[r]) for r in [*first, *rest])

        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())

        try:
            atomic_write(self.path, write)
        except OSError as e:
            raise ManifestError(f"{self.path}: cannot rewrite: {e.strerror or e}") from None
        self.ignored_lines = 0
