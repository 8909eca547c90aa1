"""The local backend end to end, through the real command line, as a researcher uses it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mrunner.testing import experiments, start_mrunner, wait_for

COUNTING_SCRIPT = """
import glob, json, os, sys, time
from mrunner import get_configuration

config = get_configuration()
record = {"parameters": dict(config), "argv": sys.argv[1:], "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
          "storage": os.environ["STORAGE_DIR"], "cwd": os.getcwd(), "file": os.path.realpath(__file__),
          "start": time.time()}
with open(os.path.join(config.get("ledger", "."), f"ran-{config.get('i', 0)}.txt"), "a") as ledger:
    ledger.write("x")  # one character per time the experiment ran
print("started", config.get("i"), flush=True)
print("to stderr", file=sys.stderr, flush=True)
time.sleep(config.get("sleep", 0))
while config.get("pair") and len(glob.glob(os.path.join(config.ledger, "ran-*.txt"))) < 2:
    time.sleep(0.02)  # the first experiments wait for a second to start: they overlap by construction
while config.get("gate") and not os.path.exists(config.gate):  # held until the test opens the gate
    time.sleep(0.02)
record["end"] = time.time()
with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "result.json"), "w") as out:
    json.dump(record, out)
if os.path.exists(os.path.join(config.get("ledger", "."), f"fail-{config.get('i', 0)}")):
    sys.exit(3)
"""


@pytest.fixture
def project(tmp_path: Path, mrunner) -> Path:
    """A project folder with the script, where `mrunner` runs; the ledger of runs lies outside it, so
    running changes no code."""
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "exp.py").write_text(COUNTING_SCRIPT)
    (tmp_path / "ledger").mkdir()
    mrunner.cwd = tmp_path / "project"
    return tmp_path / "project"


def sweep_of(result: subprocess.CompletedProcess) -> str:
    assert result.returncode in (0, 1), result.stderr
    return result.stdout.strip().splitlines()[-1]


def results(home: Path, sweep: str) -> dict[int, dict]:
    found = {}
    for path in (home / "data" / "mrunner" / "storage").rglob(f"{sweep}/*/result.json"):
        found[int(path.parent.name.split("-", 1)[0])] = json.loads(path.read_text())
    return found


def ledger(project: Path) -> dict[int, int]:
    return {int(p.stem.split("-")[1]): len(p.read_text()) for p in (project.parent / "ledger").glob("ran-*.txt")}


def test_a_grid_runs_to_completion_from_the_snapshot(mrunner, mrunner_home, project):
    """Backend.package, Backend.setup_resources and Backend.submit of the local backend: every point runs once,
    from the snapshot, with its parameters, its own folder, and arguments after -- untouched."""
    result = mrunner("exp.py", "-m", "i=range(4)", "ledger=" + str(project.parent / "ledger"), "--", "--flag", "a b")
    sweep = sweep_of(result)
    assert result.returncode == 0, result.stderr
    assert "4 completed" in result.stderr
    found = results(mrunner_home, sweep)
    assert sorted(found) == [0, 1, 2, 3]
    assert [found[i]["parameters"]["i"] for i in range(4)] == [0, 1, 2, 3]
    assert found[0]["argv"] == ["--flag", "a b"]
    snapshot_root = mrunner_home / "data" / "mrunner" / "snapshots" / "trees"
    ran = Path(found[0]["file"])  # the frozen copy, not the project: through a copy-on-write view where it can
    assert ran.parent.parent == snapshot_root or ran == Path(found[0]["cwd"]) / "exp.py"
    assert not ran.is_relative_to(project)
    for index, record in found.items():  # in its own folder, where its relative writes land
        assert Path(record["cwd"]).name == f"{index}-exp" and Path(record["cwd"]).parent.name == sweep
    assert ledger(project) == {0: 1, 1: 1, 2: 1, 3: 1}
    states = experiments(mrunner, sweep)
    assert {e["state"] for e in states.values()} == {"completed"} and {e["exit_code"] for e in states.values()} == {0}


def test_at_most_max_parallel_at_once_and_gpus_handed_out(mrunner, mrunner_home, project):
    result = mrunner(
        "exp.py",
        "-m",
        "i=range(6)",
        "pair=1",
        "ledger=" + str(project.parent / "ledger"),
        "context.gpus=[0,1,2,3]",
        "context.gpus_per_experiment=2",
    )
    found = results(mrunner_home, sweep_of(result))
    intervals = sorted((r["start"], r["end"], r["cuda"]) for r in found.values())
    for start, end, _ in intervals:
        overlapping = [c for s, e, c in intervals if s < end and e > start]
        assert len(overlapping) <= 2  # 4 GPUs, 2 per experiment: two slots
        assert len(set(overlapping)) == len(overlapping)  # never the same GPUs twice at once
    assert {r["cuda"] for r in found.values()} == {"0,1", "2,3"}
    assert max(len([1 for s, e, _ in intervals if s < end and e > start]) for start, end, _ in intervals) == 2


def test_failures_are_recorded_with_exit_codes_and_logs(mrunner, mrunner_home, project):
    """Backend.logs: the experiment's stdout and stderr, from any shell."""
    (project.parent / "ledger" / "fail-1").touch()
    result = mrunner("exp.py", "-m", "i=0,1", "ledger=" + str(project.parent / "ledger"))
    assert result.returncode == 1  # a sweep with failures fails the command
    sweep = sweep_of(result)
    states = experiments(mrunner, sweep)
    assert (states[0]["state"], states[0]["exit_code"]) == ("completed", 0)
    assert (states[1]["state"], states[1]["exit_code"]) == ("failed", 3)
    log = mrunner("logs", f"{sweep}/1")
    assert "started 1" in log.stdout and "to stderr" in log.stdout
    assert "failed" in mrunner("status", sweep).stdout


def test_resume_runs_exactly_the_failed_ones(mrunner, mrunner_home, project):
    for i in (1, 3):
        (project.parent / "ledger" / f"fail-{i}").touch()
    sweep = sweep_of(mrunner("exp.py", "-m", "i=range(4)", "ledger=" + str(project.parent / "ledger")))
    assert ledger(project) == {0: 1, 1: 1, 2: 1, 3: 1}
    for i in (1, 3):
        (project.parent / "ledger" / f"fail-{i}").unlink()
    resumed = mrunner("resume", sweep)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming 2 of 4" in resumed.stderr
    assert ledger(project) == {0: 1, 1: 2, 2: 1, 3: 2}
    states = experiments(mrunner, sweep)
    assert {i: (e["state"], e["attempt"]) for i, e in states.items()} == {
        0: ("completed", 0),
        1: ("completed", 1),
        2: ("completed", 0),
        3: ("completed", 1),
    }
    assert "nothing to resume" in mrunner("resume", sweep).stderr


def test_a_repeated_submission_runs_nothing_twice(mrunner, project):
    args = ("exp.py", "-m", "i=0,1", "ledger=" + str(project.parent / "ledger"))
    sweep_of(mrunner(*args))
    again = mrunner(*args)
    assert again.returncode == 0 and "2 of 2 experiments were already submitted" in again.stderr
    more = mrunner("exp.py", "-m", "i=0,1,2", "ledger=" + str(project.parent / "ledger"))
    assert "2 of 3" in more.stderr
    assert ledger(project) == {0: 1, 1: 1, 2: 1}
    mrunner(*args, "--force")
    assert ledger(project) == {0: 2, 1: 2, 2: 1}


def test_the_same_grid_on_another_storage_dir_is_a_new_run_and_a_changed_max_parallel_a_repeat(mrunner, project):
    """An experiment's identity includes where it runs: another storage_dir (results elsewhere) runs the grid
    again, while a key that changes neither where nor with what it runs (max_parallel) does not."""
    args = ("exp.py", "-m", "i=0,1", "ledger=" + str(project.parent / "ledger"))
    sweep_of(mrunner(*args))
    again = mrunner(*args, "context.max_parallel=1")
    assert again.returncode == 0 and "2 of 2 experiments were already submitted" in again.stderr
    elsewhere = project.parent / "elsewhere"
    moved = mrunner(*args, f"context.storage_dir={elsewhere}")
    assert moved.returncode == 0 and "already submitted" not in moved.stderr, moved.stderr
    assert ledger(project) == {0: 2, 1: 2}
    assert len(list(elsewhere.rglob("result.json"))) == 2
    back = mrunner(*args, f"context.storage_dir={elsewhere}")
    assert "2 of 2 experiments were already submitted" in back.stderr


def test_resume_refuses_in_one_line_an_option_its_backend_does_not_honour(mrunner, project):
    sweep = sweep_of(mrunner("exp.py", "-m", "i=0", "ledger=" + str(project.parent / "ledger")))
    refused = mrunner("resume", sweep, "--time", "5")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert f"--time: the local backend of sweep {sweep} has no time key; it takes none of these options" in (
        refused.stderr
    )
    assert "--time VALUE same as context.time=VALUE (honoured by slurm)" in " ".join(
        mrunner("resume", "--help").stdout.split()
    )
    # with the sweep named, its backend is known: the help says plainly that it refuses the option
    shown = " ".join(mrunner("resume", sweep, "--help").stdout.split())
    assert f"the local backend of sweep {sweep} honours none of them" in shown, shown
    assert (
        "--time VALUE same as context.time=VALUE (honoured by slurm; NOT by local, this sweep's backend: refused)"
        in (shown)
    )


def pids_of(mrunner, sweep: str) -> list[int]:
    return [
        int(e["backend_ref"][4:].split("@")[0])
        for e in experiments(mrunner, sweep).values()
        if (e["backend_ref"] or "").startswith("pid:")
    ]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_ctrl_c_terminates_the_children_and_records_them_cancelled(mrunner, project):
    process = start_mrunner(
        project,
        "exp.py",
        "-m",
        "i=range(4)",
        "sleep=60",
        "ledger=" + str(project.parent / "ledger"),
        "context.max_parallel=2",
    )
    wait_for(lambda: len(ledger(project)) == 2)
    sweep = json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]
    children = pids_of(mrunner, sweep)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert f"mrunner resume {sweep}" in stderr and "Traceback" not in stderr
    assert {e["state"] for e in experiments(mrunner, sweep).values()} == {"cancelled"}
    wait_for(lambda: not any(alive(pid) for pid in children), timeout=10)


def test_detached_sweep_is_followed_and_cancelled_from_another_shell(mrunner, project):
    """Backend.status and Backend.cancel on a sweep that runs in the background."""
    result = mrunner(
        "exp.py",
        "-m",
        "i=range(3)",
        "sleep=60",
        "ledger=" + str(project.parent / "ledger"),
        "context.max_parallel=2",
        "--detach",
    )
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.strip()
    wait_for(lambda: len(ledger(project)) == 2)
    states = experiments(mrunner, sweep)
    assert [states[i]["state"] for i in range(3)] == ["running", "running", "submitted"]
    follow = subprocess.Popen(
        [sys.executable, "-m", "mrunner", "logs", f"{sweep}/0", "-f"], cwd=project, stdout=subprocess.PIPE, text=True
    )
    one = mrunner("cancel", f"{sweep}/1")
    assert one.returncode == 0 and "cancelled 1 experiment" in one.stdout
    wait_for(lambda: len(ledger(project)) == 3)  # the waiting one took the freed slot
    children = pids_of(mrunner, sweep)
    everything = mrunner("cancel", sweep)
    assert "cancelled 2 experiments" in everything.stdout
    output, _ = follow.communicate(timeout=20)  # following ends when the experiment ends
    assert "started 0" in output
    assert {e["state"] for e in experiments(mrunner, sweep).values()} == {"cancelled"}
    wait_for(lambda: not any(alive(pid) for pid in children), timeout=10)
    assert "nothing to cancel" in mrunner("cancel", sweep).stdout


def test_killing_mrunner_mid_sweep_loses_nothing_and_duplicates_nothing(mrunner, project):
    """SIGKILL of mrunner itself: the running experiment finishes on its own; `status` learns how it ended,
    the ones never started become lost, and `resume` runs exactly those."""
    gate = project.parent / "ledger" / "gate"
    process = start_mrunner(
        project,
        "exp.py",
        "-m",
        "i=range(3)",
        f"gate={gate}",
        "ledger=" + str(project.parent / "ledger"),
        "context.max_parallel=1",
    )
    wait_for(lambda: len(ledger(project)) == 1)
    process.kill()
    process.communicate()
    sweep = json.loads(mrunner("status", "--json").stdout)[0]["sweep"]["id"]
    states = experiments(mrunner, sweep)  # the first still runs as an orphan
    assert states[0]["state"] == "running" and states[1]["state"] == states[2]["state"] == "lost"
    gate.touch()
    wait_for(lambda: experiments(mrunner, sweep)[0]["state"] == "completed", timeout=20)
    resumed = mrunner("resume", sweep)
    assert resumed.returncode == 0 and "resuming 2 of 3" in resumed.stderr
    assert ledger(project) == {0: 1, 1: 1, 2: 1}
    assert {e["state"] for e in experiments(mrunner, sweep).values()} == {"completed"}


def test_a_hydra_app_receives_the_parameters_as_overrides(mrunner, mrunner_home, tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text("lr: 1.0\nmodel:\n  depth: 1\nname: default\n")
    (tmp_path / "app.py").write_text(
        textwrap.dedent("""
        import json, os
        import hydra
        from omegaconf import OmegaConf

        @hydra.main(config_path="conf", config_name="config", version_base=None)
        def main(cfg):
            with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "result.json"), "w") as out:
                json.dump({"parameters": OmegaConf.to_container(cfg), "cwd": os.getcwd()}, out)

        main()
    """)
    )
    result = mrunner("app.py", "-m", "lr=0.5,0.25", "model.depth=3", "name='it\\'s $(x)'")
    assert result.returncode == 0, result.stderr
    found = results(mrunner_home, sweep_of(result))
    assert [found[i]["parameters"] for i in (0, 1)] == [
        {"lr": 0.5, "model": {"depth": 3}, "name": "it's $(x)"},
        {"lr": 0.25, "model": {"depth": 3}, "name": "it's $(x)"},
    ]
    experiment_dir = next((mrunner_home / "data" / "mrunner" / "storage").rglob("0-app"))
    assert (experiment_dir / ".hydra" / "overrides.yaml").exists()  # Hydra's outputs went to the experiment's folder


def test_spec_files_run_with_their_own_grid_times_the_command_line_grid(mrunner, mrunner_home, project):
    (project / "spec.py").write_text(
        textwrap.dedent(f"""
        from mrunner import create_experiments
        experiments_list = create_experiments(
            "exp.py", name="from spec", base_config={{"ledger": {str(project.parent / "ledger")!r}}},
            params_grid={{"i": [0, 1]}}, tags=["spec"], env={{"EXTRA": "1"}},
        )
    """)
    )
    dry = mrunner("spec.py", "-m", "sleep=0,0.01", "--dry-run")
    assert dry.returncode == 0 and "4 experiments" in dry.stdout and "from-spec" in dry.stdout
    result = mrunner("--spec", "spec.py", "-m", "sleep=0,0.01")
    found = results(mrunner_home, sweep_of(result))
    assert sorted((r["parameters"]["i"], r["parameters"]["sleep"]) for r in found.values()) == [
        (0, 0),
        (0, 0.01),
        (1, 0),
        (1, 0.01),
    ]
    assert ledger(project) == {0: 2, 1: 2}


def test_dry_run_shows_the_plan_and_commands_and_runs_nothing(mrunner, mrunner_home, project):
    """Backend.plan: the local backend's lines in the dry run."""
    result = mrunner("exp.py", "-m", "i=range(1000)", "j=range(1000)", "--dry-run", "context.max_parallel=3")
    assert result.returncode == 0
    assert "1000000 experiments" in result.stdout and "at most 3 at a time" in result.stdout
    assert f"$ {sys.executable} exp.py" in result.stdout and "first 5 of 1000000" in result.stdout
    assert ledger(project) == {} and not (mrunner_home / "data" / "mrunner" / "records.db").exists()


def test_secrets_and_environment_reach_only_the_experiment(mrunner, mrunner_home, project):
    """mrunner_check refuses a missing secret; mrunner_secrets delivers it through the child's environment;
    mrunner_experiment_env and the context's env add the rest."""
    (project / "env.py").write_text(
        textwrap.dedent("""
        import hashlib, json, os
        from mrunner import get_configuration
        get_configuration()
        token = os.environ.get("MY_FAKE_TOKEN", "")
        with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "result.json"), "w") as out:
            json.dump({"token_sha": hashlib.sha256(token.encode()).hexdigest(), "plain": os.environ.get("PLAIN")}, out)
    """)
    )
    missing = mrunner("env.py", "+context.secrets=[MY_FAKE_TOKEN]")
    assert missing.returncode != 0 and "forwards the secret MY_FAKE_TOKEN but it is not set" in missing.stderr
    token = "tok-3f9a1c-SECRET-VALUE"
    result = mrunner(
        "env.py", "context.secrets=[MY_FAKE_TOKEN]", "+context.env={PLAIN:visible}", env={"MY_FAKE_TOKEN": token}
    )
    assert result.returncode == 0, result.stderr
    (found,) = results(mrunner_home, sweep_of(result)).values()
    import hashlib

    assert found == {"token_sha": hashlib.sha256(token.encode()).hexdigest(), "plain": "visible"}
    for path in (mrunner_home / "data").rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    assert token not in result.stdout + result.stderr


def test_a_detached_sweep_records_into_the_records_it_was_submitted_to(mrunner_home, project, tmp_path):
    """Backend.submit with detach: the background supervisor records through the core's Store at the records the
    submission used (here not the default path), never at a path of its own."""
    from mrunner.planning import Plan, Request
    from mrunner.reporter import Reporter
    from mrunner.store import Store, default_path
    from mrunner.submission import submit

    records = Store(tmp_path / "elsewhere" / "records.db")
    request = Request(target=project / "exp.py", overrides=["i=0", f"ledger={project.parent / 'ledger'}"], detach=True)
    sweep, runs = submit(Plan(request, cwd=project), records, Reporter(quiet=True))
    assert len(runs) == 1
    wait_for(lambda: records.run(sweep.id, 0).state == "completed")
    assert records.run(sweep.id, 0).exit_code == 0
    assert not default_path().exists()


def test_a_sweep_that_ends_with_failures_shows_the_end_of_the_first_failing_log(mrunner, tmp_path):
    (tmp_path / "bad.py").write_text("import sys\nfor i in range(20):\n    print('line', i)\nsys.exit(4)\n")
    result = mrunner("bad.py", cwd=tmp_path)
    assert result.returncode == 1
    assert "failed (exit 4); the end of its output:" in result.stderr
    assert "  | line 19" in result.stderr and "  | line 10" in result.stderr and "line 9\n" not in result.stderr


def test_status_wait_follows_a_sweep_from_another_shell_to_its_end(mrunner, project):
    """`mrunner status SWEEP --wait` without a terminal: one line per change of the counts, the final counts
    once, and exit 1 because an experiment failed."""
    folder = project.parent / "ledger"
    gate = folder / "gate"
    (folder / "fail-1").touch()
    result = mrunner(
        "exp.py", "-m", "i=range(3)", f"gate={gate}", f"ledger={folder}", "context.max_parallel=3", "--detach"
    )
    sweep = sweep_of(result)
    wait_for(lambda: len(ledger(project)) == 3)
    follow = subprocess.Popen(
        [sys.executable, "-m", "mrunner", "status", sweep, "--wait"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert follow.stderr is not None
    first = follow.stderr.readline().strip()  # it follows: then the experiments may end
    gate.touch()
    out, err = follow.communicate(timeout=60)
    assert follow.returncode == 1, err
    lines = [first, *err.strip().splitlines()]
    assert lines[0] == f"sweep {sweep}: 3 running"
    assert len(set(lines)) == len(lines)  # a line only when the counts change
    assert out.count("2 completed, 1 failed") == 1 and "2 completed, 1 failed" not in err  # the end, once
    again = mrunner("status", sweep, "--wait")  # an ended sweep: at once
    assert again.returncode == 1 and again.stderr == ""


def test_each_point_gets_its_own_gpu_count_and_no_gpu_is_shared(mrunner, mrunner_home, project):
    """A per-point gpus_per_experiment: each experiment gets as many GPUs as its point asks, never one another
    experiment holds at the same time; a count above the GPUs listed is refused before anything runs."""
    result = mrunner(
        "exp.py", "-m", "context.gpus_per_experiment=1,2", "i=range(3)", "sleep=0.3", "context.gpus=[0,1,2]"
    )
    sweep = sweep_of(result)
    assert result.returncode == 0, result.stderr
    found = results(mrunner_home, sweep)
    assert [len(found[index]["cuda"].split(",")) for index in range(6)] == [1, 1, 1, 2, 2, 2]
    intervals = [(r["start"], r["end"], set(r["cuda"].split(","))) for r in found.values()]
    for start, end, gpus in intervals:
        for other_start, other_end, other in intervals:
            if (other_start, other_end) != (start, end) and other_start < end and other_end > start:
                assert not gpus & other, "two experiments held the same GPU at once"
    assert {gpu for _, _, gpus in intervals for gpu in gpus} <= {"0", "1", "2"}
    shown = mrunner("status", sweep)
    assert "resources: gpus_per_experiment=1 (3), gpus_per_experiment=2 (3)" in shown.stdout, shown.stdout
    refused = mrunner("exp.py", "-m", "context.gpus_per_experiment=1,4", "context.gpus=[0,1,2]")
    assert refused.returncode != 0 and "gpus_per_experiment is 4 but gpus lists only 3" in refused.stderr


def test_logs_of_an_experiment_that_has_not_started_says_so(mrunner, project, tmp_path):
    """An experiment still queued has no output yet: `logs` says so in one line, rather than printing nothing
    as if it had run and printed nothing."""
    gate = tmp_path / "gate"
    sweep = sweep_of(
        mrunner("exp.py", "-m", "i=0,1", f"ledger={tmp_path / 'ledger'}", f"gate={gate}", "context.max_parallel=1",
                "--detach", "--quiet")
    )  # fmt: skip
    wait_for(lambda: experiments(mrunner, sweep), lambda s: s[0]["state"] == "running", what="experiment 0 running")
    shown = mrunner("logs", f"{sweep}/1")
    gate.touch()
    assert shown.returncode == 0 and shown.stdout == "", shown
    assert shown.stderr == (
        f"mrunner: experiment {sweep}/1 has not started yet (submitted: queued locally); "
        f"`mrunner logs {sweep}/1 -f` waits for its output\n"
    )
    wait_for(lambda: experiments(mrunner, sweep), lambda s: all(e["state"] == "completed" for e in s.values()))
