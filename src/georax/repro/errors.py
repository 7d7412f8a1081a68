"""Errors of :mod:`georax.repro`: every failure to verify, open or rerun an artifact is typed."""

from __future__ import annotations

from georax.core.errors import GeoraxError

__all__ = [
    "ArtifactFormatError",
    "ArtifactTamperedError",
    "InputMismatchError",
    "ReproError",
    "UnsafeArchiveError",
]


class ReproError(GeoraxError, ValueError):
    """Base class of the reproducible-artifact errors."""


class ArtifactFormatError(ReproError):
    """The file is not a readable georax artifact (not a tar, truncated, malformed manifest)."""


class ArtifactTamperedError(ReproError):
    """A member of an artifact does not match what its manifest records.

    Attributes:
        member: the archive member that failed verification (e.g. ``"pipeline/pipeline.yaml"``).
    """

    def __init__(self, member: str, problem: str) -> None:
        self.member = member
        self.problem = problem
        super().__init__(f"artifact member {member!r}: {problem}")


class UnsafeArchiveError(ReproError):
    """The archive holds something no artifact may hold: a link, a device, a path escaping
    the archive, a member or a total size over the limits, a compression bomb.

    Attributes:
        member: the offending member name (``None`` when the problem is the stream as a whole).
    """

    def __init__(self, member: str | None, problem: str) -> None:
        self.member = member
        self.problem = problem
        where = f"member {member!r}" if member is not None else "archive"
        super().__init__(f"refusing {where}: {problem}")


class InputMismatchError(ReproError):
    """An input given or found at rerun time is not the one the artifact recorded.

    Attributes:
        name: the input's name in the artifact.
    """

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"input {name!r}: {problem}")
