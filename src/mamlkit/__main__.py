"""``python -m mamlkit``: the same as the ``mamlkit`` console script."""

import sys

from mamlkit.cli import main

sys.exit(main())
