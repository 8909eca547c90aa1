"""Secrets on the local backend: a token reaches the experiment's environment and no other place (process
arguments, logs, records, dry-run output, contexts, snapshots); missing credentials stop a submission
before anything is recorded."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mrunner.records import TERMINAL
from mrunner.store import Store
from mrunner.testing import wait_for, write_context
from tests.fake_neptune import FakeNeptuneServer
from tests.leaks import CmdlineWatch, assert_secret_only_in, fake_secret, secret_places

# The experiment proves it received the secrets by writing their hashes, then sleeps so that the
# command-line scan sees it running.
LEAK_EXPERIMENT = """\
import hashlib, json, os, time
import mrunner

config = mrunner.get_configuration()
received = {name: hashlib.sha256(os.environ.get(name, "").encode()).hexdigest()
            for name in ("NEPTUNE_API_TOKEN", "MY_FAKE_TOKEN")}
with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "received.json"), "w") as stream:
    json.dump(received, stream)
print("experiment", config.seed, "started", flush=True)
time.sleep(config.sleep)
"""


@pytest.fixture
def user_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home folder (no ~/.neptune.yaml of the developer's) and no Neptune credentials in the env."""
    home = tmp_path_factory.mktemp("user-home")
    monkeypatch.setenv("HOME", str(home))
    for name in ("NEPTUNE_API_TOKEN", "NEPTUNE_PROJECT", "NEPTUNE_MODE", "MY_FAKE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def fake_neptune() -> Iterator[FakeNeptuneServer]:
    """A Neptune server for the token to name (tests/fake_neptune.py): the experiments here never call it."""
    with FakeNeptuneServer() as server:
        yield server


@pytest.mark.parametrize("detach", [False, True], ids=["inline", "detached"])
def test_secrets_reach_only_the_experiments_environment(mrunner, mrunner_home, user_home, tmp_path, detach, request):
    """mrunner_secrets (the tracker's token from ~/.neptune.yaml, the context's `secrets`) delivered by the
    local backend; mrunner_experiment_env's project recorded; mrunner_sweep_submitted's link printed."""
    server = request.getfixturevalue("fake_neptune")  # the submission asks whether the token's server answers
    neptune_token, my_token = server.token(fake_secret("neptune")), fake_secret("mine")
    # The Neptune token only in ~/.neptune.yaml: it can reach the experiment through mrunner_secrets alone.
    credentials_file = user_home / ".neptune.yaml"
    credentials_file.write_text(f"api_token: {neptune_token}\nproject: leak/test\n")
    write_context(
        mrunner_home,
        "tracked",
        {"backend": "local", "neptune": True, "neptune_mode": "async", "secrets": ["MY_FAKE_TOKEN"], "max_parallel": 2},
    )
    (tmp_path / "leak_exp.py").write_text(LEAK_EXPERIMENT)
    env = {"MY_FAKE_TOKEN": my_token}
    grid = ["+context=tracked", "leak_exp.py", "-m", "seed=1,2", "+sleep=1.5"]

    dry = mrunner(*grid, "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    with CmdlineWatch(neptune_token, witness="leak_exp.py") as watch_neptune, CmdlineWatch(my_token) as watch_mine:
        done = mrunner(*grid, *(["--detach"] if detach else []), env=env)
        assert done.returncode == 0, done.stderr
        sweep = Store().sweeps()[0]
        wait_for(lambda: all(run.state in TERMINAL for run in Store().runs(sweep.id)), what="the sweep's end")
    assert watch_neptune.witnessed, "the command-line scan never saw the experiment running"
    link = f"neptune: experiments tagged {sweep.id} at {server.url}/leak/test/runs/table?query="
    assert link in done.stderr  # mrunner_sweep_submitted
    assert [run.state for run in Store().runs(sweep.id)] == ["completed", "completed"]

    shown = {
        "dry run": dry.stdout + dry.stderr,
        "submission": done.stdout + done.stderr,
        **{
            f"mrunner {' '.join(args)}": (lambda r: r.stdout + r.stderr)(mrunner(*args, env=env))
            for args in (
                ["status"],
                ["status", sweep.id],
                ["status", sweep.id, "--json"],
                ["logs", f"{sweep.id}/0"],
                ["context", "show", "tracked"],
                ["plugins"],
            )
        },
    }
    places = [mrunner_home, tmp_path, user_home]
    assert_secret_only_in(
        neptune_token, paths=places, outputs=shown, cmdlines=watch_neptune, allowed=[credentials_file]
    )
    assert_secret_only_in(my_token, paths=places, outputs=shown, cmdlines=watch_mine)

    for run in Store().runs(sweep.id):
        folder = Path(sweep.context["storage_dir"]) / sweep.project / sweep.id / f"{run.index}-{run.name}"
        received = json.loads((folder / "received.json").read_text())
        assert received == {
            "NEPTUNE_API_TOKEN": hashlib.sha256(neptune_token.encode()).hexdigest(),
            "MY_FAKE_TOKEN": hashlib.sha256(my_token.encode()).hexdigest(),
        }
        assert run.env["NEPTUNE_PROJECT"] == "leak/test" and "NEPTUNE_API_TOKEN" not in run.env


def test_the_leak_helper_finds_a_secret_in_files_outputs_and_arguments(tmp_path):
    """The helper itself must be able to fail: plant the secret everywhere it looks."""
    secret = fake_secret("planted")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "records.db-wal").write_bytes(b"\0\1" + secret.encode() + b"\0")
    with CmdlineWatch(secret) as watch:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)", secret])
        time.sleep(0.5)
        child.wait()
    places = secret_places(secret, paths=[tmp_path], outputs={"status": f"x {secret} y"}, cmdlines=watch)
    assert any("records.db-wal" in place for place in places)
    assert "output of status" in places
    assert any(place.startswith(f"arguments of process {child.pid}") for place in places)
    with pytest.raises(AssertionError, match="leaked"):
        assert_secret_only_in(secret, paths=[tmp_path])
    assert_secret_only_in(secret, paths=[tmp_path], allowed=[tmp_path / "sub" / "records.db-wal"])


@pytest.mark.parametrize(
    "setup, missing",
    [({}, "NEPTUNE_API_TOKEN"), ({"NEPTUNE_API_TOKEN": "x"}, "project")],
    ids=["no-token", "no-project"],
)
def test_neptune_without_credentials_is_a_one_line_error_and_nothing_is_recorded(
    mrunner, mrunner_home, user_home, tmp_path, setup, missing
):
    """mrunner_check refuses a tracked context without credentials, for a submission and a dry run."""
    write_context(mrunner_home, "tracked", {"backend": "local", "neptune": True})
    (tmp_path / "train.py").write_text("import mrunner\nmrunner.get_configuration(with_neptune=True)\n")
    for extra in ([], ["--dry-run"]):
        done = mrunner("+context=tracked", "train.py", "-m", "lr=1,2", *extra, env=setup)
        assert done.returncode != 0
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mrunner: error: context tracked tracks experiments in Neptune")
        assert missing in lines[0]
    assert Store().sweeps() == []
    assert not list((mrunner_home / "data").rglob("*.log")), "no experiment may have started"


@pytest.mark.parametrize("mode", ["offline", "debug"])
def test_offline_and_debug_modes_need_no_credentials(mrunner, mrunner_home, user_home, tmp_path, mode):
    write_context(mrunner_home, "tracked", {"backend": "local", "neptune": True, "neptune_mode": mode})
    (tmp_path / "train.py").write_text("print('hi')\n")
    done = mrunner("+context=tracked", "train.py", "--dry-run")
    assert done.returncode == 0, done.stderr


def test_a_token_under_env_or_an_unknown_mode_is_refused(mrunner, mrunner_home, user_home, tmp_path):
    (tmp_path / "train.py").write_text("print('hi')\n")
    write_context(mrunner_home, "leaky", {"backend": "local", "env": {"NEPTUNE_API_TOKEN": "abc"}})
    done = mrunner("+context=leaky", "train.py", "--dry-run")
    assert done.returncode != 0 and "under `env`" in done.stderr and "abc" not in done.stderr
    write_context(mrunner_home, "odd", {"backend": "local", "neptune": True, "neptune_mode": "turbo"})
    done = mrunner("+context=odd", "train.py", "--dry-run")
    assert done.returncode != 0 and "neptune_mode 'turbo' is not one of" in done.stderr
    write_context(mrunner_home, "reader", {"backend": "local", "neptune": True, "neptune_mode": "read-only"})
    done = mrunner("+context=reader", "train.py", "--dry-run")
    assert done.returncode != 0 and "read-only only opens existing Neptune runs" in done.stderr
