"""Neptune tracking end to end on the local backend, in offline mode (no account, no network): what each
experiment writes to its own ``.neptune/`` folder is parsed back and must name the experiment, carry its
tags and the sweep's tag, its parameters, mrunner's facts and the metric the script logged."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import textwrap
from pathlib import Path

import pytest

from mrunner.errors import MrunnerError
from mrunner.store import Store
from mrunner.testing import write_context
from mrunner.trackers import neptune as tracker
from mrunner.tracking import ENABLED_VARIABLE, scheduler_job, tags

EXPERIMENT = """\
import mrunner

config = mrunner.get_configuration(with_neptune=True)
run = mrunner.neptune_run()
if run is None:
    print("no neptune run")
else:
    for step in range(3):
        run["train/score"].append(config.lr * step)
print("finished", flush=True)
"""


@pytest.fixture
def neptune_installed() -> None:
    """The experiments import neptune: install it with `uv sync --all-packages --extra neptune`."""
    if importlib.util.find_spec("neptune") is None:
        message = "neptune is not installed in this venv: uv sync --all-packages --extra neptune"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def operations(experiment_dir: Path) -> list[dict]:
    """The operations Neptune's offline mode logged for the single run of an experiment."""
    logs = list(experiment_dir.glob(".neptune/offline/*/data-1.log"))
    assert len(logs) == 1, f"expected one offline Neptune run in {experiment_dir}, found {logs}"
    return [json.loads(line)["obj"] for line in logs[0].read_text().splitlines() if line.strip()]


def assigned(ops: list[dict], *path: str) -> object:
    values = [op["value"] for op in ops if op["path"] == list(path) and op["type"].startswith("Assign")]
    assert values, f"nothing assigned to {'/'.join(path)}"
    return values[-1]


def test_offline_sweep_records_name_tags_parameters_and_metrics(mrunner, mrunner_home, tmp_path, neptune_installed):
    """The context keys of mrunner_context_keys, mrunner_experiment_env's NEPTUNE_MODE, the experiment's
    run, and mrunner_sweep_submitted's note on where the offline data is."""
    (tmp_path / "train.py").write_text(EXPERIMENT)
    write_context(
        mrunner_home,
        "tracked",
        {"backend": "local", "neptune": True, "neptune_mode": "offline", "tags": ["from-context"]},
    )
    done = mrunner("+context=tracked", "train.py", "-m", "lr=0.5,2", "+depth=3", "--tag", "cli-tag", "--name", "My Run")
    assert done.returncode == 0, done.stderr

    sweep = Store().sweeps()[0]
    runs = Store().runs(sweep.id)
    assert [run.state for run in runs] == ["completed", "completed"]
    assert "neptune: offline" in done.stderr and sweep.id in done.stderr
    for run in runs:
        folder = Path(sweep.context["storage_dir"]) / sweep.project / sweep.id / f"{run.index}-{run.name}"
        ops = operations(folder)
        assert assigned(ops, "sys", "name") == "my-run"
        added = {
            tag for op in ops if op["type"] == "AddStrings" and op["path"] == ["sys", "tags"] for tag in op["values"]
        }
        assert added == {sweep.id, "cli-tag", "from-context"}
        assert assigned(ops, "parameters", "lr") == run.parameters["lr"]
        assert assigned(ops, "parameters", "depth") == 3
        assert assigned(ops, "mrunner", "sweep") == sweep.id
        assert assigned(ops, "mrunner", "experiment_id") == run.id
        assert assigned(ops, "mrunner", "snapshot") == sweep.snapshot_digest
        assert assigned(ops, "mrunner", "backend") == "local"
        assert assigned(ops, "mrunner", "context") == "tracked"
        scores = [v["value"] for op in ops if op["path"] == ["train", "score"] for v in op["values"]]
        assert scores == [run.parameters["lr"] * step for step in range(3)]
        assert run.env[ENABLED_VARIABLE] == "1" and run.env["NEPTUNE_MODE"] == "offline"
    assert not (tmp_path / ".neptune").exists(), "offline data must land in the experiment's folder, not the cwd"


def test_neptune_mode_exported_in_the_shell_applies_without_a_token(
    mrunner, mrunner_home, tmp_path, monkeypatch, neptune_installed
):
    """`export NEPTUNE_MODE=offline`, as Neptune's docs say, with a context that sets no neptune_mode: no
    token is asked for, and the experiments run offline (the mode travels in their recorded environment)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NEPTUNE_API_TOKEN", raising=False)
    (tmp_path / "train.py").write_text(EXPERIMENT)
    (tmp_path / ".mrunnerignore").write_text("")  # HOME is the project here: a home folder needs a marker
    write_context(mrunner_home, "tracked", {"backend": "local", "neptune": True})
    done = mrunner("+context=tracked", "train.py", "lr=0.5", env={"NEPTUNE_MODE": "offline"})
    assert done.returncode == 0, done.stderr
    sweep = Store().sweeps()[0]
    run = Store().run(sweep.id, 0)
    assert run.state == "completed" and run.env["NEPTUNE_MODE"] == "offline"
    folder = Path(sweep.context["storage_dir"]) / sweep.project / sweep.id / f"{run.index}-{run.name}"
    assert assigned(operations(folder), "parameters", "lr") == 0.5
    refused = mrunner("+context=tracked", "train.py", "lr=1", "--dry-run", env={"NEPTUNE_MODE": "asink"})
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "mrunner: error: context tracked: $NEPTUNE_MODE 'asink' is not one of async, sync, offline, debug"
    )


def test_neptune_variables_apply_where_the_context_does_not_set_them(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NEPTUNE_MODE", "offline")
    monkeypatch.setenv("NEPTUNE_PROJECT", "shell/project")
    monkeypatch.setenv("NEPTUNE_REQUEST_TIMEOUT", "90")
    monkeypatch.delenv("NEPTUNE_API_TOKEN", raising=False)
    shell = {"neptune": True, "neptune_mode": None, "neptune_project": None, "env": {}}
    assert tracker.mrunner_experiment_env(context=shell, parameters={}) == {
        ENABLED_VARIABLE: "1",
        "NEPTUNE_MODE": "offline",
        "NEPTUNE_PROJECT": "shell/project",
        "NEPTUNE_REQUEST_TIMEOUT": "90",
    }
    tracker.mrunner_check(context=shell, context_name="c", dry_run=False)  # offline: no token needed
    assert tracker.mrunner_secrets(context=shell) == {}
    own = {**shell, "neptune_mode": "debug", "neptune_project": "ctx/project", "env": {"NEPTUNE_REQUEST_TIMEOUT": "5"}}
    env = tracker.mrunner_experiment_env(context=own, parameters={})
    assert env["NEPTUNE_MODE"] == "debug" and env["NEPTUNE_PROJECT"] == "ctx/project"
    assert "NEPTUNE_REQUEST_TIMEOUT" not in env  # the context's own env sets it (and reaches the experiment)
    by_env = {**shell, "env": {"NEPTUNE_MODE": "sync"}}
    assert tracker.mrunner_experiment_env(context=by_env, parameters={})["NEPTUNE_MODE"] == "sync"
    with pytest.raises(MrunnerError, match="no API token"):  # sync talks to the server: the token is needed
        tracker.mrunner_check(context=by_env, context_name="c", dry_run=False)


def test_neptune_off_gives_the_script_no_run_and_imports_nothing(mrunner, mrunner_home, tmp_path):
    (tmp_path / "train.py").write_text(EXPERIMENT)
    write_context(mrunner_home, "plain", {"backend": "local"})
    done = mrunner("+context=plain", "train.py", "lr=1")
    assert done.returncode == 0, done.stderr
    sweep = Store().sweeps()[0]
    log = mrunner("logs", f"{sweep.id}/0").stdout
    assert "no neptune run" in log and "neptune: false" in log
    assert "neptune" not in done.stderr
    assert not any(name.startswith("NEPTUNE") or name == ENABLED_VARIABLE for name in Store().run(sweep.id, 0).env)


def test_sweep_link_filters_by_the_sweep_tag_on_the_tokens_server(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    token = base64.b64encode(json.dumps({"api_address": "https://neptune.example.org", "api_key": "k"}).encode())
    monkeypatch.setenv("NEPTUNE_API_TOKEN", token.decode())
    url = tracker.sweep_url("team/vision", "brave-turing-3f2a9c")
    assert url.startswith("https://neptune.example.org/team/vision/runs/table?query=")
    assert "brave-turing-3f2a9c" in url and "sys%2Ftags" in url
    monkeypatch.setenv("NEPTUNE_API_TOKEN", "not-a-token")
    assert tracker.sweep_url("team/vision", "x").startswith("https://app.neptune.ai/team/vision/")


def test_credentials_come_from_env_then_neptune_yaml_and_context_names_the_project(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NEPTUNE_API_TOKEN", raising=False)
    monkeypatch.delenv("NEPTUNE_PROJECT", raising=False)
    assert tracker.credentials() == tracker.Credentials(None, None)
    (tmp_path / ".neptune.yaml").write_text("api_token: from-file\nproject: file/project\n")
    assert tracker.credentials() == tracker.Credentials("from-file", "file/project")
    monkeypatch.setenv("NEPTUNE_API_TOKEN", "from-env")
    assert tracker.credentials({"neptune_project": "ctx/project"}) == tracker.Credentials("from-env", "ctx/project")


def test_the_token_is_a_secret_and_the_project_and_mode_plain_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NEPTUNE_API_TOKEN", "tok")
    monkeypatch.setenv("NEPTUNE_PROJECT", "ws/p")
    on = {"neptune": True, "neptune_mode": "async", "neptune_project": None}
    assert tracker.mrunner_secrets(context=on) == {"NEPTUNE_API_TOKEN": "tok"}
    assert tracker.mrunner_experiment_env(context=on, parameters={}) == {
        ENABLED_VARIABLE: "1",
        "NEPTUNE_MODE": "async",
        "NEPTUNE_PROJECT": "ws/p",
    }
    offline = {**on, "neptune_mode": "offline"}
    assert tracker.mrunner_secrets(context=offline) == {}  # no server: the token stays home
    off = {**on, "neptune": False}
    assert (
        tracker.mrunner_secrets(context=off) == {} and tracker.mrunner_experiment_env(context=off, parameters={}) == {}
    )


def test_scheduler_job_ids_and_tags():
    assert scheduler_job({"SLURM_JOB_ID": "41", "SLURM_ARRAY_JOB_ID": "40", "SLURM_ARRAY_TASK_ID": "3"}) == {
        "scheduler": "slurm",
        "job_id": "40_3",
    }
    assert scheduler_job({"SLURM_JOB_ID": "41"}) == {"scheduler": "slurm", "job_id": "41"}
    assert scheduler_job({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOSTNAME": "sweep-3-abcde"}) == {
        "scheduler": "kubernetes",
        "job_id": "sweep-3-abcde",
    }
    assert scheduler_job({"HOSTNAME": "laptop"}) == {}
    assert tags({"tags": ["a", "b", "a"], "sweep": "s-1"}) == ["a", "b", "s-1"]


def test_the_experiment_side_reads_the_same_switch_the_tracker_sets():
    assert ENABLED_VARIABLE == tracker.ENABLED_VARIABLE


def test_run_by_hand_in_debug_mode_returns_the_run(tmp_path, neptune_installed):
    """Without mrunner (a hand-written MRUNNER_CONFIG), with_neptune=True still starts a run."""
    import subprocess
    import sys

    config = tmp_path / "config.yaml"
    config.write_text("parameters:\n  lr: 0.25\nname: by-hand\ntags: [manual]\n")
    script = textwrap.dedent("""
        import mrunner
        mrunner.get_configuration(with_neptune=True)
        run = mrunner.neptune_run()
        print(run["sys/name"].fetch(), sorted(run["sys/tags"].fetch()), run["parameters/lr"].fetch())
    """)
    env = {**os.environ, "MRUNNER_CONFIG": str(config), "NEPTUNE_MODE": "debug", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "by-hand ['manual'] 0.25" in done.stdout


def test_offline_attempts_of_one_experiment_are_one_run(mrunner, mrunner_home, tmp_path, neptune_installed):
    """A resumed attempt joins the run of the attempt before it: Neptune gets the same custom run id (offline
    mode keeps it in memory only: each attempt's offline folder is what `neptune sync` uploads into that run),
    and each attempt records its number."""
    script = EXPERIMENT.replace(
        'print("finished"', 'print("custom run id", run._custom_run_id); assert mrunner.attempt() > 0; print("finished"'
    )
    (tmp_path / "train.py").write_text(script)
    write_context(mrunner_home, "tracked", {"backend": "local", "neptune": True, "neptune_mode": "offline"})
    failed = mrunner("+context=tracked", "train.py", "lr=1")
    assert failed.returncode == 1, failed.stderr
    sweep = Store().sweeps()[0]
    resumed = mrunner("resume", sweep.id)
    assert resumed.returncode == 0, resumed.stderr
    (run,) = Store().runs(sweep.id)
    ids = [
        mrunner("logs", f"{sweep.id}/0", "--attempt", str(n)).stdout.count(f"custom run id {sweep.id}-0\n")
        for n in (0, 1)
    ]
    assert ids == [1, 1]
    folder = Path(sweep.context["storage_dir"]) / sweep.project / sweep.id / f"{run.index}-{run.name}"
    logs = sorted(folder.glob(".neptune/offline/*/data-1.log"), key=lambda path: path.stat().st_mtime)
    recorded = []
    for log in logs:
        ops = [json.loads(line)["obj"] for line in log.read_text().splitlines() if line.strip()]
        attempts = [v["value"] for op in ops if op["path"] == ["mrunner", "attempts"] for v in op["values"]]
        recorded.append((assigned(ops, "mrunner", "attempt"), attempts))
    assert recorded == [(0, ["0"]), (1, ["1"])]


REPORTING = """\
import mrunner

config = mrunner.get_configuration()  # no with_neptune: the first report starts the run
for step in range(3):
    mrunner.report({"loss": config.lr * (3 - step), "acc": step / 2}, step=step * 10)
"""


def test_report_forwards_to_the_neptune_run_offline(mrunner, mrunner_home, tmp_path, neptune_installed):
    """`mrunner.report` logs each metric under `metrics/` at its step, into the experiment's one run (named,
    tagged with the sweep), and writes its own metrics file as with any tracker."""
    (tmp_path / "train.py").write_text(REPORTING)
    write_context(mrunner_home, "tracked", {"backend": "local", "neptune": True, "neptune_mode": "offline"})
    done = mrunner("+context=tracked", "train.py", "-m", "lr=0.5,2")
    assert done.returncode == 0, done.stderr
    sweep = Store().sweeps()[0]
    for run in Store().runs(sweep.id):
        assert run.state == "completed"
        folder = Path(sweep.context["storage_dir"]) / sweep.project / sweep.id / f"{run.index}-{run.name}"
        ops = operations(folder)
        assert assigned(ops, "sys", "name") == "train"
        assert assigned(ops, "mrunner", "sweep") == sweep.id
        logged = {
            name: [(v["step"], v["value"]) for op in ops if op["path"] == ["metrics", name] for v in op["values"]]
            for name in ("loss", "acc")
        }
        lr = run.parameters["lr"]
        assert logged == {
            "loss": [(10.0 * s, lr * (3 - s)) for s in range(3)],
            "acc": [(10.0 * s, s / 2) for s in range(3)],
        }
        assert (folder / "mrunner-metrics.jsonl").read_text().count("\n") == 3
    table = mrunner("results", sweep.id, "--json")
    assert [row["loss"] for row in json.loads(table.stdout)] == [0.5, 2]
