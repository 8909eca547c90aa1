"""An experiment cannot change the code snapshot that the next experiment and later sweeps run, as root too,
and its own writes to the project's files succeed: a copy-on-write view where this machine may mount one,
else links to a watched snapshot that is restored and named before it is used again."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mrunner.codeview import FAKE_NO_MOUNT

SCRIPT = """
import json, os
from mrunner import get_configuration

config = get_configuration()
errors = {}

def attempt(what, action):
    try:
        action()
    except OSError as error:
        errors[what] = error.strerror

if config["mode"] != "look":  # what a careless script does, through the project's folders and its own file
    attempt("delete data/x", lambda: os.remove("data/x"))
    attempt("delete conf/b.yaml", lambda: os.remove("conf/b.yaml"))
    attempt("add data/new", lambda: open("data/new", "w").write("new"))
    attempt("append conf/a.yaml", lambda: open("conf/a.yaml", "a").write("b: 2\\n"))
    attempt("append task.log", lambda: open("task.log", "a").write("more\\n"))
    attempt("append own script", lambda: open(__file__, "a").write("# damaged\\n"))
    attempt("delete resolved data/y", lambda: os.remove(os.path.realpath("data/y")))
code = os.path.dirname(os.path.realpath(__file__))  # where imports come from
if config["mode"] != "look":
    attempt("add resolved conf/new", lambda: open(os.path.join(code, "conf", "new"), "w").close())
seen = {
    "data": sorted(os.listdir(os.path.join(code, "data"))),
    "conf": sorted(os.listdir(os.path.join(code, "conf"))),
    "a.yaml": open("conf/a.yaml").read(),
    "task.log": open("task.log").read(),
    "script": open(__file__).read(),
    "own data": sorted(name for name in os.listdir("data") if os.path.exists(os.path.join("data", name))),
    "own conf": sorted(name for name in os.listdir("conf") if os.path.exists(os.path.join("conf", name))),
    "errors": errors,
}
with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "seen.json"), "w") as out:
    json.dump(seen, out)
"""


@pytest.fixture
def project(tmp_path: Path, mrunner) -> Path:
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    (folder / "conf").mkdir()
    (folder / "exp.py").write_text(SCRIPT)
    (folder / "data" / "x").write_text("x")
    (folder / "data" / "y").write_text("y")
    (folder / "conf" / "a.yaml").write_text("a: 1\n")
    (folder / "conf" / "b.yaml").write_text("b: 1\n")
    (folder / "task.log").write_text("a run left this\n")  # as a Hydra job's hydra-task.log
    mrunner.cwd = folder
    return folder


def storage(home: Path) -> Path:
    return home / "data" / "mrunner" / "storage"


def seen(home: Path, sweep: str) -> dict[int, dict]:
    found = {}
    for path in storage(home).rglob(f"{sweep}/*/seen.json"):
        found[int(path.parent.name.split("-", 1)[0])] = json.loads(path.read_text())
    return found


def log(home: Path, sweep: str, index: int) -> str:
    return next(storage(home).rglob(f"{sweep}/logs/{index}.0.log")).read_text()


def tree_of(home: Path) -> Path:
    (tree,) = [p for p in (home / "data" / "mrunner" / "snapshots" / "trees").iterdir() if p.is_dir()]
    return tree


def assert_original(view: dict) -> None:
    assert view["data"] == ["x", "y"] and view["conf"] == ["a.yaml", "b.yaml"] and view["a.yaml"] == "a: 1\n"
    assert view["script"] == SCRIPT and view["own data"] == ["x", "y"] and view["task.log"] == "a run left this\n"


def assert_pristine(tree: Path) -> None:
    assert sorted(os.listdir(tree / "data")) == ["x", "y"] and sorted(os.listdir(tree / "conf")) == ["a.yaml", "b.yaml"]
    assert (tree / "conf" / "a.yaml").read_text() == "a: 1\n" and (tree / "exp.py").read_text() == SCRIPT
    assert (tree / "task.log").read_text() == "a run left this\n"


def as_root_without_mounting(project: Path, *args: str) -> subprocess.CompletedProcess:
    """mrunner as root without CAP_SYS_ADMIN, as in a container that may not mount: file modes still
    do not count, and the copy-on-write view cannot be had."""
    return subprocess.run(
        ["setpriv", "--bounding-set=-sys_admin", sys.executable, "-m", "mrunner", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("view", ["overlay", "watched", "watched without CAP_SYS_ADMIN"])
def test_an_experiment_cannot_change_what_the_next_one_and_a_later_sweep_run(
    mrunner, mrunner_home, project, monkeypatch, view
):
    if os.geteuid() != 0:
        pytest.skip("as an ordinary user the read-only snapshot refuses these writes")
    if view == "watched":
        monkeypatch.setenv(FAKE_NO_MOUNT, "1")  # as where mounting is impossible (e.g. storage on NFS)
    if view.endswith("CAP_SYS_ADMIN"):
        mrunner = functools.partial(as_root_without_mounting, project)
        view = "watched"
    first = mrunner("exp.py", "-m", "mode=vandal,look,again", "context.max_parallel=1")
    assert first.returncode == 0, first.stderr
    sweep = first.stdout.strip().splitlines()[-1]
    views = seen(mrunner_home, sweep)
    vandal, look = views[0], views[1]  # the grid's order, one at a time
    assert vandal["errors"] == {}  # every write succeeded ...
    assert vandal["a.yaml"] == "a: 1\nb: 2\n" and vandal["task.log"] == "a run left this\nmore\n"
    assert vandal["script"] == SCRIPT + "# damaged\n"  # ... and the experiment sees what it wrote
    assert "new" in vandal["own data"] and "x" not in vandal["own data"] and "b.yaml" not in vandal["own conf"]
    assert_original(look)  # ... and the next experiment does not
    if view == "overlay":
        assert vandal["own data"] == ["new"] and "new" in vandal["conf"]  # resolved paths stay in its view
        assert_pristine(tree_of(mrunner_home))  # never written, not restored
        folder = next(storage(mrunner_home).rglob(f"{sweep}/0-*"))  # what it wrote, in its own folder
        assert (folder / "data" / "new").read_text() == "new" and (
            folder / "conf" / "a.yaml"
        ).read_text() == "a: 1\nb: 2\n"
        assert not os.path.lexists(folder / "data" / "y") or not (folder / "data" / "y").is_file()  # a whiteout
        assert "changed code snapshot" not in log(mrunner_home, sweep, 1) and "restored" not in first.stderr
        assert str(storage(mrunner_home)) not in Path("/proc/self/mountinfo").read_text()  # nothing left mounted
        assert os.listdir(folder.parent / "views") == []  # nor the overlay's work folders
    else:
        assert f"sweep {sweep}, the last to use it, changed code snapshot" in log(mrunner_home, sweep, 1)
        assert "restored" in first.stderr
    later = mrunner("exp.py", "mode=look", "+tag=later")
    assert later.returncode == 0, later.stderr
    later_sweep = later.stdout.strip().splitlines()[-1]
    (seen_later,) = seen(mrunner_home, later_sweep).values()
    assert_original(seen_later)
    if view == "watched":  # the last experiment of the first sweep damaged it again: named by the later sweep
        assert f"sweep {sweep}, the last to use it, changed code snapshot" in log(mrunner_home, later_sweep, 0)
        assert "deleted data/y" in log(mrunner_home, later_sweep, 0)
    assert_pristine(tree_of(mrunner_home))
    assert mrunner("gc").returncode == 0


def test_collecting_a_watched_tree_removes_its_guard(tmp_path):
    from mrunner import cleanup, treeguard

    tree = tmp_path / "trees" / "digest"
    (tree / "data").mkdir(parents=True)
    (tree / "data" / "x").write_text("x")
    treeguard.watch(tree, {"data/x": ("2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881", 0o644)}, None)
    assert treeguard.guard_dir(tree).is_dir()
    cleanup._remove(tree, "snapshot copy", dry_run=False)
    assert not tree.exists() and not treeguard.guard_dir(tree).exists()


def test_a_tree_changed_before_it_was_watched_is_put_right_first(tmp_path):
    """A tree an experiment changed before this guard existed (an earlier mrunner, links only) is checked
    against the snapshot's hashes: the changed file is fetched again, the added one removed."""
    import hashlib

    from mrunner import treeguard

    tree = tmp_path / "trees" / "digest"
    (tree / "conf").mkdir(parents=True)
    (tree / "conf" / "a.yaml").write_text("a: 1\nb: 2\n")
    (tree / "conf" / "new").write_text("")
    files = {"conf/a.yaml": (hashlib.sha256(b"a: 1\n").hexdigest(), 0o644)}
    treeguard.watch(tree, files, lambda relative, destination: destination.write_text("a: 1\n"))
    assert sorted(os.listdir(tree / "conf")) == ["a.yaml"] and (tree / "conf" / "a.yaml").read_text() == "a: 1\n"
    assert treeguard.check(tree, "s1") is None


RESUMED = """
import json, os, sys
attempt = int(os.environ["MRUNNER_ATTEMPT"])
if attempt == 0:
    os.remove("data/x")
    open("conf/a.yaml", "a").write("b: 2\\n")
    sys.exit(3)
with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "seen.json"), "w") as out:
    json.dump({"data": sorted(os.listdir("data")), "a.yaml": open("conf/a.yaml").read()}, out)
"""


def test_a_later_attempt_under_the_view_finds_what_earlier_ones_of_its_experiment_changed(
    mrunner, mrunner_home, project
):
    """Resumed, an experiment mounts its view again over its own folder: its earlier deletes and writes are
    its own still (as its files are with links), the snapshot is as it was."""
    if os.geteuid() != 0:
        pytest.skip("mounting a copy-on-write view needs root")
    (project / "exp.py").write_text(RESUMED)
    first = mrunner("exp.py")
    assert first.returncode == 1, first.stderr
    sweep = first.stdout.strip().splitlines()[-1]
    again = mrunner("resume", sweep)
    assert again.returncode == 0, again.stderr
    (view,) = seen(mrunner_home, sweep).values()
    assert view == {"data": ["y"], "a.yaml": "a: 1\nb: 2\n"}
    tree = tree_of(mrunner_home)
    assert sorted(os.listdir(tree / "data")) == ["x", "y"] and (tree / "conf" / "a.yaml").read_text() == "a: 1\n"


CHANGING = """
import json, os, sys
if int(os.environ["MRUNNER_ATTEMPT"]) == 0:
    os.remove("data/x")
    open("conf/a.yaml", "a").write("b: 2\\n")
    open("data/own", "w").write("mine")  # its own output, in a project folder
    open("out.txt", "w").write("mine")
    sys.exit(3)
seen = {
    "data": sorted(os.listdir("data")),
    "a.yaml": open("conf/a.yaml").read(),
    "script": open(__file__).read(),
    "own": [open("data/own").read(), open("out.txt").read()],
}
with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "seen.json"), "w") as out:
    json.dump(seen, out)
"""


def test_resumed_with_the_current_code_an_experiment_runs_it_and_keeps_its_own_outputs(mrunner, mrunner_home, project):
    """An earlier attempt's changes to project files (its view's upper layer) give way to the current code's
    versions when resumed with ``--current-code``, set aside beside the sweep; what it made itself stays."""
    if os.geteuid() != 0:
        pytest.skip("mounting a copy-on-write view needs root")
    (project / "exp.py").write_text(CHANGING)
    first = mrunner("exp.py")
    assert first.returncode == 1, first.stderr
    sweep = first.stdout.strip().splitlines()[-1]
    (project / "conf" / "a.yaml").write_text("a: 10\n")
    (project / "exp.py").write_text(CHANGING + "# the current code\n")
    again = mrunner("resume", sweep, "--current-code")
    assert again.returncode == 0, again.stderr
    (view,) = seen(mrunner_home, sweep).values()
    assert view == {
        "data": ["own", "x", "y"],  # the current code's x shows again, its own file stays
        "a.yaml": "a: 10\n",  # the current code's, not the earlier attempt's changed copy
        "script": CHANGING + "# the current code\n",
        "own": ["mine", "mine"],
    }
    (aside,) = storage(mrunner_home).rglob(f"{sweep}/set-aside/0-*/1")
    assert (aside / "conf" / "a.yaml").read_text() == "a: 1\nb: 2\n"  # kept, not shown
    said = next(storage(mrunner_home).rglob(f"{sweep}/logs/0.1.log")).read_text()
    assert "give way to it" in said and "conf/a.yaml" in said and "data/x" in said
    trees = sorted((mrunner_home / "data" / "mrunner" / "snapshots" / "trees").glob("*/conf/a.yaml"))
    assert sorted(path.read_text() for path in trees) == ["a: 1\n", "a: 10\n"]  # both snapshots untouched


RENAMER = """
import errno, json, os, shutil, sys
import mrunner

out = {}
if mrunner.attempt() == 0:
    try:
        os.rename("data", "data-renamed")  # a top-level folder of the project
        os.rename("data-renamed", "conf/data")  # moved into another folder of the project
        os.rename("conf/data", "data-renamed")  # and back out
        out["os.rename"] = "ok"
    except OSError as error:
        out["os.rename"] = errno.errorcode[error.errno]
    shutil.move("conf", "conf-moved")  # a rename, or a copy then a delete where a rename crosses devices (`mv`)
    os.remove("conf-moved/b.yaml")
    out["moved"] = sorted(os.listdir("conf-moved"))
    with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "renamed.json"), "w") as stream:
        json.dump(out, stream)
    mrunner.report({"renamed": 1}, step=0)
    sys.exit(3)  # failed after the renames: resumed below
seen = {"data-renamed": sorted(os.listdir("data-renamed")), "conf-moved": sorted(os.listdir("conf-moved"))}
seen["gone"] = [name for name in ("data", "conf") if os.path.exists(name)]
open("data-renamed/x", "a").write("+attempt 1")
mrunner.report({"renamed": 2}, step=1)
with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "seen.json"), "w") as stream:
    json.dump(seen, stream)
"""


@pytest.mark.parametrize("second", ["resume", "retry"])
@pytest.mark.parametrize("view", ["overlay", "watched"])
def test_renaming_a_project_folder_inside_an_experiment(
    mrunner, mrunner_home, project, monkeypatch, tmp_path, view, second
):
    """What README's file rules say: a folder of the project renames inside an experiment (``os.rename``),
    under the copy-on-write view too (``redirect_dir``), and the experiment's folder, which ``pull`` reads,
    holds the renamed folders whole once the attempt ended (``codeview.settle``); the next attempt (a
    ``resume``, or a retry the wrapper runs itself under a view laid again) finds them as the experiment left
    them. With links to a watched copy, the folder of links renames."""
    if os.geteuid() != 0:
        pytest.skip("the copy-on-write view is mounted as root")
    if view == "watched":
        monkeypatch.setenv(FAKE_NO_MOUNT, "1")
    (project / "rename.py").write_text(RENAMER)
    ran = mrunner("rename.py", *(["context.retry_failed=1"] if second == "retry" else []))
    assert ran.returncode == (1 if second == "resume" else 0), ran.stderr
    sweep = ran.stdout.strip().splitlines()[-1]
    folder = next(storage(mrunner_home).rglob(f"{sweep}/0-*"))
    renamed = json.loads((folder / "renamed.json").read_text())
    assert renamed == {"os.rename": "ok", "moved": ["a.yaml"]}
    if second == "resume":
        if view == "overlay":  # the renamed folders are whole in the experiment's folder, plain files
            for path, text in {"data-renamed/x": "x", "data-renamed/y": "y", "conf-moved/a.yaml": "a: 1\n"}.items():
                assert (folder / path).read_text() == text and not (folder / path).is_symlink()
            assert not (folder / "conf-moved" / "b.yaml").is_file()  # deleted after the rename
        again = mrunner("resume", sweep)  # a second attempt over the same folder
        assert again.returncode == 0, again.stderr
    seen = json.loads((folder / "seen.json").read_text())
    assert seen["data-renamed"] == ["x", "y"] and seen["conf-moved"] == ["a.yaml"]
    results = mrunner("results", sweep, "--json")
    assert results.returncode == 0, results.stderr
    assert [row["renamed"] for row in json.loads(results.stdout)] == [2]
    assert_pristine(tree_of(mrunner_home))
    if view == "watched":  # its write through a link is found and restored before the snapshot is used again
        return
    assert (tree_of(mrunner_home) / "data" / "x").read_text() == "x"  # attempt 1 wrote to its copy, not to this
    assert seen["gone"] == []  # its whiteouts hide the old names still (links are made anew for each attempt)
    assert "trusted.mrunner.unsettled" not in os.listxattr(folder)  # each attempt's wrapper settled its view
    pulled = mrunner("pull", sweep, "--to", str(tmp_path / "pulled"))
    assert pulled.returncode == 0, pulled.stderr
    (copy,) = (tmp_path / "pulled").iterdir()
    assert {str(path.relative_to(copy)): path.read_text() for path in copy.rglob("*") if path.is_file()} == {
        "conf-moved/a.yaml": "a: 1\n",
        "data-renamed/x": "x+attempt 1",
        "data-renamed/y": "y",
        "mrunner-metrics.jsonl": (folder / "mrunner-metrics.jsonl").read_text(),
        "renamed.json": (folder / "renamed.json").read_text(),
        "seen.json": (folder / "seen.json").read_text(),
    }


KILLER = """
import json, os, signal, sys
import mrunner

if mrunner.attempt() == 0:
    os.rename("data", "data-renamed")
    open("data-renamed/x", "a").write("+changed")
    os.kill(os.getppid(), signal.SIGKILL)  # the attempt's wrapper killed outright: it settles nothing
    signal.pause()  # killed with it
seen = {name: open(os.path.join("data-renamed", name)).read() for name in sorted(os.listdir("data-renamed"))}
with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "seen.json"), "w") as stream:
    json.dump(seen, stream)
"""


@pytest.mark.parametrize("then", ["pull", "resume"])
def test_a_folder_renamed_under_a_wrapper_killed_outright_is_made_whole_before_it_is_read(
    mrunner, mrunner_home, project, tmp_path, then
):
    """The wrapper killed before it settled the view leaves the experiment's folder marked: ``pull`` (of an
    experiment not running) and the next attempt settle it before they read it."""
    if os.geteuid() != 0:
        pytest.skip("the copy-on-write view is mounted as root")
    from mrunner import codeview

    (project / "killer.py").write_text(KILLER)
    ran = mrunner("killer.py")
    assert ran.returncode != 0
    sweep = ran.stdout.strip().splitlines()[-1]
    folder = next(storage(mrunner_home).rglob(f"{sweep}/0-*"))
    assert os.getxattr(folder, codeview.UNSETTLED)  # not settled: only what it changed is there
    assert sorted(os.listdir(folder / "data-renamed")) == ["x"]
    if then == "pull":
        pulled = mrunner("pull", sweep, "--to", str(tmp_path / "pulled"))
        assert pulled.returncode == 0, pulled.stderr
        (copy,) = (tmp_path / "pulled").iterdir()
        assert (copy / "data-renamed" / "x").read_text() == "x+changed" and (
            copy / "data-renamed" / "y"
        ).read_text() == "y"
    else:
        again = mrunner("resume", sweep)
        assert again.returncode == 0, again.stderr
        assert json.loads((folder / "seen.json").read_text()) == {"x": "x+changed", "y": "y"}
        said = next(storage(mrunner_home).rglob(f"{sweep}/logs/0.1.log")).read_text()
        assert "an earlier attempt renamed folders of the code: data-renamed made whole" in said
    assert sorted(os.listdir(folder / "data-renamed")) == ["x", "y"]
    assert not os.path.lexists(folder / "data" / "x")
    assert_pristine(tree_of(mrunner_home))


WAITER = """
import os, signal
os.rename("data", "data-renamed")
open("data-renamed/x", "a").write("+changed")
open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "renamed"), "w").close()
signal.pause()  # until `mrunner cancel` stops it
"""


def test_a_cancelled_experiment_leaves_its_renamed_folder_whole(mrunner, mrunner_home, project):
    """``cancel`` returns once the attempt's wrapper ended, which settled the view first."""
    if os.geteuid() != 0:
        pytest.skip("the copy-on-write view is mounted as root")
    from mrunner import codeview
    from mrunner.testing.waiting import wait_for

    (project / "wait.py").write_text(WAITER)
    submitted = mrunner("wait.py", "--detach")
    assert submitted.returncode == 0, submitted.stderr
    sweep = submitted.stdout.strip().splitlines()[-1]
    marker = wait_for(lambda: next(storage(mrunner_home).rglob(f"{sweep}/0-*/renamed"), None), what="the rename")
    cancelled = mrunner("cancel", sweep)
    assert cancelled.returncode == 0, cancelled.stderr
    folder = marker.parent
    assert {name: (folder / "data-renamed" / name).read_text() for name in ("x", "y")} == {"x": "x+changed", "y": "y"}
    assert codeview.UNSETTLED not in os.listxattr(folder)
    assert_pristine(tree_of(mrunner_home))
