"""``python -m service`` is the ``voxgate`` command."""

import sys

from .cli import main

sys.exit(main())
