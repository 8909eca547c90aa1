"""mrunner's test kit works outside this repository: a backend in its own folder, with only mrunner, its own
package and pytest installed, runs the whole shared backend suite from its own test file (the README's promise
to a third-party backend)."""

from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mrunner.testing import BackendTestSuite

REPO = Path(__file__).resolve().parent.parent


def run(*command: str | Path, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """A command as a user types it: no variable of this test run (pytest's, the workspace's virtualenv), and
    that virtualenv off PATH: its ``python3`` holds mrunner, which hid that the example backend ran experiments
    with whichever ``python3`` PATH had, not the virtualenv it is installed in (``venv/bin/python -m pytest``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV", "UV_PROJECT"))}
    ours = {str(Path(sys.executable).parent), str(Path(sys.prefix) / "bin")}
    env["PATH"] = os.pathsep.join(part for part in env.get("PATH", "").split(os.pathsep) if part not in ours)
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_pytest_loads_the_kit_by_its_entry_point_and_the_plugin_imports_nothing_heavy():
    """Every pytest run where mrunner is installed imports the plugin: it must cost nothing a test does not use
    (no Hydra, no plugin manager: what a fixture needs it imports when it runs)."""
    from importlib.metadata import entry_points

    assert [e.value for e in entry_points(group="pytest11") if e.name == "mrunner"] == ["mrunner.testing.plugin"]
    report = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import pytest; import mrunner.testing.plugin"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    modules = [line.rsplit("|", 1)[1].strip() for line in report.stderr.splitlines() if line.startswith("import time:")]
    after_pytest = modules[modules.index("pytest") + 1 :]  # the report lists a module once its imports are done
    assert after_pytest[-1] == "mrunner.testing.plugin", after_pytest
    package = subprocess.run(
        [sys.executable, "-c", "import sys, mrunner; print(*sys.modules)"], capture_output=True, text=True, timeout=120
    ).stdout.split()
    # nothing beyond what `import mrunner` (which an experiment pays) imports, pytest's own imports aside
    assert set(after_pytest) - {"mrunner.testing", "mrunner.testing.plugin"} <= set(package), after_pytest


# Builds a virtualenv and runs the suite in it: needs a minute or two and starts no cluster; its need shows in
# no fixture (it runs mrunner in the new virtualenv, not through the `mrunner` fixture), so it says it here.
@pytest.mark.local
@pytest.mark.slow
def test_the_example_backend_copied_out_of_the_repository_passes_the_shared_suite_with_its_own_tests(tmp_path):
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed to make the virtualenv (tests/run installs it)")
    backend = tmp_path / "backend"
    shutil.copytree(REPO / "examples" / "backend", backend, ignore=shutil.ignore_patterns("__pycache__"))
    assert REPO not in backend.parents
    made = run(uv, "venv", "--quiet", "--python", sys.executable, tmp_path / "venv", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    python = tmp_path / "venv" / "bin" / "python"
    # `pip install mrunner` (the core and its default local backend, from this checkout) and the backend, as a user
    # installs them (--no-sources: not as editable members of this workspace); nothing of this checkout on the path
    installed = run(
        uv,
        "pip",
        "install",
        "--quiet",
        "--no-sources",
        "--compile-bytecode",
        "--python",
        python,
        REPO,
        REPO / "plugins" / "mrunner_local",
        f"{backend}[test]",
        cwd=backend,
    )
    assert installed.returncode == 0, installed.stderr
    where = run(
        python, "-c", "import mrunner, mrunner_process; print(mrunner.__file__, mrunner_process.__file__)", cwd=tmp_path
    )
    assert all(path.startswith(str(tmp_path / "venv")) for path in where.stdout.split()), where

    tested = run(python, "-m", "pytest", "-rA", "-p", "no:cacheprovider", cwd=backend)

    passed = set(re.findall(r"^PASSED tests/test_suite\.py::TestProcessBackend::(\w+)$", tested.stdout, re.M))
    suite = {name for name, _ in inspect.getmembers(BackendTestSuite, inspect.isfunction) if name.startswith("test_")}
    summary = tested.stdout.strip().splitlines()[-1] if tested.stdout.strip() else tested.stderr
    assert tested.returncode == 0, tested.stdout[-5000:] + tested.stderr
    assert passed == suite, summary
    assert re.search(rf"\b{len(suite)} passed\b", summary) and not re.search(r"failed|error|skipped", summary), summary


def test_check_called_fails_a_run_that_calls_a_method_or_hook_in_no_test_and_counts_the_processes_tests_start(
    tmp_path,
):
    """``--mrunner-check-called`` (the whole suite's run) fails when a Backend method or hook was never called,
    naming them; a call made in a process a test started counts (``mrunner plugins`` registers the backends)."""
    (tmp_path / "test_one.py").write_text(
        "import subprocess, sys\n\n\n"
        "def test_lists_the_plugins():\n"
        "    subprocess.run([sys.executable, '-m', 'mrunner', 'plugins'], check=True, capture_output=True)\n"
    )
    # Hypothesis's and Hydra's pytest plugins, which this virtualenv holds, have no part in it: left out, each of
    # the four pytest processes below starts in a third of the CPU time (benchmarks/test-tiers.md).
    unrelated = ["-p", "no:hypothesispytest", "-p", "no:hydra_pytest"]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *unrelated, "test_one.py"]
    plain = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stdout
    checked = subprocess.run(
        [*command, "--mrunner-check-called"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert checked.returncode == 1, checked.stdout
    line = next(line for line in checked.stdout.splitlines() if line.startswith("called by no test"))
    missing = line.split(": ", 1)[1].split(", ")
    assert {"Backend.submit", "Backend.status", "mrunner_check"} <= set(missing)
    assert "mrunner_register_backends" not in missing
    # on pytest-xdist's workers: they share the controller's trace folder, and the controller alone judges the run
    parallel = subprocess.run(
        [*command, "--mrunner-check-called", "-n", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert parallel.returncode == 1, parallel.stdout
    lines = [line for line in parallel.stdout.splitlines() if line.startswith("called by no test")]
    assert lines == [line], parallel.stdout


@pytest.mark.parametrize(
    "fixtures, folder, expected",
    [
        (["mrunner_home", "mrunner", "fake_wandb"], "tests", "tracker"),
        (["mrunner_home", "fake_neptune"], "tests", "tracker"),
        (["mrunner_home", "mrunner", "fake_wandb", "mlflow_service"], "tests", "mlflow"),
        (["mrunner_home", "mrunner"], "tests", "local"),
        (["mrunner_home"], "plugins/mrunner_local/tests", "local"),
        (["mrunner_home"], "tests", "core"),
    ],
)
def test_a_test_is_tagged_by_the_heaviest_need_its_fixtures_show(fixtures, folder, expected):
    """A test whose real tracker client talks to a stand-in server (``fake_wandb``, ``fake_neptune``) needs a
    tracker's server, as MLflow's tests need the MLflow service: ``tracker``, left out of the fast tier."""
    from types import SimpleNamespace

    from mrunner.testing.plugin import need

    item = SimpleNamespace(fixturenames=fixtures, path=Path(folder) / "test_x.py")
    assert need(item) == expected
