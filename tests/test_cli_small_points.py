"""Small points of the command line, each through the real `mrunner` command: a message that names the fix."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mrunner import paths
from mrunner.store import Store
from mrunner.testing import as_from_a_terminal, write_context


def _project(tmp_path: Path, mrunner, script: str = "print('hi')\n") -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (project / "train.py").write_text(script)
    mrunner.cwd = project
    return project


def _one_line_error(result, *fragments: str) -> str:
    assert result.returncode != 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mrunner: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_resume_after_gc_of_a_changed_project_names_current_code(mrunner, tmp_path):
    project = _project(
        tmp_path, mrunner, "import sys\nfrom mrunner import get_configuration\nsys.exit(get_configuration().i)\n"
    )
    ran = mrunner("train.py", "-m", "i=0,1")
    assert ran.returncode == 1, ran.stderr
    (sweep,) = Store().sweeps()
    (project / "train.py").write_text("print('changed')\n")
    assert mrunner("gc", "--older-than", "0").returncode == 0
    resumed = mrunner("resume", sweep.id)
    _one_line_error(resumed, "--current-code", "train.py changed")
    failed = Store().run(sweep.id, 1)
    assert (failed.state, failed.attempt, failed.exit_code) == ("failed", 0, 1)  # left as it was


def test_a_write_waiting_for_the_records_lock_names_the_process_holding_it(mrunner, tmp_path):
    _project(tmp_path, mrunner)
    Store().close()  # the database exists
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.readline()",
            str(paths.data_dir() / "records.db"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        submission = subprocess.Popen(
            [sys.executable, "-m", "mrunner", "train.py"], cwd=mrunner.cwd, stderr=subprocess.PIPE, text=True
        )
        line = submission.stderr.readline()
        assert "waiting for the records database" in line and f"pid {holder.pid} (" in line, line
    finally:
        holder.communicate("\n")
    rest = submission.communicate()[1]
    assert submission.returncode == 0, rest
    # one line, though the holder's command line has line breaks in it: the next line is the submission's
    assert line.rstrip("\n").endswith(")") and rest.startswith("sweep "), line + rest


@pytest.mark.parametrize(
    "text",
    [
        "from mrunner import create_experiments\nexps = create_experiments('train.py', params_grid={'lr': [1, 2]})\n",
        # the original tool's helper, and mrunner's builders reached through a module
        "from mrunner.helpers.specification_helper import create_experiments_helper\n"
        "exps = create_experiments_helper(experiment_name='x', base_config={}, params_grid={}, script='train.py')\n",
        "import mrunner.experiment as me\nexps = [me.Experiment(name='a', script='train.py', parameters={})]\n",
        "import mrunner\nexps = mrunner.create_experiments('train.py', params_grid={'lr': [1, 2]})\n",
    ],
)
def test_a_spec_that_assigns_another_name_is_refused(mrunner, tmp_path, text):
    project = _project(tmp_path, mrunner)
    (project / "spec.py").write_text(text)
    _one_line_error(mrunner("spec.py"), "assigns no experiments_list", "--spec VARIABLE")
    assert Store().sweeps() == []


@pytest.mark.parametrize(
    "text",
    [
        "from mrunner import create_experiments\nexperiments_list = create_experiments('train.py', params_grid={'lr': [1]}\n",
        "from mrunner import create_experiments\n\nexps = create_experiments('train.py', params_grid={'lr': [1, 2]]})\n",
        "from mrunner.helpers.specification_helper import create_experiments_helper\n"
        "experiments_list = create_experiments_helper(experiment_name='x' base_config={}, params_grid={})\n",
    ],
)
def test_a_spec_with_a_syntax_error_is_refused_naming_the_line(mrunner, tmp_path, text):
    """Not run as an experiment script (which would fail at once, on every point, after the queue's wait)."""
    project = _project(tmp_path, mrunner)
    (project / "spec.py").write_text(text)
    line = len(text.rstrip("\n").splitlines())
    _one_line_error(mrunner("spec.py"), "spec.py", f"line {line}", "SyntaxError")
    _one_line_error(mrunner("spec.py", "--dry-run"), f"line {line}")
    assert Store().sweeps() == []


@pytest.mark.parametrize("call", ["os._exit(0)", "os._exit(5)"])
def test_a_spec_that_ends_the_process_itself_is_refused(mrunner, tmp_path, call):
    """mrunner runs a spec file in its own process: an `os._exit` there (which skips SystemExit) must not end
    mrunner silently, with exit 0 and nothing said, as if the sweep had been submitted."""
    project = _project(tmp_path, mrunner)
    (project / "spec.py").write_text(f"import os\n{call}\nexperiments_list = []\n")
    for args in (("spec.py",), ("spec.py", "--dry-run")):
        _one_line_error(mrunner(*args), "spec.py", f"called {call}")
    assert Store().sweeps() == []


def test_a_script_with_a_syntax_error_is_left_to_its_interpreter(mrunner, tmp_path):
    """A plain script is not a spec: the context's python (maybe newer than mrunner's) is what judges it."""
    project = _project(tmp_path, mrunner, "print('a'\n")
    assert project.exists()
    ran = mrunner("train.py", "--dry-run")
    assert ran.returncode == 0, ran.stderr


@pytest.mark.parametrize("script", ["../exp.py", "{outside}/exp.py", "python3 {outside}/exp.py --fast"])
def test_a_script_outside_the_project_is_named_so(mrunner, tmp_path, mrunner_home, script):
    """However the spec names it, relative or absolute, a Python file outside the project is refused alike:
    named absolutely it ran live, from where it lies, and never from a snapshot."""
    project = _project(tmp_path, mrunner)
    (tmp_path / "exp.py").write_text("print('outside')\n")
    (project / "spec.py").write_text(
        "from mrunner import create_experiments\n"
        f"experiments_list = create_experiments({script.format(outside=tmp_path)!r}, params_grid={{'lr': [1]}})\n"
    )
    for args in (("spec.py",), ("spec.py", "--dry-run")):
        message = _one_line_error(mrunner(*args), "lies outside the project", "move the script into the project")
        assert ".gitignore" not in message
    assert Store().sweeps() == []


def test_a_target_named_by_an_absolute_path_outside_the_cwds_project_runs_from_its_own_snapshot(mrunner, tmp_path):
    """On the command line the target makes the project (`mrunner /elsewhere/exp.py` snapshots the folder that
    holds it), so it never runs live from where it lies, as a spec's script outside its project would."""
    _project(tmp_path, mrunner)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "pyproject.toml").write_text("")
    (elsewhere / "exp.py").write_text("import os\nprint('ran', os.path.realpath(__file__))\n")
    ran = mrunner(str(elsewhere / "exp.py"), "--wait")
    assert ran.returncode == 0, ran.stderr
    (line,) = [line for line in mrunner("logs", f"{ran.stdout.split()[0]}/0").stdout.splitlines() if "ran" in line]
    assert line.endswith("/exp.py") and str(elsewhere) not in line, line


def test_an_installed_program_named_by_an_absolute_path_still_runs(mrunner, tmp_path):
    """A program outside the project that runs as itself (an interpreter of a virtualenv, a tool) is not a
    script of the project: it runs as named."""
    project = _project(tmp_path, mrunner)
    (project / "spec.py").write_text(
        "from mrunner import create_experiments\n"
        f"experiments_list = create_experiments({sys.executable + ' -c print(41+1)'!r}, params_grid={{'lr': [1]}})\n"
    )
    ran = mrunner("spec.py", "--wait")
    assert ran.returncode == 0, ran.stderr
    assert "42" in mrunner("logs", f"{ran.stdout.split()[0]}/0").stdout


@pytest.mark.parametrize("script", ["{project}/train.py", "python3 {project}/train.py --fast"])
def test_a_spec_naming_its_script_by_an_absolute_path_in_the_project_runs_the_snapshot(mrunner, tmp_path, script):
    """``os.path.join(os.path.dirname(__file__), 'train.py')`` is a common way to write a spec: that path ran the
    project's file as it was when the experiment started, not the snapshot (the project may have changed)."""
    project = _project(tmp_path, mrunner, "print('ran', __file__)\n")
    (project / "spec.py").write_text(
        "from mrunner import create_experiments\n"
        f"experiments_list = create_experiments({script.format(project=project)!r}, params_grid={{'lr': [1]}})\n"
    )
    ran = mrunner("spec.py")
    assert ran.returncode == 0, ran.stderr
    (sweep,) = Store().sweeps()
    printed = mrunner("logs", f"{sweep.id}/0").stdout.strip()
    assert printed.startswith("ran ") and printed.endswith(f"/{sweep.id}/0-train/train.py"), printed


def test_a_grid_with_repeated_points_says_how_many_in_words_that_agree(mrunner, tmp_path):
    _project(tmp_path, mrunner)
    for grid, said in (
        ("x=1,1,2", "1 experiment of the grid repeats another"),
        ("x=1,1,1", "2 experiments of the grid repeat another"),
    ):
        ran = mrunner("train.py", "-m", grid, "--force")
        assert ran.returncode == 0 and said in ran.stderr, ran.stderr


def _sbatch_time(result) -> str:
    assert result.returncode == 0, result.stderr
    return next(w for w in result.stdout.split() if w.startswith("--time=")).partition("=")[2]


def test_a_slurm_time_written_with_colons_stays_that_time_in_every_context_form(mrunner, mrunner_home, tmp_path):
    """YAML 1.1 (PyYAML, OmegaConf) reads ``2:00:00`` as the base-60 number 7200, which Slurm takes as minutes:
    a 2-hour limit became 5 days, from `context add --time 2:00:00`, `--resources "time=1:30"`, a context file
    written by hand and the original mrunner's config.yaml alike."""
    _project(tmp_path, mrunner)
    keys = ("--type", "slurm", "--slurm_url", "me@login.example.org")
    assert mrunner("context", "add", "--name", "a", *keys, "--time", "2:00:00").returncode == 0
    assert mrunner("context", "add", "--name", "b", *keys, "--resources", "time=1:30 mem=8G").returncode == 0
    write_context(mrunner_home, "c", "backend: slurm\nslurm_url: me@login.example.org\ntime: 2:00:00\n")
    original = tmp_path / "config.yaml"
    original.write_text("contexts:\n  d:\n    backend_type: slurm\n    slurm_url: me@h\n    time: 1:00:00\n")
    assert mrunner("context", "import", str(original)).returncode == 0
    for name, time in (("a", "2:00:00"), ("b", "1:30"), ("c", "2:00:00"), ("d", "1:00:00")):
        assert _sbatch_time(mrunner("+context=" + name, "train.py", "--dry-run")) == time, name
        assert f"time: {time}" in mrunner("context", "show", name).stdout.replace("'", ""), name
    # a command line override still wins over the file's value
    assert _sbatch_time(mrunner("+context=c", "train.py", "context.time=90", "--dry-run")) == "90"


@pytest.mark.parametrize("name", ["a=b", "x,y", "q(1)", "a'b", "a b", "ż", "_x/y"])
def test_context_add_refuses_a_name_no_command_could_use(mrunner, mrunner_home, name):
    """`context add` wrote `a=b.yaml`, `x,y.yaml`, ... which every later `--context NAME` refused with Hydra's
    grammar error: the name is checked as the line says."""
    _one_line_error(
        mrunner("context", "add", "--name", name, "--type", "local"), "invalid context name", "ASCII letters"
    )
    assert not list((mrunner_home / "config" / "mrunner" / "context").glob("*.yaml"))


def test_a_context_name_of_letters_digits_dots_dashes_and_underscores_is_used(mrunner, tmp_path):
    _project(tmp_path, mrunner)
    assert mrunner("context", "add", "--name", "my-gpu.box_2", "--type", "local").returncode == 0
    assert mrunner("--context", "my-gpu.box_2", "train.py", "--dry-run").returncode == 0


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_status_limit_below_one_is_refused_not_read_as_no_sweeps(mrunner, tmp_path, limit):
    """`--limit 0` said "no sweeps recorded yet" with sweeps recorded, and `--limit -1` listed them all."""
    _project(tmp_path, mrunner)
    assert mrunner("train.py").returncode == 0
    _one_line_error(mrunner("status", "--limit", limit), "--limit", "at least 1")


def test_a_deleted_working_directory_is_named(mrunner, tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); "
            "from mrunner.cli import main; sys.exit(main(['status']))",
            str(gone),
        ],
        capture_output=True,
        text=True,
    )
    _one_line_error(result, "the working directory was deleted")


def test_context_add_takes_every_key_of_the_backend_as_an_option(mrunner, mrunner_home):
    added = mrunner(
        "context",
        "add",
        "--name",
        "N",
        "--type",
        "slurm",
        "--slurm_url",
        "me@login.example.org",
        "--storage_dir",
        "/scratch/me",
        "--partition=gpu",
        "--time",
        "60",
    )
    assert added.returncode == 0, added.stderr
    written = yaml.safe_load((mrunner_home / "config" / "mrunner" / "context" / "N.yaml").read_text())
    assert written == {
        "backend": "slurm",
        "slurm_url": "me@login.example.org",
        "storage_dir": "/scratch/me",
        "partition": "gpu",
        "time": 60,
    }
    refused = mrunner("context", "add", "--name", "M", "--type", "slurm", "--slurm_url", "x", "--no_such_key", "1")
    _one_line_error(refused, "--no_such_key")
    # a tracker's keys too, and the original's --neptune with a value as well as alone
    for name, neptune in (("P", ["--neptune", "true"]), ("Q", ["--neptune=false"]), ("R", ["--neptune"])):
        added = mrunner("context", "add", "--name", name, "--type", "local", *neptune, "--neptune_project", "ws/p")
        assert added.returncode == 0, added.stderr
        written = yaml.safe_load((mrunner_home / "config" / "mrunner" / "context" / f"{name}.yaml").read_text())
        assert written == {"backend": "local", "neptune": name != "Q", "neptune_project": "ws/p"}, written


def test_one_broken_context_file_leaves_the_others_listed(mrunner, mrunner_home):
    assert mrunner("context", "add", "--name", "fine", "--type", "local").returncode == 0
    write_context(mrunner_home, "broken", "backend: [unclosed\n")
    folder = mrunner_home / "config" / "mrunner" / "context"
    listed = mrunner("context", "list")
    assert listed.returncode == 0, listed.stderr
    assert "fine" in listed.stdout and "broken" in listed.stdout and "local" in listed.stdout
    (warning,) = listed.stderr.strip().splitlines()
    assert "context broken cannot be read" in warning and str(folder / "broken.yaml") in warning


def test_a_failed_experiment_that_wrote_nothing_is_said_so(mrunner, tmp_path):
    """The end of a sweep shows the end of the first failing experiment's output: none, it says so, instead of
    announcing an output that does not follow."""
    _project(tmp_path, mrunner, "import sys\nsys.exit(3)\n")
    ran = mrunner("train.py")
    assert ran.returncode == 1, ran.stderr
    said = next(line for line in ran.stderr.splitlines() if " failed (exit 3)" in line)
    assert said.endswith("failed (exit 3) and wrote no output"), ran.stderr


def test_a_script_whose_name_starts_with_a_dash_runs_that_file(mrunner, tmp_path):
    """`./-x.py` names a file: its interpreter must not read the name as one of its options."""
    project = _project(tmp_path, mrunner)
    (project / "-x.py").write_text("print('ran -x')\n")
    dry = mrunner("./-x.py", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert " ./-x.py\n" in dry.stdout, dry.stdout
    ran = mrunner("./-x.py", "--quiet")
    assert ran.returncode == 0, ran.stderr
    logs = mrunner("logs", f"{ran.stdout.strip()}/0")
    assert logs.stdout == "ran -x\n", logs


def test_ctrl_c_of_status_wait_says_the_sweep_goes_on(mrunner, tmp_path):
    """Following stops; the sweep does not (its experiments are not this command's): the line says so and how
    to stop it, where a bare "interrupted" left the user thinking the sweep was stopped."""
    _project(tmp_path, mrunner, "import time\ntime.sleep(60)\n")
    detached = mrunner("train.py", "--detach")
    assert detached.returncode == 0, detached.stderr
    sweep = detached.stdout.strip().splitlines()[-1]
    follow = subprocess.Popen(
        [sys.executable, "-m", "mrunner", "status", sweep, "--wait"],
        cwd=mrunner.cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_from_a_terminal,  # Ctrl-C's SIGINT, however pytest was started (a background job ignores it)
    )
    assert follow.stderr is not None
    assert follow.stderr.readline().startswith(f"sweep {sweep}: ")  # following
    follow.send_signal(signal.SIGINT)
    _, err = follow.communicate(timeout=60)
    assert follow.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert f"stopped following sweep {sweep}, which goes on" in last and f"mrunner cancel {sweep}" in last, err
    assert Store().run(sweep, 0).state in ("submitted", "running")
    assert mrunner("cancel", sweep).returncode == 0


def test_an_empty_grid_names_the_override_without_values(mrunner, tmp_path):
    _project(tmp_path, mrunner)
    for empty in ("x=range(0)", "x=range(5,1)"):
        line = _one_line_error(mrunner("train.py", "-m", empty, "y=1,2", "--dry-run"), "the grid is empty")
        assert repr(empty) in line and "'y=1,2'" not in line, line
    assert Store().sweeps() == []


def test_a_context_edit_that_breaks_the_context_says_the_file_keeps_it_and_how_to_fix_it(
    mrunner, mrunner_home, tmp_path
):
    assert mrunner("context", "add", "--name", "mine", "--type", "local", "max_parallel=2").returncode == 0
    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\necho "max_parallel: 0" >> "$1"\n')
    editor.chmod(0o755)
    edited = mrunner("context", "edit", "mine", env={"EDITOR": str(editor), "VISUAL": ""})
    line = _one_line_error(edited, "max_parallel", "must be at least 1")
    path = mrunner_home / "config" / "mrunner" / "context" / "mine.yaml"
    assert f"{path} keeps your edit" in line and "`mrunner context edit mine`" in line, line


@pytest.mark.parametrize("backend", ["local", "slurm", "kubernetes"])
def test_context_add_of_a_key_the_backend_lacks_names_the_keys_it_has(mrunner, mrunner_home, backend):
    """Not argparse's bare "unrecognized arguments": the closest key, every key of the chosen backend, and
    nothing written."""
    refused = mrunner("context", "add", "--name", "M", "--type", backend, "--max-paralel", "1", "--bogus=1")
    _one_line_error(refused, f"--max-paralel is not a key of the {backend} backend")
    assert "its keys: " in refused.stderr and "max_experiments, " in refused.stderr
    assert ("did you mean --max_parallel?" in refused.stderr) == (backend == "local")
    assert not (mrunner_home / "config" / "mrunner" / "context" / "M.yaml").exists()


def test_context_add_of_storage_dir_on_kubernetes_points_to_its_storage_option(mrunner, mrunner_home):
    """`context add --help` says `--storage` is Kubernetes' storage folder; `--storage_dir` (the local and Slurm
    key) was told "did you mean --storage_class?" with a list of keys lacking storage, registry_url and neptune."""
    refused = mrunner("context", "add", "--name", "K", "--type", "kubernetes", "--storage_dir", "/data")
    line = _one_line_error(refused, "did you mean --storage?")
    keys = line.partition("its keys: ")[2].partition(" (")[0].split(", ")
    assert {"storage", "registry_url", "neptune"} <= set(keys), line
    assert not (mrunner_home / "config" / "mrunner" / "context" / "K.yaml").exists()


@pytest.mark.parametrize(
    "call, fragments",
    [
        ("create_experiments('train.py', params_grid={'lr': 0.1, 'seed': [0, 1]})", ("params_grid['lr']", "[0.1]")),
        ("create_experiments('train.py', params_grid={'opt': 'adam'})", ("params_grid['opt']", "['adam']")),
        ("create_experiments('train.py', params_grid={'lr': [1]}, tags='baseline')", ("tags", "['baseline']")),
        (
            "create_experiments_helper(experiment_name='x', base_config={}, params_grid={'lr': 0.1}, "
            "script='train.py', python_path='', tags=[])",
            ("params_grid['lr']", "[0.1]"),
        ),
        (
            "create_experiments_helper(experiment_name='x', base_config={}, params_grid={'lr': [1]}, "
            "script='train.py', python_path='', tags='baseline')",
            ("tags", "['baseline']"),
        ),
        ("[Experiment('train.py', tags='baseline')]", ("tags", "['baseline']")),
    ],
)
def test_a_spec_with_a_single_value_where_a_list_is_expected_is_refused_naming_the_list(
    mrunner, tmp_path, call, fragments
):
    """A scalar in ``params_grid`` ran as one point and ``tags='baseline'`` became eight one-letter tags; the
    original's helper took neither (``itertools.product`` over the value, ``tags + [...]``)."""
    project = _project(tmp_path, mrunner)
    (project / "spec.py").write_text(
        "from mrunner import Experiment, create_experiments\n"
        "from mrunner.helpers.specification_helper import create_experiments_helper\n"
        f"experiments_list = {call}\n"
    )
    for args in (("spec.py", "--dry-run"), ("spec.py",)):
        _one_line_error(mrunner(*args), *fragments)
    assert Store().sweeps() == []


def test_the_dry_run_counts_what_the_submission_records(mrunner, tmp_path):
    """A grid that repeats a point (``x=1,1,2``) records 2 runs; its dry run said 3 experiments. After the
    submission, the dry run of the same grid says that every point would be skipped."""
    _project(tmp_path, mrunner)
    dry = mrunner("train.py", "-m", "x=1,1,2", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[1].startswith("2 experiments on context local"), dry.stdout
    assert lines[2] == "1 experiment of the grid repeats another exactly; each runs once"
    assert "  - run 2 subprocesses from a snapshot of the code, at most 2 at a time" in lines
    assert not paths.data_dir().joinpath("records.db").exists()  # the dry run opened no records

    submitted = mrunner("train.py", "-m", "x=1,1,2")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    assert len(Store().runs(sweep)) == 2

    again = mrunner("train.py", "-m", "x=1,1,2,3", "--dry-run")
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert lines[1].startswith("1 experiment on context local"), again.stdout
    assert "2 of 3 experiments were already submitted on context local and would be skipped" in lines[3]
    forced = mrunner("train.py", "-m", "x=1,1,2,3", "--dry-run", "--force")
    assert forced.stdout.splitlines()[1].startswith("3 experiments on context local"), forced.stdout
    assert len(Store().sweeps()) == 1


def test_the_dry_run_lists_the_experiments_the_submission_records_numbered_as_it_numbers_them(mrunner, tmp_path):
    """A repeated point, or one already submitted on the context, takes no index: the dry run of ``x=1,1,2``
    listed ``[2] x=2``, which the submission recorded as experiment 1, and a grid whose every point was
    submitted said "nothing" would run while still listing each point as an experiment."""
    _project(tmp_path, mrunner)
    dry = mrunner("train.py", "-m", "x=1,1,2", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    listed = [line.strip() for line in dry.stdout.splitlines() if line.startswith("  [")]
    assert listed == ["[0] train: x=1", "[1] train: x=2"], dry.stdout

    assert mrunner("train.py", "-m", "x=1,1,2").returncode == 0
    again = mrunner("train.py", "-m", "x=1,3,2,4", "--dry-run")
    assert again.returncode == 0, again.stderr
    listed = [line.strip() for line in again.stdout.splitlines() if line.startswith("  [")]
    assert listed == ["[0] train: x=3", "[1] train: x=4"], again.stdout
    done = mrunner("train.py", "-m", "x=2,1", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert not [line for line in done.stdout.splitlines() if line.startswith("  [")], done.stdout
    assert "experiments: none (every point was submitted already)" in done.stdout.splitlines(), done.stdout


def test_the_dry_run_works_out_each_points_identity_once(mrunner, tmp_path, monkeypatch):
    """Counting a grid's repeats, the points already submitted and the points listed took a walk of the
    grid each (a 10,000-point dry run: 15 s on a loaded machine): one walk now works out every point's
    identity once, and looks the grid up in the records a chunk at a time, for every count it shows."""
    from mrunner import dry_run, planning

    project = _project(tmp_path, mrunner)
    assert mrunner("train.py", "-m", "x=0,1", "y=0").returncode == 0
    made: list[tuple] = []
    real = planning.identity
    monkeypatch.setattr(planning, "identity", lambda *given: made.append(given) or real(*given))
    looked: list[int] = []
    taken = Store.taken
    monkeypatch.setattr(Store, "taken", lambda self, name, ids: looked.append(len(ids)) or taken(self, name, ids))
    request = planning.Request(target=project / "train.py", overrides=["x=range(40)", "y=0,0"], multirun=True)
    plan = planning.Plan(request, cwd=project)
    made.clear()  # what the plan's own checks made, if anything: only the dry run is counted
    lines = dry_run.describe(plan)
    assert lines[1].startswith("38 experiments on context local"), lines
    assert "40 experiments of the grid repeat another exactly; each runs once" in lines
    assert (
        "2 of 40 experiments were already submitted on context local and would be skipped (--force runs them "
        "again)" in lines
    )
    assert [line.strip() for line in lines if line.startswith("  [")][:2] == [
        "[0] train: x=2 y=0",
        "[1] train: x=3 y=0",
    ]
    assert len(made) == len(plan)  # the local backend renders nothing: no run made but the walk's
    assert looked == [len(plan)]  # one look-up for the whole chunk


def test_the_dry_run_of_a_grid_beyond_what_it_counts_answers_with_the_grids_size(mrunner, tmp_path):
    """Counting what a submission records costs each point's identity: a million-point dry run took half a
    minute. Beyond ``dry_run.DRY_RUN_COUNTED`` points it gives the grid's size and says the submission counts."""
    from mrunner.dry_run import DRY_RUN_COUNTED

    _project(tmp_path, mrunner)
    side = DRY_RUN_COUNTED // 100 + 1
    dry = mrunner("train.py", "-m", f"x=range({side})", "y=range(100)", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[1].startswith(f"{side * 100} experiments on context local"), dry.stdout
    assert lines[2] == (
        f"a grid of more than {DRY_RUN_COUNTED:,} points: the submission counts which repeat another or were "
        "already submitted (each runs once)"
    )
    within = mrunner("train.py", "-m", "x=range(100)", "y=range(100)", "--dry-run")
    assert within.stdout.splitlines()[2] == "plan:", within.stdout


def test_detach_with_wait_is_refused_before_anything_is_recorded(mrunner, tmp_path):
    """`--detach` returns at once and `--wait` follows the sweep to its end: given both, the submission (and a
    resume) detached and left --wait unsaid; now one line names the clash, and nothing is recorded or run."""
    (tmp_path / "train.py").write_text("print('ran')\n")
    for command in (["train.py", "-m", "lr=1,2"], ["resume", "no-such-sweep"]):
        refused = mrunner(*command, "--detach", "--wait")
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "--wait: not allowed with argument --detach" in refused.stderr, refused.stderr
    assert mrunner("status", "--json").stdout.strip() == "[]"


@pytest.mark.parametrize(("grid", "count"), [((), "1 experiment: 1 completed"), (("-m", "i=0,1"), "2 experiments: ")])
def test_status_counts_experiments_in_words_that_agree_with_the_count(mrunner, tmp_path, grid, count):
    _project(tmp_path, mrunner)
    assert mrunner("train.py", *grid).returncode == 0
    (sweep,) = Store().sweeps()
    assert count in mrunner("status", sweep.id).stdout
