"""The command ends without the interpreter's teardown, but only after everything a normal exit does."""

from __future__ import annotations

import subprocess
import sys

COMMAND = """
import atexit, sys
from mrunner import cli

def fake_main():
    import gc
    assert gc.get_threshold()[0] == cli.GC_THRESHOLD and gc.isenabled()
    atexit.register(lambda: print("handler of a library ran"))
    print("x" * 200_000, end="")  # more than a pipe holds: must be flushed, not lost
    return 3

cli.main = fake_main
sys.exit(cli.console())
"""


def test_console_collects_cycles_rarely_and_exits_with_mains_status_after_flushing_and_exit_handlers():
    done = subprocess.run([sys.executable, "-c", COMMAND], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stdout == "x" * 200_000 + "handler of a library ran\n"


def test_help_and_argparse_errors_keep_their_ordinary_exit(mrunner):
    assert mrunner("--help").returncode == 0
    refused = mrunner("status", "--no-such-option")
    assert refused.returncode == 2 and "unrecognized arguments" in refused.stderr
