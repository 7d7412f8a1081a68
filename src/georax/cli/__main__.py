"""``python -m georax.cli``: the same as the ``georax`` console script."""

import sys

from georax.cli import main

sys.exit(main())
