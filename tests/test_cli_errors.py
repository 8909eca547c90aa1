"""Bad input: each a clear one-line error, a non-zero exit, no traceback, nothing submitted or recorded."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from mrunner.testing import write_context

SCRIPT = "from mrunner import get_configuration\nprint(get_configuration())\n"


def recorded_sweeps(home: Path) -> int:
    db = home / "data" / "mrunner" / "records.db"
    if not db.exists():
        return 0
    return sqlite3.connect(db).execute("SELECT COUNT(*) FROM sweeps").fetchone()[0]


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode != 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mrunner: error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "train.py").write_text(SCRIPT)
    return tmp_path


@pytest.mark.parametrize(
    "args, fragments",
    [
        ([], ["no TARGET"]),
        (["missing.py"], ["target missing.py does not exist"]),
        (["train.py", "lr=0.1,0.01"], ["'lr=0.1,0.01' is a sweep of 2 values", "add -m"]),
        (["train.py", "-m", "lr=0.1,,2"], ["invalid override 'lr=0.1,,2' at character 8"]),
        (["train.py", "-m", "lr=range(5,1)"], ["grid is empty"]),
        (["train.py", "+context=nowhere"], ["unknown context 'nowhere'", "local"]),
        # `+context=$CLUSTER` with the variable unset: not run on the current context instead
        (["train.py", "+context="], ["context named is empty", "+context=NAME"]),
        (["train.py", "context="], ["context named is empty"]),
        (["--context", "", "train.py"], ["context named is empty"]),
        (
            ["train.py", "context.max_paralel=2"],
            ["unknown key 'max_paralel'", "did you mean 'max_parallel'", "valid keys:"],
        ),
        (["train.py", "context.max_parallel=many"], ["'max_parallel' must be int"]),
        (["train.py", "--partition", "gpu"], ["--partition: the local backend of context local has no partition key"]),
    ],
)
def test_bad_command_lines(mrunner, project, mrunner_home, args, fragments):
    result = mrunner(*args)
    assert_one_line_error(result, *fragments)
    assert recorded_sweeps(mrunner_home) == 0


@pytest.mark.parametrize(
    "spec, fragments",
    [
        ("x = 1\nexperiments_list = x\ndel experiments_list\n", ["does not define experiments_list"]),
        ("experiments_list = []\nraise ValueError('bad grid')\n", ["raised ValueError at line 2: bad grid"]),
    ],
)
def test_bad_spec_files(mrunner, project, mrunner_home, spec, fragments):
    (project / "spec.py").write_text(spec)
    assert_one_line_error(mrunner("spec.py", "--dry-run"), "spec spec.py", *fragments)
    assert recorded_sweeps(mrunner_home) == 0


def test_backend_not_installed_names_the_package(mrunner, project, mrunner_home, monkeypatch):
    from mrunner import plugins
    from mrunner.errors import MrunnerError

    # slurm absent from what was found on sys.path (MRUNNER_PLUGINS leaving it out is another line: test_plugins.py)
    monkeypatch.setattr(plugins, "backends", lambda: {"local": object()})
    with pytest.raises(MrunnerError) as refused:
        plugins.backend("slurm")
    for said in ("backend 'slurm' is not installed", "pip install mrunner-slurm", "installed backends: local"):
        assert said in str(refused.value), refused.value
    write_context(mrunner_home, "cluster", "backend: slurm\nslurm_url: somewhere\n")
    result = mrunner("train.py", "+context=cluster", env={"MRUNNER_PLUGINS": "local"})
    assert_one_line_error(result, "backend 'slurm' is installed but MRUNNER_PLUGINS='local' leaves it out")
    write_context(mrunner_home, "odd", "backend: quantum\n")
    assert_one_line_error(mrunner("train.py", "context=odd"), "backend 'quantum' is not installed")


def test_unreadable_yaml(mrunner, project, mrunner_home):
    write_context(mrunner_home, "broken", "backend: local\nmax_parallel: [1\n")
    result = mrunner("train.py", "+context=broken")
    assert_one_line_error(result, "broken.yaml is not valid YAML at line")
    assert recorded_sweeps(mrunner_home) == 0


def test_debug_shows_the_traceback(mrunner, project):
    result = mrunner("--debug", "train.py", "+context=nowhere")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_current_context_is_used_when_none_is_named(mrunner, project, mrunner_home):
    write_context(mrunner_home, "mine", "backend: local\nmax_parallel: 1\n")
    assert mrunner("config", "set", "current_context", "mine").returncode == 0
    result = mrunner("train.py", "--dry-run")
    assert "context mine" in result.stdout and "at most 1 at a time" in result.stdout
    assert os.path.exists(mrunner_home / "config" / "mrunner" / "config.yaml")


@pytest.mark.parametrize("flag", ["--wait", "--all"])
def test_status_options_about_one_sweep_need_a_sweep(mrunner, mrunner_home, flag):
    # without a SWEEP they used to be ignored: `status --wait` listed the sweeps and returned at once
    assert_one_line_error(mrunner("status", flag), f"status {flag} is about one sweep", f"mrunner status SWEEP {flag}")


def test_login_to_a_backend_that_needs_none_is_refused_in_one_line(mrunner, mrunner_home):
    """`mrunner login`/`logout` on a local context: the default Backend.login and Backend.logout refuse it, and
    the list of open logins asks every backend's Backend.logins (none open)."""
    write_context(mrunner_home, "here", "backend: local\n")
    assert_one_line_error(mrunner("login", "here"), "context here: backend local needs no login")
    assert_one_line_error(mrunner("logout", "here"), "context here: backend local needs no login")
    listed = mrunner("login")
    assert listed.returncode == 0, listed.stderr
    assert "no login is open" in listed.stdout


DURATION = "a number and a unit s, m, h, d or w"


@pytest.mark.parametrize(
    "args, fragments",
    [
        # a value starting with `-` reached argparse's "expected one argument", naming neither value nor form
        (["gc", "--older-than", "-2d"], ["--older-than '-2d'", DURATION]),
        (["gc", "--older-than", "-1h", "--dry-run"], ["--older-than '-1h'", DURATION]),
        (["gc", "--older-than", "0x"], ["--older-than '0x'", DURATION]),
        (["gc", "--older-than", "2 days"], ["--older-than '2 days'", DURATION]),
        (["gc", "--older-than", ""], ["--older-than ''", DURATION]),
        (["gc", "--older-than", "nan"], ["--older-than 'nan'", DURATION]),
        # a duration past any sweep's age kept everything, without a word
        (["gc", "--older-than", "99999999999999999999d"], ["--older-than '99999999999999999999d'", "100 years"]),
        (["status", "--limit", "-5"], ["--limit", "at least 1"]),
        (["status", "--limit", "0"], ["--limit", "at least 1"]),
        (["status", "--limit", "many"], ["--limit", "invalid int value"]),
        (["logs", "x/0", "--attempt", "-2h"], ["--attempt", "invalid int value: '-2h'"]),
        (["train.py", "--time", "-1h"], ["--time: the local backend of context local has no time key"]),
        (["train.py", "--nodes", "-1"], ["--nodes: the local backend of context local has no nodes key"]),
        (["train.py", "context.grace_period=-1"], ["'grace_period' must be at least 0"]),
        # centuries overflowed the wrapper's timer: a traceback in the experiment's log, and no kill after it
        (["train.py", "context.grace_period=99999999999999999999"], ["'grace_period' must be at most 86400"]),
        (["train.py", "context.max_parallel=0"], ["'max_parallel' must be at least 1"]),
        (["train.py", "context.retry_failed=-1"], ["'retry_failed' must be at least 0"]),
        (["train.py", "context.max_parallel=1e400"], ["'max_parallel' must be int"]),
    ],
)
def test_bad_numbers_and_durations_name_the_option_in_one_line(mrunner, project, mrunner_home, args, fragments):
    result = mrunner(*args)
    assert_one_line_error(result, *fragments)
    assert recorded_sweeps(mrunner_home) == 0


def test_a_limit_beyond_what_the_records_count_lists_every_sweep(mrunner, project, mrunner_home):
    """``--limit`` of 20 digits was a traceback (OverflowError in SQLite): more than there are lists them all."""
    assert mrunner("train.py").returncode == 0
    listed = mrunner("status", "--limit", "99999999999999999999")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert listed.stdout.count("train") == 1, listed.stdout
