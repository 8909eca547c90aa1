"""Where a test run's CPU goes, per test: a pytest plugin to load on demand, and its report.

Each test's CPU is what its own process used (``RUSAGE_SELF``), what the processes it reaped used
(``RUSAGE_CHILDREN``: experiments, Hydra apps, cold ``mrunner`` starts) and what the test kit's warm launcher
and the children it reaped used (every warm ``mrunner`` call: ``/proc/PID/stat`` of the launcher), between the
test's set-up and its teardown. Not seen: detached processes no test reaps (a detached supervisor), pytest's
collection, the install. Module- and session-scoped set-ups count in the first test that uses them.

Measure (each pytest-xdist worker writes its own file into the folder)::

    CPU_PER_TEST=/tmp/cpu uv run --no-sync python -m pytest -p benchmarks.cpu_per_test -m "TIER" -n auto ...
    uv run --no-sync python benchmarks/cpu_per_test.py /tmp/cpu [--tests 40]

(``python -m`` puts the repository first on ``sys.path``, so ``benchmarks.`` names the module; the folder
itself on ``PYTHONPATH`` would shadow Hydra with ``benchmarks/hydra.py``.) The report ranks files and tests
by CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

_TICK = os.sysconf("SC_CLK_TCK")


def _launcher_seconds() -> float:
    """CPU of the warm launcher and of the calls it has reaped, or 0 while none runs."""
    from mrunner.testing import launcher as warm

    running = warm._launcher
    if running is None or running.pid != os.getpid():
        return 0.0
    try:
        fields = Path(f"/proc/{running._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(value) for value in fields[11:15]) / _TICK  # utime stime cutime cstime


def _seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime + _launcher_seconds()


_spent: dict[str, float] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    start = _seconds()
    try:
        return (yield)
    finally:
        _spent[item.nodeid] = _seconds() - start


def pytest_sessionfinish(session: pytest.Session) -> None:
    folder = os.environ.get("CPU_PER_TEST")
    if not folder or not _spent:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    (Path(folder) / f"{worker}-{os.getpid()}.json").write_text(json.dumps(_spent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the folder CPU_PER_TEST named")
    parser.add_argument("--files", type=int, default=30, help="how many files to list")
    parser.add_argument("--tests", type=int, default=30, help="how many tests to list")
    arguments = parser.parse_args()
    spent: dict[str, float] = {}
    for path in arguments.folder.glob("*.json"):
        spent.update(json.loads(path.read_text()))
    by_file: dict[str, list[float]] = defaultdict(list)
    for test, seconds in spent.items():
        by_file[test.split("::", 1)[0]].append(seconds)
    total = sum(spent.values())
    print(f"{len(spent)} tests, {total:.1f} s of CPU seen\n\nCPU s  share  tests  file")
    for file, times in sorted(by_file.items(), key=lambda item: -sum(item[1]))[: arguments.files]:
        print(f"{sum(times):6.1f} {sum(times) / total:6.1%} {len(times):6d}  {file}")
    print("\nCPU s  test")
    for test, seconds in sorted(spent.items(), key=lambda item: -item[1])[: arguments.tests]:
        print(f"{seconds:6.1f}  {test}")


if __name__ == "__main__":
    sys.exit(main())
