"""mrunner's pytest plugin, loaded by pytest wherever mrunner is installed (the ``pytest11`` entry point, as
Hydra ships ``hydra_pytest``): the fixtures the shared backend suite (``mrunner.testing.BackendTestSuite``)
and mrunner's own tests use, and a tag on every test saying what it needs.

Fixtures: ``mrunner_home`` (a private XDG config and data home, so records and contexts never leak between
tests or into the developer's own), ``mrunner`` (the command line, run with that home), ``slurm_service``,
``k8s_service`` and ``mlflow_service`` (the loopback services' state files; see ``mrunner.testing.services``),
``slurm_limited_service`` (the Slurm cluster as its second user, whose association carries job limits).

Tags, from the fixtures a test uses (directly or through others), the heaviest need only: ``k8s`` (the
Kubernetes cluster, its Docker engine and registries: ``k8s_service``), ``slurm`` (the Slurm cluster:
``slurm_service``), ``mlflow`` (the MLflow tracking server: ``mlflow_service``), ``tracker`` (a tracker's server
stood in for on loopback, the real client talking to it: a test file's ``fake_wandb`` or ``fake_neptune``
fixture; it is the tracking server's part MLflow's tests get from ``mlflow``), ``local`` (runs mrunner and its
experiments as processes of this machine: the ``mrunner`` fixture, or a test of the local backend's package
``mrunner_local``), else ``core`` (in-process only). A test whose need no fixture shows marks it itself. So
``pytest -m "not slurm and not k8s"`` runs every test that starts no cluster (``and not mlflow and not
tracker``: no service and no tracker's server either).

``--mrunner-check-called`` (the whole suite's run, ``tests/run`` without arguments, passes it): the run fails
when a ``Backend`` method or a hook was called by no test, in the tests' process or any process they started.

Importing this module costs little: pytest imports it at start in every project where mrunner is installed,
so it imports nothing of mrunner beyond what a fixture uses when it runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from mrunner.testing.commands import MrunnerCommand

#: What a test needs, heaviest first: the fixtures that make a test need it, and the marker's help.
NEEDS = (
    ("k8s", ("k8s_service",), "needs the loopback Kubernetes cluster, Docker engine and registry (tests/services/k8s)"),
    ("slurm", ("slurm_service",), "needs the loopback Slurm cluster behind sshd (tests/services/slurm)"),
    ("sshd_mfa", ("sshd_mfa_service",), "needs the MFA login node and bastion (tests/services/sshd-mfa)"),
    ("mlflow", ("mlflow_service",), "needs the loopback MLflow tracking server (tests/services/mlflow)"),
    (
        "tracker",
        ("fake_wandb", "fake_neptune"),
        "needs a tracker's server: a stand-in of W&B's or Neptune's on loopback, with the real client talking to it",
    ),
    ("local", ("mrunner",), "runs mrunner and its experiments as processes of this machine; starts no cluster"),
)
CORE_HELP = "runs in the test's process only: starts no mrunner, experiment or cluster"
#: A test in a folder of this name tests the local backend's package: it needs at least ``local``.
LOCAL_PACKAGE = "mrunner_local"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--mrunner-check-called",
        action="store_true",
        help="fail the run when a mrunner Backend method or hook was called by no test (for whole-suite runs)",
    )


def pytest_configure(config: pytest.Config) -> None:
    for name, _, help in NEEDS:
        config.addinivalue_line("markers", f"{name}: {help} (tagged by mrunner.testing.plugin)")
    config.addinivalue_line("markers", f"core: {CORE_HELP} (tagged by mrunner.testing.plugin)")
    if config.getoption("mrunner_check_called"):
        import os
        import tempfile

        from mrunner import plugins

        if not _is_xdist_worker(config):  # pytest-xdist's workers start later and inherit the folder
            os.environ[plugins.TRACE_CALLS] = tempfile.mkdtemp(prefix="mrunner-calls-")
        plugins.reset()


def _is_xdist_worker(config: pytest.Config) -> bool:
    """Whether this process is one of pytest-xdist's workers (``-n``), which runs a share of the tests: the
    controller alone judges the whole run."""
    return hasattr(config, "workerinput")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under ``--mrunner-check-called``: fail a run in which a Backend method or a hook was never called."""
    if not session.config.getoption("mrunner_check_called") or _is_xdist_worker(session.config):
        return
    import os
    import shutil

    from mrunner import plugins

    folder = os.environ.pop(plugins.TRACE_CALLS)
    missing = sorted(set(callable_names()) - set(os.listdir(folder)))
    shutil.rmtree(folder, ignore_errors=True)
    if missing:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("=", "--mrunner-check-called", red=True)
            reporter.write_line(f"called by no test: {', '.join(missing)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def callable_names() -> list[str]:
    """Every hook (``mrunner_check``) and every Backend method (``Backend.submit``) a test run should call."""
    import inspect

    from mrunner import hookspecs
    from mrunner.backend import Backend

    hooks = [name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("mrunner_")]
    methods = [f"Backend.{name}" for name, value in vars(Backend).items() if inspect.isfunction(value)]
    return hooks + methods


def need(item: pytest.Item) -> str:
    """What ``item`` needs, by the fixtures it uses and the folder it is in."""
    fixtures = set(getattr(item, "fixturenames", ()))
    for name, needing, _ in NEEDS:
        if fixtures.intersection(needing) or (name == "local" and LOCAL_PACKAGE in Path(str(item.path)).parts):
            return name
    return "core"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tag each test with what it needs, unless it says so itself (a need no fixture shows)."""
    for item in items:
        if not any(item.get_closest_marker(name) for name in ("core", *(name for name, _, _ in NEEDS))):
            item.add_marker(need(item))


@pytest.fixture
def mrunner_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh XDG config and data home for mrunner (contexts go to ``HOME/config/mrunner/context``, records
    below ``HOME/data/mrunner``), every plugin allowed to load, and a fresh plugin manager in this process.
    No ``COLUMNS`` or ``LINES`` from whoever started pytest (GNU readline exports them, in pytest-xdist's
    workers too): mrunner's tables fit ``COLUMNS`` when it is set, so a test that wants a width sets it."""
    from mrunner import plugins

    home = tmp_path_factory.mktemp("mrunner-home")
    use_home(monkeypatch, home)
    plugins.reset()
    yield home
    plugins.reset()


def use_home(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Make ``home`` mrunner's config and data home for what ``monkeypatch`` covers, as ``mrunner_home`` does
    for a test; a module-scoped fixture that builds something many tests only read (a sweep run to its end)
    uses it with ``pytest.MonkeyPatch.context()`` to build it, and each test to read it."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    for name in ("MRUNNER_PLUGINS", "COLUMNS", "LINES"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def mrunner(tmp_path: Path, mrunner_home: Path) -> MrunnerCommand:
    """``mrunner(*args, env=, timeout=, cwd=, input=)`` runs the command line in ``tmp_path`` with the test's
    mrunner home and returns the completed process: a child of this test process's warm launcher
    (``mrunner.testing.launcher``) made into ``python -m mrunner ARGS``, or a new interpreter where a child
    could not be the same process (and always under ``MRUNNER_TEST_WARM=0``)."""
    from mrunner.testing.commands import MrunnerCommand

    return MrunnerCommand(tmp_path)


@pytest.fixture(scope="session")
def slurm_service() -> dict[str, Any]:
    """The loopback Slurm cluster's state file (``mrunner.testing.services.service``)."""
    from mrunner.testing.services import service

    return service("slurm")


@pytest.fixture(scope="session")
def slurm_limited_service(slurm_service: dict[str, Any]) -> dict[str, Any]:
    """The same Slurm cluster as the second test user (``mrlimited``), whose association carries job limits
    (``max_submit_jobs``: MaxSubmitJobs, ``max_jobs``: MaxJobs, as a site admin sets them with sacctmgr; ``qos``:
    a QOS it may ask for, with per-user and QOS-wide limits, where the cluster's start.sh made one), in
    the shape of ``slurm_service`` (``user``, ``alias``, ``key_file``, ``storage_dir`` are its own), so
    tests of limits never hold back the tests that submit as ``mrtest``."""
    if "limited" not in slurm_service:  # a cluster started by an older start.sh
        import os

        message = "the Slurm service has no limited user: restart it with tests/services/slurm/start.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return {**slurm_service, **slurm_service["limited"]}


@pytest.fixture(scope="session")
def k8s_service() -> dict[str, Any]:
    """The loopback Kubernetes cluster's state file (``mrunner.testing.services.service``)."""
    from mrunner.testing.services import service

    return service("k8s")


@pytest.fixture(scope="session")
def mlflow_service() -> dict[str, Any]:
    """The loopback MLflow tracking server's state file (``mrunner.testing.services.service``)."""
    from mrunner.testing.services import service

    return service("mlflow")


@pytest.fixture(scope="session")
def sshd_mfa_service() -> dict[str, Any]:
    """The MFA login node and the bastion in front of the Slurm cluster (tests/services/sshd-mfa)."""
    from mrunner.testing.services import service

    return service("sshd-mfa")
