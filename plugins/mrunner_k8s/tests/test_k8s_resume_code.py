"""A Kubernetes submission stopped (SIGTERM, as Ctrl-C) once the image was pushed, before or while its Jobs
were created, then the project edited: `mrunner resume` without ``--current-code`` runs the never-run
experiments once each from the pushed image, the code as submitted (``Backend.packaged``); once the image is
gone from the registry too, the refusal names ``--current-code``. On the loopback cluster and registry
(tests/services/k8s); the moment of the stop is exact: the process signals itself right after the call named."""

from __future__ import annotations

import re
import urllib.request
import uuid
from pathlib import Path

import pytest

from mrunner.testing import ended, experiments, logged, states, stopped_after, wait_for, write_context
from plugins.mrunner_k8s.tests.test_k8s_cluster import k8s_context

EXPERIMENT = """\
import os
from mrunner import get_configuration
import version

done = os.path.join(os.environ["MRUNNER_CHECKPOINT_DIR"], "done")
with open(done, "a") as stream:
    stream.write("x")
print("RAN", get_configuration().i, version.CODE, len(open(done).read()), flush=True)
"""  # its index, the code it ran, and how many times it got that far


@pytest.fixture
def project(mrunner, mrunner_home, tmp_path, tmp_path_factory, k8s_service, namespace, own_images, monkeypatch):
    (tmp_path / "exp.py").write_text(EXPERIMENT)
    (tmp_path / "version.py").write_text('CODE = "submitted"\n')
    (tmp_path / "requirements.txt").write_text("# nothing to install\n")
    (tmp_path / "unique.txt").write_text(uuid.uuid4().hex)  # a new snapshot, so a new image to build
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path_factory.mktemp("docker-config")))  # no stored credentials
    write_context(mrunner_home, "test-k8s", k8s_context(k8s_service, namespace, registry_url=own_images(namespace)))
    mrunner.cwd = tmp_path
    return tmp_path


def stop_after(mrunner, target: str, signals: int = 1) -> str:
    """Submit three experiments, stopped (``signals`` SIGTERMs) right after the first call of ``target``, once the
    image was pushed; the sweep's id."""
    sweep, stopped = stopped_after(mrunner, target, "+context=test-k8s", "exp.py", "-m", "i=range(3)", signals=signals)
    assert "pushed " in stopped.stderr, stopped.stderr  # the image was built and pushed before the stop
    return sweep


def edit(project: Path) -> None:
    (project / "version.py").write_text('CODE = "edited"\n')


def all_completed(mrunner, sweep: str) -> dict[int, dict]:
    found = ended(mrunner, sweep, every=1)
    assert [found[i]["state"] for i in range(3)] == ["completed"] * 3, found
    return found


def test_stopped_after_the_push_before_it_was_recorded_resume_runs_the_pushed_image(mrunner, project):
    """The stop comes as ``package`` returns: the image is in the registry but the records never got its
    name, so the backend finds it by its content tag."""
    sweep = stop_after(mrunner, "mrunner_k8s.plugin:KubernetesBackend.package")
    assert set(states(mrunner, sweep).values()) == {"cancelled"}
    edit(project)
    resumed = mrunner("resume", sweep, "--wait")
    assert resumed.returncode == 0, resumed.stderr
    told = resumed.stdout + resumed.stderr
    assert "version.py changed since the submission" in told and "is in the registry" in told, told
    assert "building image" not in told and "pushed " not in told, told  # nothing built or pushed again
    all_completed(mrunner, sweep)
    assert [logged(mrunner, f"{sweep}/{i}", "RAN") for i in range(3)] == [[str(i), "submitted", "1"] for i in range(3)]
    again = mrunner("resume", sweep)
    assert again.returncode == 0 and "nothing to resume" in again.stdout + again.stderr, again.stderr


def test_stopped_after_the_push_with_the_requirements_edited_too_resume_runs_the_pushed_image(mrunner, project):
    """As above, and the requirements file edited as well: the image's name (its content tag, which the
    requirements are part of) was recorded before the build, so it is not worked out again from the edited
    file; the image as pushed runs, with the requirements it was built with."""
    from mrunner.store import Store

    sweep, stopped = stopped_after(
        mrunner, "mrunner_k8s.plugin:KubernetesBackend.package", "+context=test-k8s", "exp.py", "-m", "i=range(3)"
    )
    (image,) = re.findall(r"pushed (\S+) \(", stopped.stderr)
    edit(project)
    (project / "requirements.txt").write_text("# edited: something else to install\n")
    resumed = mrunner("resume", sweep, "--wait")
    assert resumed.returncode == 0, resumed.stderr
    told = resumed.stdout + resumed.stderr
    assert f"image {image} (" in told and "is in the registry" in told, told
    assert "building image" not in told and "pushed " not in told, told
    all_completed(mrunner, sweep)
    assert [logged(mrunner, f"{sweep}/{i}", "RAN") for i in range(3)] == [[str(i), "submitted", "1"] for i in range(3)]
    recorded = Store().sweep(sweep)
    assert recorded.package["image"] == image, recorded.package
    assert recorded.detail["identified"] == {"image": image, "requirements": "# nothing to install\n"}, recorded.detail


def test_stopped_while_the_jobs_were_created_resume_runs_the_rest_once_from_the_image(mrunner, project):
    """The stop comes right after the first Job was created: that one is recorded and runs; the two never
    created run once each from the recorded image after the edit; none runs twice."""
    sweep = stop_after(mrunner, "mrunner_k8s.cluster:Cluster.create_job")
    shown = experiments(mrunner, sweep)
    assert [shown[i]["state"] for i in range(3)][1:] == ["cancelled", "cancelled"], shown
    assert shown[0]["state"] != "cancelled", shown
    edit(project)
    resumed = mrunner("resume", sweep, "--wait")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming 2 of 3" in resumed.stdout + resumed.stderr, resumed.stdout + resumed.stderr
    found = all_completed(mrunner, sweep)
    assert [found[i]["attempt"] for i in range(3)] == [0, 1, 1], found
    assert [logged(mrunner, f"{sweep}/{i}", "RAN") for i in range(3)] == [[str(i), "submitted", "1"] for i in range(3)]


def test_a_second_interrupt_as_a_job_is_created_leaves_it_to_resume_which_runs_each_once(mrunner, project):
    """Two SIGTERMs right as the API server created the first Job, before it was recorded: the sweep keeps its
    experiments planned (the backend cannot know what it accepted); `resume`, after an edit, finds that Job by
    its name instead of creating a second one, and creates the other two from the image: each runs once."""
    sweep = stop_after(mrunner, "mrunner_k8s.cluster:Cluster.create_job", signals=2)
    assert set(states(mrunner, sweep).values()) == {"planned"}
    edit(project)
    resumed = mrunner("resume", sweep, "--wait")
    assert resumed.returncode == 0, resumed.stderr
    assert "(1 already existed)" in resumed.stdout + resumed.stderr, resumed.stdout + resumed.stderr
    found = all_completed(mrunner, sweep)
    assert [found[i]["attempt"] for i in range(3)] == [0, 0, 0], found
    assert [logged(mrunner, f"{sweep}/{i}", "RAN") for i in range(3)] == [[str(i), "submitted", "1"] for i in range(3)]


def delete_from_registry(reference: str) -> None:
    """Delete the image ``HOST/REPOSITORY:TAG`` from the (deletion-enabled) loopback registry, by its digest."""
    host, _, rest = reference.partition("/")
    repository, _, tag = rest.rpartition(":")
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    looked = urllib.request.Request(f"http://{host}/v2/{repository}/manifests/{tag}", method="HEAD")
    looked.add_header("Accept", accept)
    with urllib.request.urlopen(looked, timeout=30) as answer:
        digest = answer.headers["Docker-Content-Digest"]
    gone = urllib.request.Request(f"http://{host}/v2/{repository}/manifests/{digest}", method="DELETE")
    with urllib.request.urlopen(gone, timeout=30) as answer:
        assert answer.status == 202


def test_once_the_image_is_gone_from_the_registry_resume_names_current_code(mrunner, project):
    """Edited, and the image deleted from the registry: one line naming `--current-code`, the records as they
    were; `--current-code` then runs the code as it is now, once each."""
    from mrunner.store import Store

    sweep = stop_after(mrunner, "mrunner_k8s.cluster:Cluster.create_job")
    edit(project)
    # experiment 0's Job was created before the stop and runs on (its image pulled before it is deleted): its
    # end, not the refusal, would change the records between the two looks
    before = wait_for(
        lambda: experiments(mrunner, sweep), lambda shown: shown[0]["state"] == "completed", timeout=300, every=1
    )
    assert [before[i]["state"] for i in (1, 2)] == ["cancelled"] * 2, before
    delete_from_registry(Store().sweep(sweep).package["image"])
    refused = mrunner("resume", sweep)
    assert refused.returncode != 0, refused.stdout
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mrunner: error: "), refused.stderr
    assert f"`mrunner resume {sweep} --current-code`" in lines[0] and "version.py changed" in lines[0], lines[0]
    assert "nor kept by the kubernetes backend" in lines[0], lines[0]
    after = experiments(mrunner, sweep)
    assert [(after[i]["state"], after[i]["attempt"]) for i in range(3)] == [
        (before[i]["state"], before[i]["attempt"]) for i in range(3)
    ]
    current = mrunner("resume", sweep, "--current-code", "--wait")
    assert current.returncode == 0, current.stderr
    all_completed(mrunner, sweep)
    assert [logged(mrunner, f"{sweep}/{i}", "RAN")[1:] for i in range(3)] == [
        ["submitted", "1"],
        ["edited", "1"],
        ["edited", "1"],
    ]


def test_a_registry_that_cannot_be_asked_is_named_and_nothing_is_resumed(
    mrunner, mrunner_home, project, k8s_service, namespace, own_images
):
    """Pushed through a proxy of the registry that is gone by the resume: one line naming the registry's
    trouble (not an image gone, not `--current-code`), the records as they were."""
    from tests.own_dockerd import RegistryProxy

    proxy = RegistryProxy(k8s_service["registry"])
    registry = own_images(namespace, proxy.address)
    write_context(mrunner_home, "test-k8s", k8s_context(k8s_service, namespace, registry_url=registry))
    try:
        sweep = stop_after(mrunner, "mrunner_k8s.plugin:KubernetesBackend.package")
    finally:
        proxy.close()
    edit(project)
    refused = mrunner("resume", sweep)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode != 0 and len(lines) == 1, refused.stderr
    assert lines[0].startswith(f"mrunner: error: cannot ask the registry whether it still holds {registry}/"), lines
    assert lines[0].endswith("(nothing was resumed)") and "--current-code" not in lines[0], lines[0]
    assert set(states(mrunner, sweep).values()) == {"cancelled"}


def test_stopped_before_the_push_with_the_requirements_edited_resume_builds_the_identified_image(mrunner, project):
    """The stop comes once ``identify``'s facts are recorded, as the build reaches docker: the image's name and
    the requirements are recorded, nothing is built or pushed; then only the requirements file is edited. `resume` builds and pushes the image named
    then, from the recorded requirements (the file's snapshotted content), and each experiment runs once
    with them, as Slurm builds its virtualenv from them."""
    from mrunner.store import Store

    (project / "exp.py").write_text(EXPERIMENT + 'print("REQUIREMENTS", repr(open("requirements.txt").read()))\n')
    sweep, stopped = stopped_after(
        mrunner, "mrunner_k8s.image.docker_client", "+context=test-k8s", "exp.py", "-m", "i=range(3)"
    )
    assert "pushed " not in stopped.stderr and "building image" not in stopped.stderr, stopped.stderr
    identified = Store().sweep(sweep).detail["identified"]
    assert identified["requirements"] == "# nothing to install\n", identified
    (project / "requirements.txt").write_text("# edited: something else to install\n")
    resumed = mrunner("resume", sweep, "--wait")
    assert resumed.returncode == 0, resumed.stderr
    told = resumed.stdout + resumed.stderr
    assert "requirements.txt changed since the submission" in told, told
    assert f"pushed {identified['image']} (" in told, told  # the image named at the submission, built now
    all_completed(mrunner, sweep)
    assert [logged(mrunner, f"{sweep}/{i}", "RAN") for i in range(3)] == [[str(i), "submitted", "1"] for i in range(3)]
    assert [logged(mrunner, f"{sweep}/{i}", "REQUIREMENTS") for i in range(3)] == [
        ["'#", "nothing", "to", "install\\n'"]
    ] * 3
    assert Store().sweep(sweep).package["image"] == identified["image"]
