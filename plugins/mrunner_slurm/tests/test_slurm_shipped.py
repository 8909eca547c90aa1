"""The helper kept compiled on the login node (mrunner_slurm.shipped), against the loopback cluster.

Each test ships its own variant of the helper (a unique comment, so a unique digest), so that the compiled files
it looks at are its own even while other tests use the cluster's cache folder."""

from __future__ import annotations

import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from mrunner_slurm import remote, shipped, transport
from mrunner_slurm.transport import Connection

HELPER = Path(remote.__file__).with_name("remote_helper.py").read_bytes()
MAIN = b'if __name__ == "__main__"'


def variant(extra: bytes = b"") -> shipped.Shipped:
    """The helper with ``extra`` code placed before its entry point, under a digest no other test uses."""
    head, _, tail = HELPER.partition(MAIN)
    return shipped.of_source("mrunner-slurm-helper", head + extra + b"# %s\n" % uuid.uuid4().hex.encode() + MAIN + tail)


@pytest.fixture
def connection(slurm_service: dict, mrunner_home: Path):
    context = {"slurm_url": slurm_service["alias"], "ssh_config": slurm_service["ssh_config"], "ssh": "openssh"}
    # a connection of its own: one an earlier test of this process left open may hold a spare helper (started
    # with the real helper's code), which a call takes instead of starting the test's variant
    transport.close_all()
    opened = transport.connection(context)
    yield opened
    opened.run("rm -f ~/.cache/mrunner/*-test-gone.bin")
    transport.close_all()


def missing(connection: Connection) -> list[str]:
    """A helper call that reaches no storage: which of no objects are missing."""
    return remote.call(connection, ["missing", "/nonexistent"], zlib.compress(b""))["missing"]


def stored(connection: Connection, helper: shipped.Shipped) -> list[str]:
    """The compiled files of ``helper`` on the cluster, each as 'PATH INODE SIZE'."""
    result = connection.run(f"stat -c '%n %i %s' ~/.cache/mrunner/{helper.key}-*.bin 2>/dev/null")
    return result.text.split("\n")[:-1]


def test_the_compiled_helper_is_reused_and_a_changed_helper_gets_its_own(connection, monkeypatch):
    first = variant()
    monkeypatch.setattr(remote, "_helper", lambda: first)
    assert missing(connection) == []
    written = stored(connection, first)
    assert len(written) == 1 and int(written[0].split()[2]) > 1000
    assert missing(connection) == []
    assert stored(connection, first) == written  # run from the same file: not compiled and written again

    # an old version nobody wrote for KEEP_DAYS goes when a new version is written; a recent one stays
    connection.run("touch -d '40 days ago' ~/.cache/mrunner/old-test-gone.bin")
    changed = variant(b'def missing(storage, hashes):\n    return {"missing": ["changed"]}\n\n\n')
    monkeypatch.setattr(remote, "_helper", lambda: changed)
    assert missing(connection) == ["changed"]  # the new version runs, never the old one's compiled code
    assert len(stored(connection, changed)) == 1
    assert stored(connection, first) == written
    assert connection.run("ls ~/.cache/mrunner/old-test-gone.bin").code != 0
    connection.run(f"rm -f ~/.cache/mrunner/{first.key}-*.bin ~/.cache/mrunner/{changed.key}-*.bin")


@pytest.mark.parametrize("damage", ["printf 'not code' >", "head -c 5000 /dev/urandom >", "rm -f"])
def test_a_damaged_or_missing_compiled_helper_falls_back_to_the_source_and_is_written_again(
    connection, monkeypatch, damage
):
    helper = variant(b'def missing(storage, hashes):\n    return {"missing": ["mine"]}\n\n\n')
    monkeypatch.setattr(remote, "_helper", lambda: helper)
    assert missing(connection) == ["mine"]
    (before,) = stored(connection, helper)
    path = before.split()[0]
    assert connection.run(f"{damage} {path}").code == 0
    assert stored(connection, helper) != [before]
    assert missing(connection) == ["mine"]
    (after,) = stored(connection, helper)
    assert after.split()[0::2] == before.split()[0::2]  # whole again: the same path and size
    assert missing(connection) == ["mine"]
    assert stored(connection, helper) == [after]  # and used
    connection.run(f"rm -f ~/.cache/mrunner/{helper.key}-*.bin")


def test_concurrent_calls_of_a_new_helper_all_run_and_leave_one_whole_file(connection, monkeypatch):
    helper = variant(b'def missing(storage, hashes):\n    return {"missing": ["together"]}\n\n\n')
    monkeypatch.setattr(remote, "_helper", lambda: helper)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: missing(connection), range(6)))
    assert answers == [["together"]] * 6
    assert len(stored(connection, helper)) == 1
    assert connection.run(f"ls -a ~/.cache/mrunner/ | grep -c '^{helper.key}.*tmp$'").text.strip() == "0"
    connection.run(f"rm -f ~/.cache/mrunner/{helper.key}-*.bin")
