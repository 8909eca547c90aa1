"""On the real loopback cluster an experiment cannot change the code that the next experiment and a later sweep
of the same code run, and its own writes to the project's files succeed.

The cluster's code folder is made of hard links into a content store every sweep shares, read-only: as the
job's user (mrtest, who owns the store) file modes refuse an in-place write or append through a link, a
delete and a new file in a project folder, but the owner may chmod and then do all of it, and root needs no
chmod. Jobs there run as mrtest, who may not mount, so their wrapper links to a watched copy of the code
folder (``mrunner.attempt --watch``, ``mrunner.treeguard``), whose changes the next experiment and a later
sweep find, restore and name. Jobs submitted as root (start.sh's root login) run as root, whom no file mode
stops: their wrapper mounts a copy-on-write view of the code per experiment (``mrunner.codeview``; the link per
file root gets where it cannot mount is test_attempt_watch's).
"""

from __future__ import annotations

import hashlib
import json
import os
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


def on_cluster(service: dict, tmp_path: Path, mrunner_home: Path, mrunner) -> Cluster:
    """A context ``test-slurm`` in a storage folder of its own, and the project (``FILES``) as mrunner's folder."""
    storage = f"{service['storage_dir']}/test-{uuid.uuid4().hex[:10]}"
    write_context(mrunner_home, "test-slurm", slurm_context(service, storage, array_parallelism=1))
    project = tmp_path / "project"
    for relative, text in FILES.items():
        (project / relative).parent.mkdir(parents=True, exist_ok=True)
        (project / relative).write_text(text)
    mrunner.cwd = project
    return Cluster(service, storage)


@pytest.fixture
def cluster(slurm_service: dict, tmp_path: Path, mrunner_home: Path, mrunner) -> Cluster:
    cluster = on_cluster(slurm_service, tmp_path, mrunner_home, mrunner)
    yield cluster
    cluster.ssh(f"chmod -R u+w {cluster.storage} && rm -rf {cluster.storage}", check=False)


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


@pytest.fixture
def root_cluster(slurm_service: dict, tmp_path: Path, mrunner_home: Path, mrunner) -> Cluster:
    """The cluster as root (start.sh's root login, from 127.0.0.1, with a key of its own): jobs run as root, whom
    no file mode stops."""
    if "root" not in slurm_service:  # a cluster started by an older start.sh
        message = "the Slurm service has no root login: run tests/services/slurm/start.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    cluster = on_cluster({**slurm_service, **slurm_service["root"]}, tmp_path, mrunner_home, mrunner)
    yield cluster
    cluster.ssh(f"rm -rf {cluster.storage}", check=False)


def test_a_root_job_cannot_change_what_the_next_one_and_a_later_sweep_run_on_the_cluster(root_cluster, mrunner):
    cluster = root_cluster
    sweep, _ = submit(mrunner, "-m", "mode=vandal,look,vandal_again")  # one task at a time, in order
    runs = status(mrunner, sweep)
    project, digest = runs["sweep"]["project"], runs["sweep"]["snapshot_digest"]
    assert [run["state"] for run in runs["experiments"]] == ["completed"] * 3
    assert cluster.ssh("id -un").strip() == "root"
    views = seen(cluster, sweep, project)
    vandal, look, again = views[0], views[1], views[2]
    for damaging in (vandal, again):  # nothing refuses root, and each sees its own changes ...
        assert damaging["refused"] == {} and damaging["errors"] == {}, damaging
        assert damaging["a.yaml"] == "a: 1\nb: 2\n" and damaging["script"] == SCRIPT + "# damaged\n"
        assert damaging["own data"] == ["new", "y"] and damaging["own conf"] == ["a.yaml"]
    assert_original(look)  # ... which the next experiment does not see
    code = f"{cluster.storage}/.mrunner/code/{digest}"
    assert tree_sums(cluster, code) == pristine()  # the code folder, the store's hard links: never reached
    objects = cluster.ssh(f"cd {cluster.storage}/.mrunner/objects && ls").split()
    assert sorted(objects) == sorted(set(pristine().values()))
    assert all(cluster.ssh(f"sha256sum {cluster.storage}/.mrunner/objects/{sha}").startswith(sha) for sha in objects)
    # where root may mount (here: the node is this machine), each experiment ran in a copy-on-write view of its
    # own, so there is no watched copy and nothing to restore; where it may not, the watched copy is restored
    # and the sweep that changed it named, before the next experiment and before a later sweep
    watched = f"{cluster.storage}/.mrunner/watched/{digest}"
    mounted = not cluster.ssh(f"test -d {watched} && echo yes", check=False).strip()
    look_log = mrunner("logs", f"{sweep}/1").stdout
    assert mounted != (f"sweep {sweep}, the last to use it, changed code snapshot" in look_log), look_log

    later, said = submit(mrunner, "mode=look", "+tag=later")
    (seen_later,) = seen(cluster, later, project).values()
    assert_original(seen_later)
    named = (
        f"sweep {sweep}, the last to use it, changed code snapshot" in said and f"restored before sweep {later}" in said
    )
    assert mounted != named, said
    assert "changed code snapshot" not in mrunner("logs", f"{later}/0").stdout
    assert tree_sums(cluster, code) == pristine()
    if not mounted:
        assert tree_sums(cluster, watched) == pristine()


RENAMER = """
import json, os
os.rename("data", "data-renamed")  # a folder of the project, in the copy-on-write view too
open("data-renamed/x", "a").write("+changed")
with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "seen.json"), "w") as out:
    json.dump(sorted(os.listdir("data-renamed")), out)
"""


def test_a_root_job_renames_a_folder_of_the_project_and_its_folder_holds_it_whole(root_cluster, mrunner):
    """``os.rename`` of a project folder in a root job's copy-on-write view (``redirect_dir``): once the job's
    attempt ended, the experiment's folder on the cluster holds the renamed folder's files (``codeview.settle``),
    and the code folder is as uploaded."""
    cluster = root_cluster
    (Path(mrunner.cwd) / "rename.py").write_text(RENAMER)
    done = mrunner("+context=test-slurm", "rename.py", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    sweep = done.stdout.strip().splitlines()[-1]
    runs = status(mrunner, sweep)
    project, digest = runs["sweep"]["project"], runs["sweep"]["snapshot_digest"]
    assert seen(cluster, sweep, project) == {0: ["x", "y"]}
    expected = {**pristine(), "rename.py": hashlib.sha256(RENAMER.encode()).hexdigest()}
    assert tree_sums(cluster, f"{cluster.storage}/.mrunner/code/{digest}") == expected
    if cluster.ssh(f"test -d {cluster.storage}/.mrunner/watched/{digest} && echo yes", check=False).strip():
        return  # root could not mount here: links to the watched copy, which rename as folders of links
    folder = cluster.ssh(f"cd {cluster.storage}/{project}/{sweep} && ls -d 0-*").strip()
    files = cluster.ssh(f"cd {cluster.storage}/{project}/{sweep}/{folder}/data-renamed && grep -H . x y")
    assert files.split() == ["x:x+changed", "y:y"]  # plain files (a link would be followed to the same text)
    assert not cluster.ssh(f"find {cluster.storage}/{project}/{sweep}/{folder}/data-renamed -type l").strip()


KILLER = """
import os, signal
os.rename("data", "data-renamed")  # a folder of the project, in the copy-on-write view too
open("data-renamed/x", "a").write("+changed")
os.kill(os.getppid(), signal.SIGKILL)  # the attempt's wrapper killed outright: it settles nothing
signal.pause()  # ended with the job
"""


def test_a_folder_renamed_under_a_root_job_whose_wrapper_was_killed_is_pulled_whole(root_cluster, mrunner, tmp_path):
    """The wrapper killed outright before it settled the view leaves the experiment's folder on the cluster
    marked (``settling.UNSETTLED``), holding of the renamed folder only what the experiment changed: ``pull``
    settles it on the login node before it brings it back, so the pulled folder is whole."""
    cluster = root_cluster
    (Path(mrunner.cwd) / "killer.py").write_text(KILLER)
    done = mrunner("+context=test-slurm", "killer.py", "--wait")
    sweep = done.stdout.strip().splitlines()[-1]
    runs = status(mrunner, sweep)
    assert runs["experiments"][0]["state"] not in ("running", "submitted", "planned"), runs
    project, digest = runs["sweep"]["project"], runs["sweep"]["snapshot_digest"]
    if cluster.ssh(f"test -d {cluster.storage}/.mrunner/watched/{digest} && echo yes", check=False).strip():
        pytest.skip("root could not mount a view on this cluster: links to the watched copy, nothing to settle")
    folder = cluster.ssh(f"cd {cluster.storage}/{project}/{sweep} && ls -d 0-*").strip()
    where = f"{cluster.storage}/{project}/{sweep}/{folder}"
    assert cluster.ssh(f"ls {where}/data-renamed").split() == ["x"]  # not settled: only what it changed
    pulled = mrunner("pull", sweep, "--to", str(tmp_path / "pulled"))
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    (copy,) = (tmp_path / "pulled").iterdir()
    assert {name: (copy / "data-renamed" / name).read_text() for name in ("x", "y")} == {"x": "x+changed", "y": "y"}
    assert not (copy / "data").exists()  # the whiteout of the old name is not a file
    assert cluster.ssh(f"ls {where}/data-renamed").split() == ["x", "y"]  # settled there, plain files
    assert not cluster.ssh(f"find {where}/data-renamed -type l").strip()
    assert "unsettled" not in cluster.ssh(f"getfattr -d -m - {where} 2>&1 || true")
