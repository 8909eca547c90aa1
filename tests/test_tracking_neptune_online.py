"""Live Neptune tracking, the real ``neptune`` client (async mode) against ``FakeNeptuneServer`` (Neptune's hosted
service has shut down and no self-hosted server can run here: see tests/fake_neptune.py): one run per
experiment across its attempts, named and tagged after it, its parameters, the points ``mrunner.report`` forwards
and the script's own logging through ``mrunner.neptune_run()``; the API token only as a secret. A server down
during a run or at the experiment's start: the experiment goes on in bounded time, and a later `results`,
`pull` or `status --wait` sends what Neptune missed into the same run, each point once. A server down at
submission: one line, nothing recorded."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from mrunner.testing import ended, experiments, wait_for, write_context
from tests.fake_neptune import FakeNeptuneServer
from tests.leaks import CmdlineWatch, assert_secret_only_in, fake_secret, outputs_of

#: The client's OAuth session refuses plain http unless told (a real server is https): the fake is http.
INSECURE = {"OAUTHLIB_INSECURE_TRANSPORT": "1"}
PROJECT = "fake/proj"

SCRIPT = """
import sys, mrunner
c = mrunner.get_configuration(with_neptune=True)
mrunner.neptune_run()["own/attempt"].append(mrunner.attempt())
for step in range(3):
    mrunner.report({"loss": c.lr * (3 - step)}, step=step + 3 * mrunner.attempt())
if c.lr == 0.2 and mrunner.attempt() == 0:
    sys.exit(3)
"""


@pytest.fixture
def fake_neptune() -> Iterator[FakeNeptuneServer]:
    pytest.importorskip("neptune")
    with FakeNeptuneServer() as server:
        yield server


def live(mrunner_home, name: str, **keys: object) -> str:
    """A local context tracking live in Neptune (async mode) in the fake's project."""
    context = {"backend": "local", "neptune": True, "neptune_mode": "async", "neptune_project": PROJECT, **keys}
    return write_context(mrunner_home, name, {**context, "env": INSECURE})


def custom_id(sweep: str, index: int) -> str:
    from mrunner.tracking import _custom_run_id

    return _custom_run_id({"sweep": sweep, "index": index})


def test_one_run_per_experiment_across_attempts_the_token_only_a_secret(fake_neptune, mrunner, mrunner_home, tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    context = live(mrunner_home, "np", retry_failed=1)
    token = fake_neptune.token(fake_secret("neptune"))
    with CmdlineWatch(token, witness="train.py") as arguments:
        done = mrunner(
            f"+context={context}",
            "train.py",
            "-m",
            "lr=0.1,0.2",
            "--wait",
            env={"NEPTUNE_API_TOKEN": token, **INSECURE},
        )
    assert done.returncode == 0, done.stderr
    sweep = done.stdout.strip().splitlines()[-1]
    states = experiments(mrunner, sweep).values()
    assert [(e["state"], e["attempt"]) for e in states] == [("completed", 0), ("completed", 1)]
    assert f"neptune: experiments tagged {sweep} at {fake_neptune.url}/{PROJECT}/runs/table" in done.stderr

    assert len(fake_neptune.runs) == 2  # no other run: the retry joined its experiment's
    for index, lr in ((0, 0.1), (1, 0.2)):
        run = fake_neptune.by_custom_id(custom_id(sweep, index))
        assert (run.name, run.project, run.parameters()) == ("train", PROJECT, {"lr": lr})
        assert sweep in run.tags
        assert (run.fields["mrunner/sweep"], run.fields["mrunner/index"]) == (sweep, index)
        expected = [(s, pytest.approx(lr * (3 - s))) for s in range(3)]
        if index == 1:  # the retry continued the run: its steps after the first attempt's, each once
            expected += [(3 + s, pytest.approx(lr * (3 - s))) for s in range(3)]
        assert run.points("metrics/loss") == expected
        assert [value for _, value in run.points("own/attempt")] == list(range(1 + index))
        assert run.refused == {}
    assert fake_neptune.unknown == []
    assert fake_neptune.tokens == {token}  # it got there

    assert arguments.witnessed
    shown = {"submission": done.stdout + done.stderr}
    shown.update(outputs_of(mrunner, ["status", sweep], ["logs", f"{sweep}/1"], ["context", "show", context]))
    assert_secret_only_in(token, paths=[mrunner_home, tmp_path], outputs=shown, cmdlines=arguments)


LOSING = """
import os, time, mrunner
mrunner.get_configuration()
for step in (0, 1):
    mrunner.report({"loss": 1.0 / (1 + step)}, step=step)
while not os.path.exists("gate"):
    time.sleep(0.05)
for step in (2, 3):
    mrunner.report({"loss": 1.0 / (1 + step)}, step=step)
print("went on", flush=True)
"""


@pytest.mark.slow  # waits out Neptune's bounded exit (FINISH_SECONDS, 10 s) on purpose: that bound is what it tests
def test_a_server_down_during_a_run_the_experiment_ends_and_results_uploads_the_rest_once(
    fake_neptune, mrunner, mrunner_home, tmp_path
):
    """The server goes away once the run's first points arrived: the experiment's exit waits
    ``FINISH_SECONDS`` for Neptune (its own default: a minute), warns once and notes it in the metrics file;
    the next `results` (the server back) sends the steps the run lacks into it, each once (Neptune refuses the
    steps it holds), and a second `results` sends nothing."""
    import time

    from mrunner.tracking import FINISH_SECONDS

    context = live(mrunner_home, "cut")
    (tmp_path / "rank.py").write_text(LOSING.replace('"gate"', repr(str(tmp_path / "gate"))))
    (tmp_path / "train.py").write_text(  # the process of interest is a child, so its exit is timed from outside
        "import subprocess, sys, time\n"
        "rank = subprocess.Popen([sys.executable, 'rank.py'], stdout=subprocess.PIPE, text=True)\n"
        "for line in rank.stdout:\n"
        "    print(line, end='', flush=True)\n"
        "    if line.startswith('went on'):\n"
        "        break\n"
        "last = time.monotonic()\n"
        "assert rank.wait() == 0\n"
        "print('EXIT', time.monotonic() - last, flush=True)\n"
    )
    env = {"NEPTUNE_API_TOKEN": fake_neptune.token(), **INSECURE}
    submitted = mrunner(f"+context={context}", "train.py", "lr=1", "--detach", env=env)
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    identity = custom_id(sweep, 0)

    def sent() -> bool:
        found = [run for run in fake_neptune.runs.values() if run.custom_id == identity]
        return bool(found and len(found[0].points("metrics/loss")) == 2)

    fake_neptune.wait(sent, timeout=120, what="steps 0 and 1")
    fake_neptune.stop()
    (tmp_path / "gate").write_text("")

    started = time.monotonic()
    assert ended(mrunner, sweep, timeout=120)[0]["state"] == "completed"
    log = mrunner("logs", f"{sweep}/0").stdout
    assert "went on" in log and log.count("Neptune did not take this process's metrics") == 1, log
    assert "`mrunner results` uploads them later" in log
    # The exit's bound, then Neptune's own threads ending: 10 s more is ample, where Neptune's own stop waits
    # a minute for a server that is gone.
    exit_seconds = float(log.split("EXIT ")[1].split()[0])
    assert FINISH_SECONDS <= exit_seconds < FINISH_SECONDS + 10, log
    assert time.monotonic() - started < 120
    run = fake_neptune.by_custom_id(identity)
    assert run.points("metrics/loss") == [(0, 1.0), (1, 0.5)]

    down = mrunner("results", sweep, env=env)  # the server still down: one warning, the table as usual
    assert down.returncode == 0 and f"Neptune at project {PROJECT} of {fake_neptune.url}" in down.stderr, down.stderr
    assert json.loads(mrunner("results", sweep, "--json", env=env).stdout)[0]["loss"] == 0.25

    fake_neptune.start()  # the server is back
    shown = mrunner("results", sweep, env=env)
    assert shown.returncode == 0 and "Neptune: uploaded the new metrics of 1 experiment" in shown.stderr, shown.stderr
    points = [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3)), (3, 0.25)]
    assert run.points("metrics/loss") == points
    assert [step for step, _ in run.refused["metrics/loss"]] == [0, 1]  # sent by the experiment: refused again
    requests = len(fake_neptune.requests)
    again = mrunner("results", sweep, env=env)
    assert again.returncode == 0 and "uploaded" not in again.stderr, again.stderr
    assert len(fake_neptune.requests) == requests  # nothing new: no request
    assert len(fake_neptune.runs) == 1 and run.points("metrics/loss") == points
    assert fake_neptune.unknown == []


@pytest.mark.slow  # waits out Neptune's bounded start (START_SECONDS, 15 s) on purpose: that bound is what it tests
def test_a_server_down_at_the_start_the_experiment_trains_on_and_pull_makes_its_run_once(
    fake_neptune, mrunner, mrunner_home, tmp_path
):
    """The server answered at submission and is gone when the experiment starts its run
    (``get_configuration(with_neptune=True)``): the start gives up after ``START_SECONDS`` (Neptune's own
    retries: a minute), warning once, ``neptune_run()`` is None, and the experiment trains on. Its retry, the
    server back, does not start the run either (its steps would pass the lost ones, which Neptune would then
    refuse), and completes; `pull` makes the run, named, tagged, holding the parameters, with every step of
    both attempts once, and `status --wait` later sends nothing."""
    from mrunner.tracking import START_SECONDS

    context = live(mrunner_home, "late", retry_failed=1)
    (tmp_path / "train.py").write_text(
        "import os, sys, time, mrunner, neptune\n"  # the client imported first, as a script using Neptune does
        "a = mrunner.attempt()\n"
        f"while not os.path.exists(os.path.join({str(tmp_path)!r}, f'gate{{a}}')):\n"
        "    time.sleep(0.05)\n"
        "started = time.monotonic()\n"
        "c = mrunner.get_configuration(with_neptune=True)\n"
        "print('FIRST', time.monotonic() - started, mrunner.neptune_run(), flush=True)\n"
        "for step in range(3):\n"
        "    mrunner.report({'loss': 1.0 / (1 + step) + a}, step=step + 3 * a)\n"
        "print('trained', flush=True)\n"
        "sys.exit(3 if a == 0 else 0)\n"
    )
    env = {"NEPTUNE_API_TOKEN": fake_neptune.token(), **INSECURE}
    submitted = mrunner(f"+context={context}", "train.py", "lr=1", "--detach", env=env)
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    fake_neptune.stop()
    (tmp_path / "gate0").write_text("")
    wait_for(
        lambda: experiments(mrunner, sweep)[0]["attempt"],
        lambda attempt: attempt == 1,
        timeout=180,
        what="the retry",
    )
    log = mrunner("logs", f"{sweep}/0", "--attempt", "0").stdout
    assert "trained" in log and log.count("Neptune did not start this experiment's run") == 1, log
    assert "`mrunner results` uploads them later" in log
    first, shown_run = log.split("FIRST ")[1].split()[:2]
    assert START_SECONDS <= float(first) < START_SECONDS + 5 and shown_run == "None", log

    fake_neptune.start()
    (tmp_path / "gate1").write_text("")
    assert ended(mrunner, sweep, timeout=180)[0]["state"] == "completed"
    log = mrunner("logs", f"{sweep}/0").stdout
    assert "trained" in log and log.count("(Abandoned: an earlier process of this experiment lost Neptune)") == 1, log
    assert fake_neptune.runs == {}  # nothing live: the retry left Neptune to the catch-up

    pulled = mrunner("pull", sweep, "--to", str(tmp_path / "out"), env=env)
    assert pulled.returncode == 0 and "Neptune: uploaded the new metrics of 1 experiment" in pulled.stderr, (
        pulled.stderr
    )
    run = fake_neptune.by_custom_id(custom_id(sweep, 0))
    assert (run.name, run.parameters()) == ("train", {"lr": 1}) and sweep in run.tags
    points = [(s + 3 * a, pytest.approx(1.0 / (1 + s) + a)) for a in (0, 1) for s in range(3)]
    assert run.points("metrics/loss") == points and run.refused == {}
    waited = mrunner("status", sweep, "--wait", env=env)
    assert waited.returncode == 0 and "uploaded" not in waited.stderr, waited.stderr
    assert len(fake_neptune.runs) == 1 and run.points("metrics/loss") == points


def test_a_server_down_at_submission_is_refused_before_anything_is_recorded(mrunner, mrunner_home, tmp_path):
    pytest.importorskip("neptune")
    server = FakeNeptuneServer()  # its port, with nobody listening
    context = live(mrunner_home, "down")
    (tmp_path / "train.py").write_text("import mrunner\n")
    env = {"NEPTUNE_API_TOKEN": server.token(), **INSECURE}
    refused = mrunner(f"+context={context}", "train.py", "lr=1", env=env)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert f"tracks experiments in Neptune (async), but the server at {server.url} does not answer" in refused.stderr
    assert json.loads(mrunner("status", "--json").stdout) == []
    assert mrunner(f"+context={context}", "train.py", "lr=1", "--dry-run", env=env).returncode == 0  # no server asked
    with server:  # the same server up: taken
        taken = mrunner(f"+context={context}", "train.py", "lr=1", "--wait", env=env)
    assert taken.returncode == 0, taken.stderr
