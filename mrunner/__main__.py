"""``python -m mrunner`` is the ``mrunner`` command."""

import sys

from mrunner.cli import console

sys.exit(console())
