"""georax.repro: reproducible, verifiable pipeline artifacts (the seeds' case 9).

``freeze(pipeline, inputs=..., metadata=...)`` runs the pipeline and records everything needed
to check the result later; :meth:`Artifact.save` writes it as a deterministic archive;
``load(path)`` verifies every member and rebuilds the pipeline in the sandbox;
:meth:`Artifact.rerun` reruns it and says whether the outputs are bit-exact, within tolerance or
different, and what changed in the environment. See :mod:`georax.repro.artifact`.
"""

from georax.repro.archive import DEFAULT_ARCHIVE_LIMITS, ArchiveLimits
from georax.repro.artifact import Artifact, OutputCheck, RerunReport, freeze, load
from georax.repro.environment import EnvironmentDrift, capture_environment, environment_drift
from georax.repro.errors import (
    ArtifactFormatError,
    ArtifactTamperedError,
    InputMismatchError,
    ReproError,
    UnsafeArchiveError,
)

__all__ = [
    "DEFAULT_ARCHIVE_LIMITS",
    "ArchiveLimits",
    "Artifact",
    "ArtifactFormatError",
    "ArtifactTamperedError",
    "EnvironmentDrift",
    "InputMismatchError",
    "OutputCheck",
    "RerunReport",
    "ReproError",
    "UnsafeArchiveError",
    "capture_environment",
    "environment_drift",
    "freeze",
    "load",
]
