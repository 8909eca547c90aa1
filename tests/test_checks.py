"""What can be checked before recording is checked before recording, and --dry-run runs the same checks:
each a one-line error, nothing recorded."""

from __future__ import annotations

import json

import pytest

from tests.test_cli_errors import SCRIPT, assert_one_line_error, recorded_sweeps

SPEC = """\
from mrunner import create_experiments
experiments_list = create_experiments({script!r}, params_grid={{"a": [1, 2]}})
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "train.py").write_text(SCRIPT)
    return tmp_path


def both(mrunner, *args):
    """The submission and its dry run, which must fail alike."""
    return mrunner(*args), mrunner(*args, "--dry-run")


@pytest.mark.parametrize(
    "script, files, fragments",
    [
        ("missing.py", {}, ["its script missing.py (missing.py) does not exist in the project"]),
        ("python3 lib/missing.py --fast", {}, ["its script lib/missing.py (lib/missing.py) does not exist"]),
        ("ignored.py", {"ignored.py": SCRIPT, ".gitignore": "ignored.py\n"}, ["left out of the code snapshot"]),
        ("./run.sh", {"run.sh": "#!/bin/sh\necho hi\n"}, ["./run.sh runs as itself but is not executable", "chmod +x"]),
    ],
)
def test_a_spec_whose_script_cannot_run_is_refused(mrunner, project, mrunner_home, script, files, fragments):
    for name, text in files.items():
        (project / name).write_text(text)
    (project / "spec.py").write_text(SPEC.format(script=script))
    for result in both(mrunner, "spec.py"):
        assert_one_line_error(result, *fragments)
    assert recorded_sweeps(mrunner_home) == 0


def test_a_non_python_target_runs_as_itself_when_executable(mrunner, project, mrunner_home):
    script = project / "run.sh"
    script.write_text('#!/bin/sh\necho "shell ran with $# arguments"\n')
    for result in both(mrunner, "run.sh"):
        assert_one_line_error(result, "not a Python file, so it runs as itself, but it is not executable", "chmod +x")
    assert recorded_sweeps(mrunner_home) == 0
    script.chmod(0o755)
    result = mrunner("run.sh", "--", "x", "y")
    assert result.returncode == 0, result.stderr
    assert "shell ran with 2 arguments" in mrunner("logs", f"{result.stdout.split()[0]}/0").stdout


def test_a_script_path_with_spaces_and_shell_characters_runs_exactly_that_file(mrunner, project):
    name = "it's my $HOME train.py"
    (project / name).write_text("print('the right file ran')\n")
    (project / "it's").write_text("print('the wrong file ran')\n")
    dry = mrunner(name, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    result = mrunner(name)
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.split()[0]
    assert "the right file ran" in mrunner("logs", f"{sweep}/0").stdout
    command = json.loads(mrunner("status", sweep, "--json").stdout)["experiments"][0]["command"]
    assert command[-1] == name


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        (["context.max_parallel=0"], ["key 'max_parallel' must be at least 1, got 0"]),
        (["context.gpus_per_experiment=0"], ["key 'gpus_per_experiment' must be at least 1"]),
        (["context.grace_period=-1"], ["key 'grace_period' must be at least 0, got -1"]),
        (
            ["context.gpus=[0,1]", "context.gpus_per_experiment=3"],
            ["gpus_per_experiment is 3 but gpus lists only 2 (0, 1), so no experiment could ever start"],
        ),
        (["model=3", "model.depth=4"], ["overrides 'model=3' and 'model.depth=4' conflict", "keep one"]),
        (["-m", "a.b.c=1,2", "~a.b"], ["overrides '~a.b' and 'a.b.c=1,2' conflict"]),
        (["-m", "~lr=1,2"], ["a deletion (~lr) takes one value at most"]),  # found by test_cli_properties
        (["context.secrets=[null]"], ["secrets lists names of environment variables; None is not one"]),
    ],
)
def test_values_that_could_never_work_are_refused(mrunner, project, mrunner_home, overrides, fragments):
    for result in both(mrunner, "train.py", *overrides):
        assert_one_line_error(result, *fragments)
    assert recorded_sweeps(mrunner_home) == 0


def test_the_dry_run_refuses_a_snapshot_over_max_snapshot_mb_and_stores_nothing(mrunner, project, mrunner_home):
    """The dry run hashes the snapshot as a submission does (for Backend.render), so it refuses the same
    size, and keeps no manifest of it."""
    (project / "data.bin").write_bytes(b"\0" * (3 * 2**20))
    for result in both(mrunner, "train.py", "context.max_snapshot_mb=2"):
        assert_one_line_error(result, "more than max_snapshot_mb (2 MB)", ".mrunnerignore")
    assert recorded_sweeps(mrunner_home) == 0
    dry = mrunner("train.py", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert not list((mrunner_home / "data").rglob("*.json"))  # no snapshot manifest
