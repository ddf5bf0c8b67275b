"""``python -m voxgate`` is the ``voxgate`` command."""

import sys

from voxgate.cli import main

sys.exit(main())
