"""Every error type georax raises on purpose, in one place.

The base classes live in :mod:`georax.core.errors`; errors that belong to one subsystem are defined
next to it and re-exported here so ``except gx.errors.X`` works for all of them. A test walks every
subclass of :class:`GeoraxError` defined anywhere in georax and requires it here, so a new error
type cannot be forgotten.
"""

from georax.array.qc import QCError
from georax.core.config import MissingVariableError, ParamsRequiredError
from georax.core.errors import *
from georax.core.errors import __all__ as _core_errors
from georax.core.params import ParamsIntegrityError
from georax.core.sandbox import MalformedYAMLError, SandboxLimitError, UnsafeYAMLError
from georax.diff.errors import ABMismatchError, DiffError, GateFailedError
from georax.geo.errors import FormulaError
from georax.geo.resample import NoOverlapError
from georax.io.errors import (
    BandIndexError,
    CorruptRasterError,
    CRSMismatchError,
    RasterDTypeError,
    RasterNotFoundError,
    RasterReadError,
    RasterWriteError,
    ReadBudgetExceededError,
    WindowError,
)
from georax.repro.errors import (
    ArtifactFormatError,
    ArtifactTamperedError,
    InputMismatchError,
    ReproError,
    UnsafeArchiveError,
)
from georax.tensor.geotensor import GeoTensorRequiredError
from georax.tensor.grid import MissingGeoreferenceError

# Errors of the layers that ``import georax`` loads on first use (catalog, run): resolved lazily
# so that importing this module does not import geopandas and pyarrow.
_LAZY = {
    **dict.fromkeys(
        (
            "CatalogError",
            "CatalogFormatError",
            "CatalogNotFoundError",
            "CatalogQueryError",
            "EmptyQueryError",
            "SliceError",
            "SliceTooLargeError",
        ),
        "georax.catalog.errors",
    ),
    **dict.fromkeys(
        (
            "ExecutorError",
            "FailureRateExceededError",
            "ManifestError",
            "RowFailedError",
            "RunError",
            "RunLockedError",
        ),
        "georax.run.errors",
    ),
}


def __getattr__(name: str) -> type[Exception]:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'georax.errors' has no attribute {name!r}")


__all__ = [
    *_core_errors,
    *_LAZY,
    "ABMismatchError",
    "ArtifactFormatError",
    "ArtifactTamperedError",
    "BandIndexError",
    "CRSMismatchError",
    "CorruptRasterError",
    "DiffError",
    "FormulaError",
    "GateFailedError",
    "GeoTensorRequiredError",
    "InputMismatchError",
    "MalformedYAMLError",
    "MissingGeoreferenceError",
    "MissingVariableError",
    "NoOverlapError",
    "ParamsIntegrityError",
    "ParamsRequiredError",
    "QCError",
    "RasterDTypeError",
    "RasterNotFoundError",
    "RasterReadError",
    "RasterWriteError",
    "ReadBudgetExceededError",
    "ReproError",
    "SandboxLimitError",
    "UnsafeArchiveError",
    "UnsafeYAMLError",
    "WindowError",
]
