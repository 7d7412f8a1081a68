"""Public home of georax's error types (defined in :mod:`georax.core.errors`)."""

from georax.core.errors import *
from georax.core.errors import __all__ as __all__
