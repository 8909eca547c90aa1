"""pip's results (``mrunner-requirements:r-DIGEST``) and a killed requirements build's leftovers on the user's
Docker engine: `mrunner gc` removes the results no recorded sweep uses and the leftovers, the next build removes
a killed build's leftovers, and an engine that cannot be reached is one warning.

`gc` removes only what this machine's mrunner noted it made (the test's own home), and these tests run on an
engine of their own as well (a dockerd of the test, ``tests.own_dockerd``): the service's engine is shared with
other test runs, whose images no test may touch.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
from mrunner_k8s import image, local_images

from mrunner import snapshot as snapshots
from mrunner.backend import Keep
from mrunner.reporter import Reporter
from mrunner.testing import wait_for

WHEEL = "/wheels/tiny_dep-1.0-py3-none-any.whl"


class Warnings(Reporter):
    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)


@pytest.fixture
def engine(k8s_service):
    """The test's own dockerd with the service's base image and a wheel pip can install offline."""
    import docker

    from plugins.mrunner_k8s.tests.test_k8s_image import wheel_context
    from tests.own_dockerd import OwnDockerd

    own = OwnDockerd()
    try:
        own.start()
        client = docker.DockerClient(base_url=own.url)
        client.images.pull(k8s_service["base_image"])
        dockerfile = f"FROM {k8s_service['base_image']}\nCOPY tiny.whl {WHEEL}\n"
        context = wheel_context(dockerfile)
        events = list(client.api.build(fileobj=context, custom_context=True, tag="tiny-base:1", decode=True))
        assert not [event for event in events if "error" in event], events[-3:]
        yield own, client
    finally:
        own.close()


def _recipe(make_sweep, tmp_path, own, requirements: str, network: str = "none"):
    project = tmp_path / uuid.uuid4().hex[:8]
    project.mkdir()
    (project / "train.py").write_text("print('hi')\n")
    (project / "requirements.txt").write_text(requirements)
    sweep = make_sweep(
        base_image="tiny-base:1", requirements_file="requirements.txt", build_network=network, docker_host=own.url
    )
    frozen = snapshots.take(project, store=tmp_path / "store")
    sweep.snapshot_digest = frozen.digest
    return sweep, image.recipe(sweep, frozen)


def _labelled(client, build: str | None = None) -> list[str]:
    label = local_images.STAGE_LABEL + (f"={build}" if build else "")
    return [entry["Id"] for entry in client.api.images(all=True, filters={"label": label})]


def _cache_tags(client) -> set[str]:
    return {tag for entry in client.api.images(name="mrunner-requirements") for tag in entry.get("RepoTags") or []}


KILLED_BUILD = """\
import sys
from mrunner_k8s import image
from mrunner.reporter import Reporter
from mrunner.records import Sweep
import pickle
sweep, recipe = pickle.load(open(sys.argv[1], "rb"))
client = image.docker_client(sweep.context)
image._build_requirements(client, recipe, "host", Reporter(), sweep.context["docker_host"])
"""


def _killed_build(make_sweep, tmp_path, own, client) -> str:
    """A requirements build whose pip waits on an index that never answers, killed (SIGKILL) once its pip
    runs: returns its build ID, whose labelled layers (the requirements file among them) stay on the engine."""
    import pickle

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        port = silent.getsockname()[1]
        requirements = f"--index-url http://127.0.0.1:{port}/simple\nnever-there-{uuid.uuid4().hex[:6]}\n"
        sweep, recipe = _recipe(make_sweep, tmp_path, own, requirements, network="host")
        state = tmp_path / f"build-{uuid.uuid4().hex[:6]}.pickle"
        state.write_bytes(pickle.dumps((sweep, recipe)))
        child = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(state)], stderr=subprocess.PIPE)
        try:
            wait_for(lambda: client.api.containers(), bool, timeout=120, every=0.2)  # pip's RUN is running
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        assert child.returncode == -signal.SIGKILL
        [build] = {
            (entry.get("Labels") or {}).get(local_images.STAGE_LABEL)
            for entry in client.api.images(all=True, filters={"label": local_images.STAGE_LABEL})
        }
        assert build.rsplit(".", 2)[:2] == [socket.gethostname(), str(child.pid)], build
        # the engine ends the build its client left; the layers before pip's step stay
        wait_for(lambda: client.api.containers(all=True), lambda found: not found, timeout=120, every=0.2)
        assert _labelled(client, build)
        return build
    finally:
        silent.close()


def test_the_next_build_removes_a_killed_builds_leftovers(mrunner_home, engine, make_sweep, tmp_path):
    own, client = engine
    killed = _killed_build(make_sweep, tmp_path, own, client)
    sweep, recipe = _recipe(make_sweep, tmp_path, own, f"{WHEEL}\n")
    name = image._build_requirements(client, recipe, "none", Reporter(quiet=True), own.url)
    assert _labelled(client) == [], killed  # neither the killed build's layers nor this build's own
    assert _cache_tags(client) == {name}


def test_gc_removes_requirements_images_no_recorded_sweep_uses_and_killed_builds(
    mrunner_home, engine, make_sweep, tmp_path
):
    """Two of pip's results, one a recorded sweep's image was built from: gc removes the other (once older
    than --older-than), lists it first under --dry-run, and removes a killed build's leftovers; an image of
    these names that this machine did not make (another user's on a shared engine) stays; an engine that
    cannot be reached is one warning and the others are collected."""
    own, client = engine
    used_sweep, used_recipe = _recipe(make_sweep, tmp_path, own, f"{WHEEL}\n")
    used = image._build_requirements(client, used_recipe, "none", Reporter(quiet=True), own.url)
    _, other_recipe = _recipe(make_sweep, tmp_path, own, f"{WHEEL}\n# another file\n")
    unused = image._build_requirements(client, other_recipe, "none", Reporter(quiet=True), own.url)
    someone_elses = "mrunner-requirements:r-made-by-someone-else"
    client.api.tag(unused, *someone_elses.split(":"))
    assert used != unused and _cache_tags(client) == {used, unused, someone_elses}
    killed = _killed_build(make_sweep, tmp_path, own, client)
    used_sweep.package = {**used_sweep.package, "requirements_image": used}
    sweeps = [used_sweep]
    local_images.note("unix:///nonexistent/docker.sock", "image", "mrunner-requirements:r-elsewhere")

    young = Keep(sweeps=[], older_than=3600.0, grace=600.0)  # both results were built just now: kept
    assert [a.kind for a in local_images.collect(sweeps, young, True, Warnings())] == ["killed requirements build"]

    time.sleep(1.1)  # docker's creation times are whole seconds
    keep = Keep(sweeps=[], older_than=0.0, grace=600.0)
    reporter = Warnings()
    listed = local_images.collect(sweeps, keep, True, reporter)
    assert sorted((a.kind, a.where) for a in listed) == [
        ("killed requirements build", f"{killed} on docker engine {own.url}"),
        ("requirements image", f"{unused} on docker engine {own.url}"),
    ]
    assert _cache_tags(client) == {used, unused, someone_elses} and _labelled(client, killed)  # nothing removed
    [warning] = reporter.warnings
    assert warning.startswith("docker engine unix:///nonexistent/docker.sock left as it is"), warning
    assert "\n" not in warning

    removed = local_images.collect(sweeps, keep, False, Warnings())
    assert sorted(a.where for a in removed) == sorted(a.where for a in listed)
    assert _cache_tags(client) == {used, someone_elses} and _labelled(client) == []

    used_sweep.package = {}  # its sweep forgotten: nothing recorded uses it
    assert [a.where for a in local_images.collect([used_sweep], keep, False, Warnings())] == [
        f"{used} on docker engine {own.url}"
    ]
    assert _cache_tags(client) == {someone_elses}


def test_mrunner_gc_with_no_sweep_recorded_removes_the_results_of_forgotten_sweeps(
    mrunner, mrunner_home, engine, make_sweep, tmp_path
):
    """The records hold no sweep (the one built from it was forgotten): `mrunner gc` lists pip's result under
    --dry-run and removes it."""
    own, client = engine
    _, recipe = _recipe(make_sweep, tmp_path, own, f"{WHEEL}\n# forgotten\n")
    name = image._build_requirements(client, recipe, "none", Reporter(quiet=True), own.url)
    time.sleep(1.1)  # docker's creation times are whole seconds
    dry = mrunner("gc", "--older-than", "0", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"kubernetes: requirements image {name} on docker engine {own.url} (" in dry.stdout, dry.stdout
    assert "kubernetes: would free 1 item" in dry.stdout and _cache_tags(client) == {name}, dry.stdout
    collected = mrunner("gc", "--older-than", "0")
    assert collected.returncode == 0 and "kubernetes: freed 1 item" in collected.stdout, collected.stdout
    assert _cache_tags(client) == set()
    again = mrunner("gc", "--older-than", "0")  # the ledger forgot it: nothing more to say
    assert "kubernetes" not in again.stdout, again.stdout


def test_a_build_is_killed_only_when_it_is_this_machines_and_its_process_is_gone():
    assert not local_images._killed(local_images.build_id())  # this process runs it
    ended = subprocess.Popen(["true"])
    ended.wait()
    assert local_images._killed(f"{socket.gethostname()}.{ended.pid}.{uuid.uuid4().hex}")
    assert not local_images._killed(f"other.host.example.{ended.pid}.{uuid.uuid4().hex}")  # another machine's
    assert not local_images._killed(uuid.uuid4().hex)  # an ID of the earlier form: its builder is unknown
