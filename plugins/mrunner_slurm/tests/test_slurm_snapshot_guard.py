"""On the real loopback cluster an experiment cannot change the code that the next experiment and a later sweep
of the same code run, and its own writes to the project's files succeed.

The cluster's code folder is made of hard links into a content store every sweep shares, read-only: as the
job's user (mrtest, who owns the store) file modes refuse an in-place write or append through a link, a
delete and a new file in a project folder, but the owner may chmod and then do all of it, and root needs no
chmod. Jobs there run as mrtest, who may not mount, so their wrapper links to a watched copy of the code
folder (``mrunner.attempt --watch``, ``mrunner.treeguard``), whose changes the next experiment and a later
sweep find, restore and name. Untested on the cluster: a root job (the copy-on-write view it mounts is the
local backend's, test_local_snapshot_guard, through the same wrapper; the link per file it gets where it
cannot mount is test_attempt_watch's).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest

from mrunner.testing import write_context
from plugins.mrunner_slurm.tests.test_slurm_cluster import Cluster, slurm_context, status

# `vandal` does what a careless script does, through the project's folders and its own file, and what an
# owner can do on top (make a read-only file or folder writable); `look` only looks.
SCRIPT = """
import json, os, stat
from mrunner import get_configuration

config = get_configuration()
refused, errors = {}, {}

def attempt(what, action, path=None):
    try:
        action()
        return
    except PermissionError as error:
        if path is None:
            errors[what] = error.strerror
            return
        refused[what] = error.strerror  # file modes stop it: the owner makes the file or folder writable
    try:
        os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR)
        action()
    except OSError as error:
        errors[what] = error.strerror

code = os.path.dirname(os.path.realpath(__file__))  # where imports come from
if config["mode"].startswith("vandal"):
    attempt("add data/new", lambda: open("data/new", "w").write("new"), "data")
    attempt("delete data/x", lambda: os.remove("data/x"), "data")
    attempt("delete conf/b.yaml", lambda: os.remove("conf/b.yaml"), "conf")
    attempt("append conf/a.yaml", lambda: open("conf/a.yaml", "a").write("b: 2\\n"), "conf/a.yaml")
    attempt("append own script", lambda: open(__file__, "a").write("# damaged\\n"), __file__)
seen = {
    "data": sorted(os.listdir(os.path.join(code, "data"))),
    "conf": sorted(os.listdir(os.path.join(code, "conf"))),
    "a.yaml": open("conf/a.yaml").read(),
    "script": open(__file__).read(),
    "own data": sorted(name for name in os.listdir("data") if os.path.exists(os.path.join("data", name))),
    "own conf": sorted(name for name in os.listdir("conf") if os.path.exists(os.path.join("conf", name))),
    "refused": refused,
    "errors": errors,
}
with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "seen.json"), "w") as out:
    json.dump(seen, out)
"""
FILES = {"exp.py": SCRIPT, "data/x": "x", "data/y": "y", "conf/a.yaml": "a: 1\n", "conf/b.yaml": "b: 1\n"}


@pytest.fixture
def cluster(slurm_service: dict, tmp_path: Path, mrunner_home: Path, mrunner) -> Cluster:
    storage = f"{slurm_service['storage_dir']}/test-{uuid.uuid4().hex[:10]}"
    write_context(mrunner_home, "test-slurm", slurm_context(slurm_service, storage, array_parallelism=1))
    project = tmp_path / "project"
    for relative, text in FILES.items():
        (project / relative).parent.mkdir(parents=True, exist_ok=True)
        (project / relative).write_text(text)
    mrunner.cwd = project
    cluster = Cluster(slurm_service, storage)
    yield cluster
    cluster.ssh(f"chmod -R u+w {storage} && rm -rf {storage}", check=False)


def submit(mrunner, *args: str) -> tuple[str, str]:
    done = mrunner("+context=test-slurm", "exp.py", *args, "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1], done.stderr


def seen(cluster: Cluster, sweep: str, project: str) -> dict[int, dict]:
    found = cluster.ssh(f"cd {cluster.storage}/{project}/{sweep} && grep -H . */seen.json")
    return {int(line.split("-", 1)[0]): json.loads(line.split(":", 1)[1]) for line in found.splitlines()}


def tree_sums(cluster: Cluster, folder: str) -> dict[str, str]:
    sums = cluster.ssh(f"cd {folder} && find . -type f -print0 | xargs -0 sha256sum")
    return {line.split()[1][2:]: line.split()[0] for line in sums.splitlines()}


def pristine() -> dict[str, str]:
    return {relative: hashlib.sha256(text.encode()).hexdigest() for relative, text in FILES.items()}


def assert_original(view: dict) -> None:
    assert view["data"] == ["x", "y"] and view["conf"] == ["a.yaml", "b.yaml"] and view["a.yaml"] == "a: 1\n"
    assert view["script"] == SCRIPT and view["own data"] == ["x", "y"] and view["own conf"] == ["a.yaml", "b.yaml"]


def test_an_experiment_cannot_change_what_the_next_one_and_a_later_sweep_run_on_the_cluster(cluster, mrunner):
    sweep, _ = submit(mrunner, "-m", "mode=vandal,look,vandal_again")  # one task at a time, in order
    runs = status(mrunner, sweep)
    project, digest = runs["sweep"]["project"], runs["sweep"]["snapshot_digest"]
    assert [run["state"] for run in runs["experiments"]] == ["completed"] * 3
    views = seen(cluster, sweep, project)
    vandal, look = views[0], views[1]
    # file modes stop each of them for the store's owner, whose chmod then lets it through
    refused = {"add data/new", "delete conf/b.yaml", "append conf/a.yaml", "append own script"}
    assert set(vandal["refused"]) == refused and set(vandal["refused"].values()) == {"Permission denied"}
    assert vandal["errors"] == {}  # every write succeeded in the end ...
    assert vandal["a.yaml"] == "a: 1\nb: 2\n" and vandal["script"] == SCRIPT + "# damaged\n"  # ... and it sees them
    assert vandal["own data"] == ["new", "y"] and vandal["own conf"] == ["a.yaml"]
    assert_original(look)  # ... and the next experiment does not
    look_log = mrunner("logs", f"{sweep}/1").stdout
    assert f"sweep {sweep}, the last to use it, changed code snapshot" in look_log, look_log
    assert "deleted conf/b.yaml, data/x" in look_log and "added data/new" in look_log, look_log
    shown = mrunner("status", f"{sweep}/1")  # its record says it too
    assert f"sweep {sweep}, the last" in shown.stdout, shown.stdout + shown.stderr
    code = f"{cluster.storage}/.mrunner/code/{digest}"
    assert tree_sums(cluster, code) == pristine()  # the code folder, the store's hard links: never reached
    objects = cluster.ssh(f"cd {cluster.storage}/.mrunner/objects && ls").split()
    assert sorted(objects) == sorted(set(pristine().values()))
    assert all(cluster.ssh(f"sha256sum {cluster.storage}/.mrunner/objects/{sha}").startswith(sha) for sha in objects)

    # the last experiment of the first sweep damaged the watched copy again: the later sweep finds, restores
    # and names it before it runs anything
    later, said = submit(mrunner, "mode=look", "+tag=later")
    assert (
        f"sweep {sweep}, the last to use it, changed code snapshot" in said and f"restored before sweep {later}" in said
    ), said
    (seen_later,) = seen(cluster, later, project).values()
    assert_original(seen_later)
    assert "changed code snapshot" not in mrunner("logs", f"{later}/0").stdout  # restored once, before the sweep
    assert tree_sums(cluster, f"{cluster.storage}/.mrunner/watched/{digest}") == pristine()
    assert tree_sums(cluster, code) == pristine()
