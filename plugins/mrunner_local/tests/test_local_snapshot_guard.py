"""An experiment cannot change the code snapshot that the next experiment and later sweeps run, as root too:
sealed by the immutable flag where the file system allows it, else watched, restored and named."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mrunner.treeguard import FAKE_NO_FLAG

SCRIPT = """
import json, os
from mrunner import get_configuration

config = get_configuration()
mode, errors = config["mode"], {}

def attempt(what, action):
    try:
        action()
    except OSError as error:
        errors[what] = error.strerror

if mode != "look":  # what a careless script does, by the project's links and by resolved paths
    attempt("delete data/x", lambda: os.remove("data/x"))
    attempt("add data/new", lambda: open("data/new", "w").write("new"))
    attempt("append conf/a.yaml", lambda: open("conf/a.yaml", "a").write("b: 2\\n"))
    attempt("append own script", lambda: open(__file__, "a").write("# damaged\\n"))
    attempt("delete resolved data/y", lambda: os.remove(os.path.realpath("data/y")))
code = os.path.dirname(os.path.realpath(__file__))  # the snapshot itself, where imports come from
if mode != "look":
    attempt("add resolved conf/new", lambda: open(os.path.join(code, "conf", "new"), "w").close())
seen = {
    "data": sorted(os.listdir(os.path.join(code, "data"))),
    "conf": sorted(os.listdir(os.path.join(code, "conf"))),
    "a.yaml": open(os.path.join(code, "conf", "a.yaml")).read(),
    "script": open(os.path.realpath(__file__)).read(),
    "own data": sorted(os.listdir("data")),
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
    mrunner.cwd = folder
    return folder


def seen(home: Path, sweep: str) -> dict[int, dict]:
    found = {}
    for path in (home / "data" / "mrunner" / "storage").rglob(f"{sweep}/*/seen.json"):
        found[int(path.parent.name.split("-", 1)[0])] = json.loads(path.read_text())
    return found


def log(home: Path, sweep: str, index: int) -> str:
    return next((home / "data" / "mrunner" / "storage").rglob(f"{sweep}/logs/{index}.0.log")).read_text()


def assert_original(view: dict) -> None:
    assert view["data"] == ["x", "y"] and view["conf"] == ["a.yaml"] and view["a.yaml"] == "a: 1\n"
    assert view["script"] == SCRIPT and view["own data"] == ["x", "y"]


@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "watched"])
def test_an_experiment_cannot_change_what_the_next_one_and_a_later_sweep_run(
    mrunner, mrunner_home, project, monkeypatch, sealed
):
    if not sealed:
        monkeypatch.setenv(FAKE_NO_FLAG, "1")  # as on a file system, or in a container, without the flag
    first = mrunner("exp.py", "-m", "mode=vandal,look,again", "context.max_parallel=1")
    assert first.returncode == 0, first.stderr
    sweep = first.stdout.strip().splitlines()[-1]
    views = seen(mrunner_home, sweep)
    vandal, look = views[0], views[1]  # the grid's order, one at a time
    # deleting and creating through the project's folders stays in the experiment's own folder
    assert vandal["own data"] == ["new", "y"]
    assert_original(look)
    if sealed:
        assert set(vandal["errors"]) == {"append conf/a.yaml", "append own script", "delete resolved data/y",
                                         "add resolved conf/new"}  # fmt: skip
        assert set(vandal["errors"].values()) == {"Operation not permitted"}
        assert "changed after" not in log(mrunner_home, sweep, 1)
    else:
        assert vandal["errors"] == {}  # nothing stopped it: found and restored before the next experiment
        assert f"changed after sweep {sweep} used it" in log(mrunner_home, sweep, 1)
        assert "restored" in first.stderr
    later = mrunner("exp.py", "mode=look", "+tag=later")
    assert later.returncode == 0, later.stderr
    later_sweep = later.stdout.strip().splitlines()[-1]
    (view,) = seen(mrunner_home, later_sweep).values()
    assert_original(view)
    if not sealed:  # the last experiment of the first sweep damaged it again: named by the later sweep
        assert f"changed after sweep {sweep} used it" in log(mrunner_home, later_sweep, 0)
        assert "deleted data/y" in log(mrunner_home, later_sweep, 0)
    trees = mrunner_home / "data" / "mrunner" / "snapshots" / "trees"
    (tree,) = [p for p in trees.iterdir() if p.is_dir()]
    assert sorted(os.listdir(tree / "data")) == ["x", "y"]
    assert mrunner("gc").returncode == 0


def test_collecting_a_sealed_tree_clears_the_flag_and_its_guard(tmp_path):
    from mrunner import cleanup, treeguard

    tree = tmp_path / "trees" / "digest"
    (tree / "data").mkdir(parents=True)
    (tree / "data" / "x").write_text("x")
    if not treeguard.protect(tree):
        pytest.skip("this file system keeps no immutable flag")
    with pytest.raises(PermissionError):
        (tree / "data" / "x").unlink()  # root included
    cleanup._remove(tree, "snapshot copy", dry_run=False)
    assert not tree.exists() and not treeguard.guard_dir(tree).exists()
