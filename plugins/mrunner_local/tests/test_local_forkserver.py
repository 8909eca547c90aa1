"""The local backend's attempt wrappers come from its fork server, not from the supervisor (that holds Hydra
and the records): their pids, handshake, exit statuses and a kill as before, and the server's end."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from mrunner_local import wrapper
from mrunner_local.wrapper import Wrapper

from mrunner.attempt import UNSTARTED, command_line
from mrunner.testing import wait_for


def _started(tmp_path: Path, name: str) -> tuple[Wrapper, Path]:
    log = tmp_path / f"{name}.log"
    line = command_line(sys.executable, str(tmp_path), ["true"], grace=1.0, handshake=True)
    with open(log, "wb") as output:
        return Wrapper(line, str(tmp_path), {"PATH": os.environ["PATH"]}, output.fileno()), log


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stream:
        return int(stream.read().rsplit(")", 1)[1].split()[1])


def test_wrappers_are_forked_by_the_server_and_report_their_ends(tmp_path: Path) -> None:
    unstarted, log = _started(tmp_path, "unstarted")
    killed, _ = _started(tmp_path, "killed")
    server = wrapper._server().process.pid
    assert _parent(unstarted.pid) == server != os.getpid()
    wait_for(lambda: os.getsid(unstarted.pid) == unstarted.pid, what="a session of its own, as before")
    unstarted.abandon()
    assert unstarted.wait() == UNSTARTED
    assert "went away before it was recorded" in log.read_text()
    os.kill(killed.pid, signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    killed.abandon()


def test_a_killed_server_is_replaced_and_its_wrappers_still_end(tmp_path: Path) -> None:
    orphan, _ = _started(tmp_path, "orphan")
    old = wrapper._server()
    os.kill(old.process.pid, signal.SIGKILL)
    wait_for(lambda: old.gone, what="the fork server's end to be seen")
    orphan.abandon()  # it exits without its server: its end is told by /proc
    assert orphan.wait() == -signal.SIGKILL
    following, _ = _started(tmp_path, "following")
    assert wrapper._server() is not old
    following.abandon()
    assert following.wait() == UNSTARTED


def test_the_server_ends_with_its_supervisor(tmp_path: Path) -> None:
    unstarted, _ = _started(tmp_path, "unstarted")
    server = wrapper._server()
    server.close()
    assert server.process.returncode == 0
    unstarted.abandon()
    assert unstarted.wait() == -signal.SIGKILL  # its end is told by /proc alone
    assert not wrapper._alive(unstarted.pid)
