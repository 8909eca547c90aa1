"""Whether this command can ask its user something, and asking it, the way ``ssh`` does: on the controlling
terminal (``/dev/tty``), not on stdin or stdout, which may be pipes.

A process may prompt only when it has a controlling terminal and is in that terminal's foreground process
group: a job put in the background (``mrunner ... &``) that reads the terminal is stopped by the kernel
(SIGTTIN) and would hang there; cron, ``setsid``, ``nohup ... &`` and a launcher's background workers have no
terminal at all. Such a command must fail at once with a line saying how to log in instead.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence


def available() -> bool:
    """A terminal this process may read from now."""
    try:
        descriptor = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(descriptor) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(descriptor)


def ask(texts: Sequence[str], prompts: Sequence[tuple[str, bool]]) -> list[str]:
    """Show ``texts`` (a server's name and instructions), then ask each prompt; ``(prompt, echo)`` as SSH's
    keyboard-interactive gives them. A hidden answer is read without echo (``getpass`` uses the terminal)."""
    with open("/dev/tty", "w", encoding="utf-8") as tty:
        for text in texts:
            if text and text.strip():
                print(text.strip(), file=tty, flush=True)
    answers = []
    for prompt, echo in prompts:
        if echo:
            with open("/dev/tty", "r+", encoding="utf-8") as tty:
                tty.write(prompt)
                tty.flush()
                answers.append(tty.readline().rstrip("\n"))
        else:
            answers.append(getpass.getpass(prompt))
    return answers
