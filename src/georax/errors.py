"""Public home of georax's error types (defined in :mod:`georax.core.errors`)."""

from georax.core.errors import *  # noqa: F403
from georax.core.errors import __all__ as __all__  # noqa: F401
