"""Hydra's own launcher test suites (hydra-core's ``launcher_common_tests``) with ``hydra/launcher=mrunner``
on the local backend, and what the suites do not look at: the sweep in mrunner's records, failed jobs
reported failed, return values, the option listing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

# The repository names its pytest plugins instead of autoloading them (pyproject.toml), so pytest no longer rewrites
# the asserts of all of hydra: those of Hydra's suites, below, are rewritten still, to say what differed.
pytest.register_assert_rewrite("hydra.test_utils.launcher_common_tests")

from hydra.core.plugins import Plugins  # noqa: E402
from hydra.plugins.launcher import Launcher  # noqa: E402
from hydra.test_utils.launcher_common_tests import (  # noqa: E402
    BatchedSweeperTestSuite,
    IntegrationTestSuite,
    LauncherTestSuite,
)
from hydra_plugins.mrunner_launcher.mrunner_launcher import MrunnerLauncher  # noqa: E402

from mrunner.errors import MrunnerError  # noqa: E402
from plugins.hydra_mrunner_launcher.tests.apps import failed_sweep, returned, run_app  # noqa: E402


def test_hydra_discovers_the_launcher() -> None:
    assert MrunnerLauncher.__name__ in [plugin.__name__ for plugin in Plugins.instance().discover(Launcher)]


@pytest.mark.parametrize("launcher_name, overrides", [("mrunner", [])])
class TestMrunnerLauncher(LauncherTestSuite):
    """In-process task functions (the suite's): pickled jobs, run by the local backend."""


@pytest.mark.parametrize("launcher_name, overrides", [("mrunner", ["hydra.sweeper.max_batch_size=2"])])
class TestMrunnerLauncherBatches(BatchedSweeperTestSuite):
    """Each batch of the sweeper is one mrunner sweep."""


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [
        (
            {
                "defaults": [
                    {"override hydra/launcher": "mrunner"},
                    {"override hydra/hydra_logging": "hydra_debug"},
                    {"override hydra/job_logging": "disabled"},
                ]
            },
            ["-m"],
        ),
    ],
)
class TestMrunnerLauncherIntegration(IntegrationTestSuite):
    """Apps started as scripts: each job runs the app's own script from the code snapshot."""


def test_return_values_come_back_and_a_failed_job_fails_the_multirun(tmp_path, mrunner):
    values = returned(run_app(tmp_path, "drive", "hydra/launcher=mrunner", "hydra.sweep.dir=first", "+x=1,2"))
    assert values == [
        {"status": "COMPLETED", "value": {"twice": 2}, "overrides": ["+x=1"], "num": 0},
        {"status": "COMPLETED", "value": {"twice": 4}, "overrides": ["+x=2"], "num": 1},
    ]
    result = run_app(tmp_path, "-m", "hydra/launcher=mrunner", "hydra.sweep.dir=sweep", "+x=1,2,boom")
    sweep, failure = failed_sweep(result, 2)
    assert "Error executing job with overrides: ['+x=boom']" in result.stderr
    assert "failed: ValueError: boom is not a number" in failure
    listed = json.loads(mrunner("status", sweep, "--json", cwd=tmp_path).stdout)["experiments"]
    assert [e["state"] for e in listed] == ["completed", "completed", "failed"]
    assert [e["parameters"] for e in listed] == [{"x": 1}, {"x": 2}, {"x": "boom"}]
    assert "ValueError: boom is not a number" in mrunner("logs", f"{sweep}/2", cwd=tmp_path).stdout
    assert (tmp_path / "sweep" / "multirun.yaml").exists()
    for index in range(3):
        assert (tmp_path / "sweep" / str(index) / ".hydra" / "overrides.yaml").exists()


def test_a_launch_that_cannot_start_fails_in_one_line(tmp_path, mrunner_home):
    """An mrunner error before any job runs (here an unknown context; a cluster that wants `mrunner login`
    alike) is one line of Hydra's, as on mrunner's command line: no traceback through Hydra and mrunner."""
    result = run_app(tmp_path, "-m", "hydra/launcher=mrunner", "hydra.launcher.context=nosuch", "+x=1,2")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "nosuch" in line]
    assert line.startswith("unknown context 'nosuch'"), result.stderr


@pytest.mark.usefixtures("hydra_restore_singletons")
def test_a_remote_context_refuses_a_task_function_no_command_reaches(hydra_sweep_runner, mrunner_home, tmp_path):
    """Hydra's in-process API (what the suites use) needs a pickle of the task function: local only."""
    folder = mrunner_home / "config" / "mrunner" / "context"
    folder.mkdir(parents=True)
    (folder / "far.yaml").write_text("backend: slurm\nslurm_url: nowhere.invalid\n")
    sweep = hydra_sweep_runner(
        calling_file=None,
        calling_module="hydra.test_utils.a_module",
        task_function=None,
        config_path="configs",
        config_name="compose.yaml",
        overrides=["hydra/launcher=mrunner", "hydra.launcher.context=far", "+a=0,1"],
        temp_dir=tmp_path,
    )
    with pytest.raises(MrunnerError, match="only a context on this machine .backend local. can run it"):
        with sweep:
            pass
    assert (
        json.loads(
            subprocess.run([sys.executable, "-m", "mrunner", "status", "--json"], capture_output=True, text=True).stdout
        )
        == []
    )


def test_mrunner_plugins_lists_the_launcher_and_its_options(mrunner):
    listing = json.loads(mrunner("plugins", "--json").stdout)
    launcher = next(p for p in listing if p["name"] == "hydra-launcher")
    assert launcher["distribution"] == "hydra-mrunner-launcher"
    assert [o["option"] for o in launcher["options"]] == [
        "hydra.launcher.context",
        "hydra.launcher.context_keys",
        "hydra.launcher.name",
        "hydra.launcher.tags",
        "hydra.launcher.shared_fs",
        "hydra.launcher.poll_interval",
        "hydra.launcher.quiet",
    ]
    assert "hydra.launcher.shared_fs" in mrunner("plugins").stdout


# Waits to be stopped once it runs: the launch is interrupted while it follows the sweep.
WAITING_APP = """
import time
import hydra

@hydra.main(config_path=None, config_name=None, version_base=None)
def main(cfg):
    time.sleep(600)

if __name__ == "__main__":
    main()
"""


def test_ctrl_c_of_a_launch_exits_130_in_one_line_naming_it(tmp_path, mrunner):
    """Ctrl-C while the launcher follows its sweep: the app exits as mrunner's command line does, 130 (128 +
    SIGINT) with one line naming the signal, not Hydra's 1 for a failed launch, and without a traceback."""
    from mrunner.records import RUNNING
    from mrunner.store import Store
    from mrunner.testing import as_from_a_terminal, wait_for

    (tmp_path / "waiting.py").write_text(WAITING_APP)
    app = subprocess.Popen(
        [sys.executable, "waiting.py", "-m", "hydra/launcher=mrunner", "hydra.sweep.dir=sweep", "+x=1,2"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_from_a_terminal,  # Ctrl-C's SIGINT, however pytest was started
    )
    sweep = None
    try:
        wait_for(lambda: Store().sweeps(limit=1) or app.poll() is not None, timeout=120, what="the sweep recorded")
        assert app.poll() is None, app.communicate()
        sweep = Store().sweeps(limit=1)[0].id
        wait_for(lambda: Store().run(sweep, 1).state == RUNNING, timeout=120, what="the experiments to run")
        app.send_signal(signal.SIGINT)
        _, err = app.communicate(timeout=60)
    finally:
        if app.poll() is None:
            app.kill()
        if sweep is not None:
            mrunner("cancel", sweep, cwd=tmp_path)
    assert app.returncode == 128 + signal.SIGINT and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("mrunner: error: interrupted by SIGINT"), err


# Each job reports into its MLflow run; x=2 fails. With GATE set, the jobs wait for that file (the test stops the
# tracker's server meanwhile).
REPORTING_APP = """
import os, time
import hydra
import mrunner

@hydra.main(config_path=None, config_name=None, version_base=None)
def main(cfg):
    mrunner.report({"loss": cfg.x}, step=0)
    gate = os.environ.get("GATE")
    if gate:
        open(gate + ".started", "w").close()
        while not os.path.exists(gate):
            time.sleep(0.05)
    if cfg.x == 2:
        raise ValueError("two")

if __name__ == "__main__":
    main()
"""


@pytest.mark.parametrize("tracking", ["live", "deferred"])
def test_a_multirun_returns_with_its_mlflow_runs_ended(tracking, tmp_path, mlflow_service, mrunner_home):
    """The launcher waits for its sweep, then tells MLflow how each job ended (and uploads deferred metrics), as
    `mrunner` does for a sweep it ran inline: straight after the app returns, no run reads RUNNING."""
    import uuid

    from mrunner.testing import write_context
    from tests.test_tracking_mlflow_status import mlflow_runs

    uri = mlflow_service["tracking_uri"]
    experiment = f"mrunner-hydra-{uuid.uuid4().hex[:8]}"
    keys = {"backend": "local", "mlflow": True, "mlflow_tracking_uri": uri, "mlflow_experiment": experiment}
    name = write_context(mrunner_home, f"tracked-{tracking}", {**keys, "tracking": tracking})
    result = _reporting_multirun(tmp_path, name)
    failed_sweep(result, 1)  # the launcher's returns as before: job #1 failed, the app exits 1
    assert "warning" not in result.stderr, result.stderr
    runs = mlflow_runs(uri, experiment)
    assert {index: run.info.status for index, run in runs.items()} == {0: "FINISHED", 1: "FAILED", 2: "FINISHED"}
    assert {index: run.data.metrics for index, run in runs.items()} == {0: {"loss": 1}, 1: {"loss": 2}, 2: {"loss": 3}}


def test_a_multirun_whose_tracker_went_away_warns_once_and_returns_as_before(tmp_path, mlflow_service, mrunner_home):
    """The server answers at submission and is gone when the jobs have ended: one warning line naming what was
    not told, and the app ends as it would have (job #1 failed, exit 1); nothing reaches MLflow."""
    from mrunner.testing import wait_for, write_context
    from tests.test_tracking_mlflow import relayed_context
    from tests.test_tracking_mlflow_status import mlflow_runs

    relay, experiment = relayed_context(mlflow_service, mrunner_home, "relayed")
    gate = tmp_path / "gate"
    keys = {"mlflow_tracking_uri": f"http://127.0.0.1:{relay.port}", "mlflow_experiment": experiment}
    write_context(
        mrunner_home,
        "relayed",
        {"backend": "local", "mlflow": True, **keys, "tracking": "deferred", "env": {"GATE": str(gate)}},
    )
    try:
        finished: list[subprocess.CompletedProcess] = []
        app = threading.Thread(target=lambda: finished.append(_reporting_multirun(tmp_path, "relayed")))
        app.start()
        wait_for(lambda: (tmp_path / "gate.started").exists(), bool, what="the first job to start", timeout=120)
        relay.stop()
        gate.write_text("")
        app.join(300)
        (result,) = finished
        sweep, _ = failed_sweep(result, 1)
        warnings = [line for line in result.stderr.splitlines() if "warning" in line]
        assert len(warnings) == 1, result.stderr
        assert f"was not told how 3 experiments of sweep {sweep} ended" in warnings[0], warnings
        assert mlflow_runs(mlflow_service["tracking_uri"], experiment) == {}
    finally:
        relay.stop()


def _reporting_multirun(folder: Path, context: str) -> subprocess.CompletedProcess:
    (folder / "reporting.py").write_text(REPORTING_APP)
    return subprocess.run(
        [
            sys.executable,
            "reporting.py",
            "-m",
            "hydra/launcher=mrunner",
            f"hydra.launcher.context={context}",
            "+x=1,2,3",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
    )
