"""``python -m mrunner`` is the ``mrunner`` command (Ctrl-C while it starts ends quietly from here on:
``mrunner_entry``)."""

import sys

from mrunner_entry import console

sys.exit(console())
