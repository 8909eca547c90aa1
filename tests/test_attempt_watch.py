"""The attempt wrapper as a Slurm job starts it (``--view --watch``): a copy-on-write view of the code folder
where it may mount, else links into a watched copy of it, checked and restored before each attempt; either
way the code folder (on Slurm: hard links into the store every sweep shares) is never changed. Run here as
root, with and without the right to mount; the cluster's own user is test_slurm_snapshot_guard's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mrunner.layout import Layout, working_entries

SCRIPT = """
import json, os, sys
errors = {}

def attempt(what, action):
    try:
        action()
    except OSError as error:
        errors[what] = error.strerror

if sys.argv[1] == "vandal":
    attempt("delete data/x", lambda: os.remove("data/x"))
    attempt("add data/new", lambda: open("data/new", "w").write("new"))
    attempt("append conf/a.yaml", lambda: open("conf/a.yaml", "a").write("b: 2\\n"))
    attempt("append own script", lambda: open(__file__, "a").write("# damaged\\n"))
seen = {
    "data": sorted(name for name in os.listdir("data") if os.path.exists(os.path.join("data", name))),
    "a.yaml": open("conf/a.yaml").read(),
    "script": open(__file__).read(),
    "errors": errors,
}
with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "seen.json"), "w") as out:
    json.dump(seen, out)
"""
FILES = {"exp.py": SCRIPT, "data/x": "x", "data/y": "y", "conf/a.yaml": "a: 1\n"}


@pytest.fixture
def code(tmp_path: Path) -> Path:
    """A code folder as the Slurm helper leaves it: read-only files and folders."""
    folder = tmp_path / "store" / "code" / "d1"
    for relative, text in FILES.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
        (folder / relative).chmod(0o444)
    for inner, _, _ in os.walk(folder, topdown=False):
        os.chmod(inner, 0o555)
    yield folder
    for inner, _, _ in os.walk(tmp_path):
        os.chmod(inner, 0o755)


def attempt(code: Path, sweep: str, index: int, mode: str, may_mount: bool) -> tuple[dict, str, Layout]:
    storage = code.parent.parent.parent / "storage"
    where = Layout(str(storage), "p", sweep, index, mode)
    watch = code.parent.parent / "watched" / code.name
    argv = [sys.executable, "-m", "mrunner.attempt", "--code", str(code), "--view", "--watch", str(watch)]
    argv += ["--entries", json.dumps(working_entries(FILES, mirror=True)), "--grace", "5"]
    argv += ["--", sys.executable, "exp.py", mode]
    if not may_mount:  # root without CAP_SYS_ADMIN, as in a container that may not mount
        argv = ["setpriv", "--bounding-set=-sys_admin", *argv]
    done = subprocess.run(argv, env={**os.environ, **where.environment()}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(Path(where.experiment_dir, "seen.json").read_text()), done.stderr, where


def assert_as_uploaded(folder: Path) -> None:
    assert {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()} == FILES


@pytest.mark.parametrize("may_mount", [True, False], ids=["view", "watched copy"])
def test_an_experiment_changes_neither_the_code_folder_nor_what_the_next_one_runs(code, may_mount):
    if os.geteuid() != 0:
        pytest.skip("as root, whom file modes do not stop")
    vandal, said, _ = attempt(code, "s1", 0, "vandal", may_mount)
    assert vandal["errors"] == {} and "restored" not in said  # every write succeeded ...
    assert vandal["data"] == ["new", "y"] and vandal["a.yaml"] == "a: 1\nb: 2\n"  # ... and it sees them
    assert vandal["script"] == SCRIPT + "# damaged\n"
    assert_as_uploaded(code)
    watched = code.parent.parent / "watched" / code.name
    look, said, where = attempt(code, "s1", 1, "look", may_mount)
    assert look == {"data": ["x", "y"], "a.yaml": "a: 1\n", "script": SCRIPT, "errors": {}}
    restored = Path(where.exit_code_file() + ".restored")
    if may_mount:
        assert not watched.exists() and not restored.exists() and "code snapshot" not in said
    else:
        # a link per file below real folders: its delete and new file stayed in its own folder; the appends
        # reached the watched copy, restored before the next experiment and named
        assert f"sweep s1, the last to use it, changed code snapshot {code.name}" in said
        assert "changed conf/a.yaml, exp.py" in said, said
        assert restored.read_text() == said.strip().removeprefix("mrunner: ") + "\n"
        assert_as_uploaded(watched)
        attempt(code, "s1", 2, "vandal", may_mount)
        later, said, _ = attempt(code, "s2", 0, "look", may_mount)
        assert later["a.yaml"] == "a: 1\n" and "sweep s1, the last to use it, changed" in said
    assert_as_uploaded(code)


RETRIED = """
import os, sys

folder = os.path.realpath(os.environ["MRUNNER_EXPERIMENT_DIR"])
with open("/proc/self/mountinfo") as stream:
    views = sum(line.split()[4] == folder for line in stream)
attempt = int(os.environ["MRUNNER_ATTEMPT"])
open(f"out-{attempt}.txt", "w").write(str(views))
sys.exit(3 if attempt == 0 else 0)
"""


def test_a_retry_the_wrapper_runs_itself_after_an_attempt_that_renamed_nothing_has_one_view(tmp_path):
    """The wrapper leaves the view of an attempt that renamed nothing mounted (``codeview.finish``: its
    unmount is the namespace's end, off the attempt's path); the next attempt it runs itself (``--retries-left``
    without a requeue command, as a packed Slurm point's) takes it off first, so that attempt's view lies over
    the experiment's folder, not over the last view."""
    if os.geteuid() != 0:
        pytest.skip("the copy-on-write view is mounted as root")
    from mrunner import codeview

    code = tmp_path / "code"
    code.mkdir()
    (code / "retried.py").write_text(RETRIED)
    where = Layout(str(tmp_path / "storage"), "p", "s1", 0, "retried")
    argv = [sys.executable, "-m", "mrunner.attempt", "--code", str(code), "--view", "--retries-left", "1"]
    argv += ["--entries", json.dumps(working_entries({"retried.py": RETRIED})), "--grace", "5"]
    argv += ["--", sys.executable, "retried.py"]
    done = subprocess.run(argv, env={**os.environ, **where.environment()}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    folder = Path(where.experiment_dir)
    assert {name: (folder / name).read_text() for name in ("out-0.txt", "out-1.txt")} == {
        "out-0.txt": "1",
        "out-1.txt": "1",
    }
    assert codeview.UNSETTLED not in os.listxattr(folder)
