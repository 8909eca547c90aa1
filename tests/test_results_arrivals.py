"""The parse of a first `results`' metrics files as the pull brings them (mrunner.commands.report._Arrivals):
in a forked process whose curves come back through a pipe, and what it did not reach read afterwards."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from mrunner import metrics
from mrunner.commands.report import _Arrivals, read_cached
from mrunner.layout import METRICS_FILE
from mrunner.testing import wait_for


def arrive(folder: Path, name: str, steps: int) -> None:
    """A metrics file renamed into place whole, as a pull writes it."""
    (folder / name).mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"attempt": 0, "step": i, "time": 1.0, "metrics": {"loss": 1 / (1 + i)}}) for i in range(steps)]
    part = folder / name / f".{METRICS_FILE}.part"
    part.write_text("".join(line + "\n" for line in lines))
    os.replace(part, folder / name / METRICS_FILE)


def test_the_files_that_arrive_during_the_pull_are_parsed_by_a_child_process(tmp_path):
    names = [f"{i}-train" for i in range(30)]
    arrive(tmp_path, names[0], 3)  # there before the pull: left to read_cached
    with _Arrivals(tmp_path, names) as arrivals:
        assert arrivals.child is not None and arrivals.child != os.getpid()
        for k, name in enumerate(names[1:], start=1):
            arrive(tmp_path, name, k)
        # the pull's end stops the parse at the first file not there yet: here, wait for all
        wait_for(lambda: len(arrivals.parsed), lambda count: count == len(names) - 1, timeout=60, what="the parse")
    assert set(arrivals.parsed) == set(names[1:])
    for name, (size, mtime, curves) in arrivals.parsed.items():
        path = tmp_path / name / METRICS_FILE
        assert (size, mtime) == (path.stat().st_size, path.stat().st_mtime_ns)
        assert curves == metrics.read(str(path))
    found = read_cached(tmp_path, names, arrivals.parsed)
    assert found == {name: metrics.read(str(tmp_path / name / METRICS_FILE)) for name in names}


def test_a_parse_that_dies_leaves_its_files_to_read_cached(tmp_path):
    names = [f"{i}-train" for i in range(5)]
    with _Arrivals(tmp_path, names) as arrivals:
        assert arrivals.child is not None
        os.kill(arrivals.child, signal.SIGKILL)
        for name in names:
            arrive(tmp_path, name, 4)
    assert arrivals.parsed == {}
    found = read_cached(tmp_path, names, arrivals.parsed)
    assert sorted(found) == names and found[names[0]] == metrics.read(str(tmp_path / names[0] / METRICS_FILE))


def test_a_pull_that_brings_nothing_ends_the_parse(tmp_path):
    with _Arrivals(tmp_path, ["0-train", "1-train"]) as arrivals:
        child = arrivals.child
    assert arrivals.parsed == {}
    assert child is not None
    try:
        os.waitpid(child, os.WNOHANG)
        raise AssertionError("the child was not reaped")
    except ChildProcessError:
        pass  # reaped by __exit__
