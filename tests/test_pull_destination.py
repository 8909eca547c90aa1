"""`mrunner pull SWEEP` without --to writes into ./mrunner-results of the project, a folder no snapshot takes:
the same grid submitted again after a pull is the same code and is skipped as already run."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from mrunner.store import Store


def test_pulled_results_never_change_the_next_snapshot(mrunner, tmp_path: Path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (project / "train.py").write_text("open('result.txt', 'w').write('42')\n")
    mrunner.cwd = project
    first = mrunner("train.py", "-m", "i=range(2)")
    assert first.returncode == 0, first.stderr
    (sweep,) = Store().sweeps()
    pulled = mrunner("pull", sweep.id)
    assert pulled.returncode == 0, pulled.stderr
    assert sorted(p.name for p in (project / "mrunner-results" / sweep.id).glob("*/result.txt")) == ["result.txt"] * 2

    again = mrunner("train.py", "-m", "i=range(2)")
    assert again.returncode == 0, again.stderr
    assert "2 of 2 experiments were already submitted" in again.stderr, again.stderr
    assert {s.snapshot_digest for s in Store().sweeps()} == {sweep.snapshot_digest}


def test_a_pull_into_the_project_elsewhere_warns_that_the_next_snapshot_takes_it_in(mrunner, tmp_path: Path):
    """`--to` a folder of the project that no ignore file leaves out: one warning line naming the fix (the next
    submission would snapshot the results and run the grid again); none where the snapshot leaves it out."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (project / "train.py").write_text("open('result.txt', 'w').write('42')\n")
    mrunner.cwd = project
    assert mrunner("train.py").returncode == 0
    (sweep,) = Store().sweeps()
    pulled = mrunner("pull", sweep.id, "--to", "results")
    assert pulled.returncode == 0, pulled.stderr
    (warning,) = [line for line in pulled.stderr.splitlines() if line.startswith("mrunner: warning:")]
    assert "results" in warning and "snapshot" in warning and ".mrunnerignore" in warning, warning
    (project / ".mrunnerignore").write_text("results/\n")
    for to in ("results", "mrunner-results/mine", str(tmp_path / "outside")):
        quiet = mrunner("pull", sweep.id, "--to", to)
        assert quiet.returncode == 0 and "warning" not in quiet.stderr, (to, quiet.stderr)


def test_pulled_results_leave_a_clean_checkout_clean(mrunner, tmp_path: Path):
    """git does not list the default destination as untracked (it holds a ``.gitignore`` of ``*``), so the next
    sweep of a committed project is recorded with its commit and not dirty."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (project / "train.py").write_text("open('result.txt', 'w').write('42')\n")
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "code"]):
        subprocess.run([*git, *args], check=True)
    mrunner.cwd = project
    assert mrunner("train.py").returncode == 0
    (sweep,) = Store().sweeps()
    assert sweep.git_dirty is False
    pulled = mrunner("pull", sweep.id)
    assert pulled.returncode == 0, pulled.stderr
    assert list((project / "mrunner-results" / sweep.id).glob("*/result.txt"))
    status = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True, check=True)
    assert status.stdout == "", status.stdout
    assert mrunner("train.py", "i=1").returncode == 0
    assert [s.git_dirty for s in Store().sweeps()] == [False, False]


def test_include_patterns_that_match_nothing_are_named(mrunner, tmp_path: Path):
    """`--include` patterns that match no file of the experiments pulled are named in one line: as an error
    with exit 1 (as grep finding nothing) when none matched, so a script stops there; as a warning beside what
    was pulled when others matched, the files found unchanged counting as matched."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(
        "import os\nos.makedirs('outputs')\nopen('result.txt', 'w').write('42')\nopen('outputs/a.csv', 'w').write('1')\n"
    )
    mrunner.cwd = project
    assert mrunner("train.py", "-m", "i=range(2)").returncode == 0
    (sweep,) = Store().sweeps()
    for patterns in (["*.ckpt"], ["*.ckpt", "model *.bin", "*.ckpt"]):
        nothing = mrunner("pull", sweep.id, *(arg for p in patterns for arg in ("--include", p)))
        lines = nothing.stderr.strip().splitlines()
        assert nothing.returncode == 1 and len(lines) == 1 and nothing.stdout == "", nothing
        named = " ".join(f"--include {shlex.quote(p)}" for p in dict.fromkeys(patterns))
        assert lines[0].startswith(f"mrunner: error: {named} matched no file in the folders of 2 experiments"), lines
    for patterns, pulled, unchanged in (
        (["*.txt", "*.ckpt"], "pulled 2 files", "0 unchanged"),
        (["*.txt", "nothing*"], "pulled 0 files", "2 unchanged"),
    ):
        some = mrunner("pull", sweep.id, "--include", patterns[0], "--include", patterns[1])
        assert some.returncode == 0 and pulled in some.stdout and unchanged in some.stdout, some
        (warning,) = some.stderr.strip().splitlines()
        assert warning.startswith(f"mrunner: warning: --include '{patterns[1]}' matched no file"), warning
        assert patterns[0] not in warning, warning
    every = mrunner("pull", sweep.id, "--include", "outputs/*")
    assert every.returncode == 0 and "pulled 2 files" in every.stdout and every.stderr == "", every
