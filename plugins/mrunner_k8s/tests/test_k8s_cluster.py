"""End to end on the loopback Kubernetes 1.20 cluster (tests/services/k8s): the real CLI builds and pushes
the image, creates the objects and Jobs; status, logs, cancel and resume follow them."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import pytest

from mrunner.testing import wait_for, write_context
from tests.renderings import one, renderings

FAKE_TOKEN = "fake-token-" + uuid.uuid4().hex
EXPERIMENT = """\
import hashlib, os, sys, time
from mrunner import get_configuration

config = get_configuration()
token = os.environ.get("MY_FAKE_TOKEN", "")
folder = os.environ["MRUNNER_EXPERIMENT_DIR"]
with open(os.path.join(folder, "out.txt"), "w") as stream:
    stream.write("done")
print(f"lr={config.lr} storage={os.environ['STORAGE_DIR']} folder={folder} "
      f"token_sha={hashlib.sha256(token.encode()).hexdigest()[:16]}", flush=True)
time.sleep(float(config.get("sleep", 0)))
sys.exit(int(config.get("code", 0)))
"""


@pytest.fixture
def project(mrunner_home, tmp_path, tmp_path_factory, k8s_service, namespace, own_images, monkeypatch):
    """The experiment script in the test's folder, and the context `test-k8s` pointing at the service."""
    (tmp_path / "exp.py").write_text(EXPERIMENT)
    (tmp_path / "requirements.txt").write_text("# nothing to install\n")
    (tmp_path / "unique.txt").write_text(uuid.uuid4().hex)  # a new snapshot, so a new image to build
    docker_config = tmp_path_factory.mktemp("docker-config")  # no stored registry credentials
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    monkeypatch.setenv("MY_FAKE_TOKEN", FAKE_TOKEN)
    write_context(
        mrunner_home,
        "test-k8s",
        k8s_context(k8s_service, namespace, registry_url=own_images(namespace), secrets=["MY_FAKE_TOKEN"]),
    )
    return tmp_path


def k8s_context(k8s: dict, namespace: str, **keys) -> dict:
    """The keys of the context `test-k8s` on the loopback cluster, in namespace ``namespace``."""
    return {
        "backend": "kubernetes",
        "project": "mrt-project",
        "kubeconfig": k8s["kubeconfig"],
        "kube_context": k8s["kube_context"],
        "docker_host": k8s["docker_host"],
        "base_image": k8s["base_image"],
        "requirements_file": "requirements.txt",
        "storage": "/storage",
        "storage_class": k8s["storage_class"],
        "default_pvc_size": "100Mi",
        "namespace": namespace,
        **keys,
    }


def submit(mrunner, *args, env=None):
    result = mrunner("+context=test-k8s", "exp.py", *args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1], result


def experiments(mrunner, sweep_id):
    result = mrunner("status", sweep_id, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["experiments"]


def ended(runs):
    return all(run["state"] in ("completed", "failed", "cancelled", "timeout", "lost") for run in runs)


def test_sweep_runs_reports_logs_and_keeps_the_token_secret(mrunner, project, cluster, namespace, k8s_service):
    core, batch = cluster
    sweep_id, first = submit(mrunner, "-m", "lr=0.1,0.01", "code=0,3")
    assert "building image" in first.stderr
    runs = wait_for(lambda: experiments(mrunner, sweep_id), ended, timeout=120, every=1)
    by_params = {(run["parameters"]["lr"], run["parameters"]["code"]): run for run in runs}
    assert {key: (run["state"], run["exit_code"]) for key, run in by_params.items()} == {
        (0.1, 0): ("completed", 0),
        (0.01, 0): ("completed", 0),
        (0.1, 3): ("failed", 3),
        (0.01, 3): ("failed", 3),
    }

    index = by_params[(0.01, 3)]["index"]
    logs = mrunner("logs", f"{sweep_id}/{index}")
    assert logs.returncode == 0, logs.stderr
    expected_sha = hashlib.sha256(FAKE_TOKEN.encode()).hexdigest()[:16]
    assert f"lr=0.01 storage=/storage folder=/storage/mrt-project/{sweep_id}/{index}-exp" in logs.stdout
    assert f"token_sha={expected_sha}" in logs.stdout  # the pod had the token, through the Secret
    assert FAKE_TOKEN not in logs.stdout + logs.stderr + first.stdout + first.stderr

    jobs = batch.list_namespaced_job(namespace, label_selector=f"mrunner/sweep={sweep_id}").items
    assert len(jobs) == 4
    stored = json.dumps(batch.api_client.sanitize_for_serialization(jobs))
    assert FAKE_TOKEN not in stored and '"secretKeyRef"' in stored
    config_maps = core.list_namespaced_config_map(namespace, label_selector=f"mrunner/sweep={sweep_id}").items
    assert FAKE_TOKEN not in json.dumps(core.api_client.sanitize_for_serialization(config_maps))
    data_dir = Path(os.environ["XDG_DATA_HOME"]) / "mrunner"
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert FAKE_TOKEN.encode() not in path.read_bytes(), path
    sweep = json.loads(mrunner("status", sweep_id, "--json").stdout)["sweep"]
    _assert_image_free_of(k8s_service, sweep["package"]["image"], FAKE_TOKEN)

    # The same code again: no build, no push; the resumed failures get new Jobs, the completed keep theirs.
    second_id, second = submit(mrunner, "-m", "lr=0.5")
    assert "already in the registry" in second.stderr and "building image" not in second.stderr
    followed = mrunner("logs", f"{second_id}/0", "-f", timeout=120)  # waits for the pod, ends with it
    assert followed.returncode == 0 and "lr=0.5 storage=/storage" in followed.stdout, followed.stderr
    resumed = mrunner("resume", sweep_id)
    assert resumed.returncode == 0, resumed.stderr
    runs = wait_for(lambda: experiments(mrunner, sweep_id), ended, timeout=120, every=1)
    assert sorted(run["attempt"] for run in runs) == [0, 0, 1, 1]
    assert len(batch.list_namespaced_job(namespace, label_selector=f"mrunner/sweep={sweep_id}").items) == 6
    assert wait_for(lambda: experiments(mrunner, second_id), ended, timeout=120, every=1)[0]["state"] == "completed"


def test_the_dry_run_shows_the_job_the_submission_creates(mrunner, project, cluster, namespace, k8s_service):
    """Backend.render: `--dry-run` prints the first experiment's Job, made by the code that submits; the
    Job the real submission creates holds every field of it unchanged (the sweep id aside; the API server
    adds its defaults). The image is named by content, so it is known before the build; the token is only
    referenced from the sweep's Secret. Nothing is built, recorded or stored by the dry run."""
    import yaml

    _, batch = cluster
    args = ("-m", "lr=0.5,0.25", "context.cpu=1", "context.mem=200Mi")
    dry = mrunner("+context=test-k8s", "exp.py", *args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert FAKE_TOKEN not in dry.stdout + dry.stderr
    data = Path(os.environ["XDG_DATA_HOME"])
    assert not data.exists() or not any(p.is_file() for p in data.rglob("*"))
    title, text = one(renderings(dry.stdout), "Job <sweep id>-0-exp of experiment 0 in namespace ")
    assert title.endswith(f" {namespace} (one per experiment: 2 in all)"), title
    shown = yaml.safe_load(text)
    env = {item["name"]: item for item in shown["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MY_FAKE_TOKEN"] == {
        "name": "MY_FAKE_TOKEN",
        "valueFrom": {"secretKeyRef": {"key": "MY_FAKE_TOKEN", "name": "<sweep id>-secrets"}},
    }

    sweep_id, result = submit(mrunner, *args)
    image = json.loads(mrunner("status", sweep_id, "--json").stdout)["sweep"]["package"]["image"]
    assert shown["spec"]["template"]["spec"]["containers"][0]["image"] == image
    created = batch.read_namespaced_job(f"{sweep_id}-0-exp", namespace)
    expected = yaml.safe_load(text.replace("<sweep id>", sweep_id))
    _assert_within(expected, batch.api_client.sanitize_for_serialization(created), "job")
    assert [run["state"] for run in wait_for(lambda: experiments(mrunner, sweep_id), ended, timeout=120, every=1)] == [
        "completed",
        "completed",
    ]


def _assert_within(expected, actual, where: str) -> None:
    """Every field of ``expected`` is in ``actual`` with the same value (lists item by item, same length)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r} is not a mapping"
        for key, value in expected.items():
            assert key in actual, f"{where}.{key} is missing from the created object"
            _assert_within(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual!r} != {expected!r}"
        for position, (item, other) in enumerate(zip(expected, actual)):
            _assert_within(item, other, f"{where}[{position}]")
    else:
        assert actual == expected, f"{where}: created {actual!r}, dry run showed {expected!r}"


def test_repeated_submission_creates_no_second_job(mrunner, project, cluster, namespace):
    """Submitting the same attempt again (an interrupted submission being retried) finds the Jobs there."""
    from mrunner import plugins
    from mrunner.backend import SubmitOptions
    from mrunner.reporter import Reporter
    from mrunner.store import Store

    sweep_id, _ = submit(mrunner, "-m", "lr=0.1,0.2")
    store = Store()
    sweep, runs = store.sweep(sweep_id), store.runs(sweep_id)
    recorded = []
    plugins.backend(sweep.backend).submit(
        sweep, runs, {"MY_FAKE_TOKEN": FAKE_TOKEN}, SubmitOptions(), recorded.extend, Reporter(quiet=True)
    )
    assert [update.state for update in recorded] == ["submitted", "submitted"]
    jobs = cluster[1].list_namespaced_job(namespace, label_selector=f"mrunner/sweep={sweep_id}").items
    assert sorted(job.metadata.name for job in jobs) == sorted(run.backend_ref.split("/")[1] for run in runs)
    assert wait_for(lambda: experiments(mrunner, sweep_id), ended, timeout=120, every=1)[0]["state"] == "completed"


STOPPABLE = """\
import os, signal, sys, time

folder = os.environ["MRUNNER_EXPERIMENT_DIR"]


def save(number, frame):
    with open(os.path.join(folder, "stopped.tmp"), "w") as stream:
        stream.write(signal.Signals(number).name)
    os.replace(os.path.join(folder, "stopped.tmp"), os.path.join(folder, "stopped.txt"))
    sys.exit(128 + number)


signal.signal(signal.SIGTERM, save)
open(os.path.join(folder, "started.txt"), "w").close()
time.sleep(300)
"""


def test_cancel_stops_a_running_sweep(mrunner, project, cluster, namespace):
    """Cancel deletes the Jobs and each experiment gets the SIGTERM (its start wrapper is PID 1 and passes it
    on) with time to save: its handler writes to its folder on the volume claim, which a kill would not let it
    do. The experiments' own files are the evidence: the 1.20 kubelet may report a deleted pod's container as
    never started and keep the pod for up to ~70 s (tests/services/k8s/README.md, gotcha 13)."""
    core, batch = cluster
    (project / "exp.py").write_text(STOPPABLE)
    sweep_id, _ = submit(mrunner, "-m", "lr=0.1,0.2")
    volume = _volume(core, namespace)
    wait_for(
        lambda: len(list(volume.rglob("started.txt"))) == 2,
        timeout=120,
        every=0.2,
        what="both experiments to be ready for the signal",
    )
    cancelled = mrunner("cancel", sweep_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert [run["state"] for run in experiments(mrunner, sweep_id)] == ["cancelled", "cancelled"]
    selector = f"mrunner/sweep={sweep_id}"
    assert batch.list_namespaced_job(namespace, label_selector=selector).items == []
    wait_for(
        lambda: len(list(volume.rglob("stopped.txt"))) == 2,
        timeout=120,
        every=0.2,
        what="both experiments to save on the signal",
    )
    assert [path.read_text() for path in volume.rglob("stopped.txt")] == ["SIGTERM", "SIGTERM"]
    wait_for(
        lambda: not core.list_namespaced_pod(namespace, label_selector=selector).items,
        timeout=120,
        every=0.2,
        what="the pods to be deleted",
    )


ISOLATED_EXPERIMENT = """\
import json, os
import helper
from mrunner import get_configuration

config = get_configuration()
seen = {"out": os.path.exists("out.txt"), "outputs": sorted(os.listdir("outputs"))}
for path in ("out.txt", "outputs/result.txt"):
    with open(path, "w") as stream:
        stream.write(str(config.lr))
with open("data/input.txt") as stream:
    data = stream.read().strip()
names = ("MRUNNER_EXPERIMENT_DIR", "MRUNNER_CHECKPOINT_DIR", "MRUNNER_ATTEMPT", "MRUNNER_CONFIG", "STORAGE_DIR")
report = {"seen": seen, "data": data, "helper": helper.VALUE, "cwd": os.getcwd(), "env": {n: os.environ[n] for n in names}}
print("REPORT " + json.dumps(report), flush=True)
"""


def _volume(core, namespace: str) -> Path:
    """The test cluster's claim is a hostPath volume: the test reads what the pods left on it."""
    wait_for(
        lambda: core.read_namespaced_persistent_volume_claim("mrunner-storage", namespace).spec.volume_name,
        timeout=120,
        every=0.2,
        what="the volume claim to be bound",
    )
    claim = core.read_namespaced_persistent_volume_claim("mrunner-storage", namespace)
    return Path(core.read_persistent_volume(claim.spec.volume_name).spec.host_path.path)


def _report(mrunner, sweep_id: str, index: int) -> dict:
    logs = mrunner("logs", f"{sweep_id}/{index}")
    assert logs.returncode == 0, logs.stderr
    (line,) = [line for line in logs.stdout.splitlines() if line.startswith("REPORT ")]
    return json.loads(line.removeprefix("REPORT "))


def test_experiments_write_into_their_own_folders_and_read_the_project(mrunner, project, cluster, namespace):
    """Relative writes land in each experiment's folder on the claim, never in the code or a neighbour's."""
    from mrunner import layout

    (project / "exp.py").write_text(ISOLATED_EXPERIMENT)
    (project / "helper.py").write_text("VALUE = 'from the project'\n")
    (project / "data").mkdir()
    (project / "data" / "input.txt").write_text("project data\n")
    (project / "outputs").mkdir()
    (project / "outputs" / ".gitkeep").write_text("")
    first_id, _ = submit(mrunner, "-m", "lr=0.1,0.2")
    first = wait_for(lambda: experiments(mrunner, first_id), ended, timeout=120, every=1)
    second_id, _ = submit(mrunner, "lr=0.3")  # the same code: the same image, a new sweep
    second = wait_for(lambda: experiments(mrunner, second_id), ended, timeout=120, every=1)
    assert [run["state"] for run in first + second] == ["completed"] * 3

    volume = _volume(cluster[0], namespace)
    for sweep_id, run in [(first_id, run) for run in first] + [(second_id, second[0])]:
        where = layout.Layout("/storage", "mrt-project", sweep_id, run["index"], run["name"], run["attempt"])
        report = _report(mrunner, sweep_id, run["index"])
        assert report["seen"] == {"out": False, "outputs": []}  # nothing of the neighbour or the earlier sweep
        assert report["data"] == "project data" and report["helper"] == "from the project"
        assert report["cwd"] == where.experiment_dir
        assert report["env"] == {
            "MRUNNER_EXPERIMENT_DIR": where.experiment_dir,
            "MRUNNER_CHECKPOINT_DIR": where.checkpoint_dir,
            "MRUNNER_ATTEMPT": "0",
            "MRUNNER_CONFIG": where.config_file,
            "STORAGE_DIR": "/storage",
        }
        on_claim = layout.Layout(str(volume), "mrt-project", sweep_id, run["index"], run["name"], run["attempt"])
        folder = Path(on_claim.experiment_dir)
        lr = str(run["parameters"]["lr"])
        assert (folder / "out.txt").read_text() == lr and (folder / "outputs" / "result.txt").read_text() == lr
        assert not (folder / "outputs").is_symlink() and (folder / "data").is_symlink()
        assert Path(on_claim.checkpoint_dir).is_dir()
        assert layout.read_exit_code(on_claim.exit_code_file()) == 0  # the wrapper's proof of its own end
        assert json.loads(Path(on_claim.config_file).read_text())["parameters"]["lr"] == run["parameters"]["lr"]
        pod_log = mrunner("logs", f"{sweep_id}/{run['index']}").stdout
        assert pod_log and Path(on_claim.log_file()).read_text() == pod_log  # the attempt's log outlives its pod


def test_cancel_after_the_pod_completed_keeps_completed(mrunner, project, cluster, namespace):
    core, batch = cluster
    sweep_id, _ = submit(mrunner, "lr=0.1")
    # Waits on the API server alone: the records still say submitted when the cancel comes.
    selector = f"mrunner/sweep={sweep_id}"
    wait_for(
        lambda: [pod.status.phase for pod in core.list_namespaced_pod(namespace, label_selector=selector).items],
        lambda phases: phases == ["Succeeded"],
        timeout=120,
        every=1,
        what="the experiment's pod to succeed",
    )
    cancelled = mrunner("cancel", sweep_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert [(run["state"], run["exit_code"]) for run in experiments(mrunner, sweep_id)] == [("completed", 0)]
    assert len(batch.list_namespaced_job(namespace, label_selector=f"mrunner/sweep={sweep_id}").items) == 1
    assert "lr=0.1 storage=/storage" in mrunner("logs", f"{sweep_id}/0").stdout  # its log is still there


def test_a_pod_whose_experiment_a_signal_killed_names_it_and_an_own_exit_130_does_not(mrunner, project, cluster):
    """The start wrapper is PID 1 and exits 128 + N in both cases: its termination message tells them apart."""
    (project / "ends.py").write_text(
        "import os, signal, sys\nfrom mrunner import get_configuration\n"
        "if get_configuration().i == 0:\n    sys.exit(130)\nos.kill(os.getpid(), signal.SIGABRT)\n"
    )
    ended = mrunner("+context=test-k8s", "ends.py", "-m", "i=0,1", "--wait")
    assert ended.returncode == 1, ended.stderr
    document = json.loads(mrunner("status", ended.stdout.strip().splitlines()[-1], "--json").stdout)
    own, killed = document["experiments"]
    assert (own["state"], own["exit_code"]) == ("failed", 130) and "killed" not in (own["detail"] or ""), own
    assert (killed["state"], killed["exit_code"]) == ("failed", 134), killed
    assert (killed["detail"] or "").startswith("killed by SIGABRT"), killed


def test_api_server_refusal_is_one_clear_line(mrunner, project):
    # A quantity the API server cannot even parse (it answers 400) is caught before anything is recorded.
    result = mrunner("+context=test-k8s", "context.mem=12XB", "exp.py", "lr=0.1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "mrunner: error: context test-k8s: mem '12XB' is not a Kubernetes quantity (e.g. 4, 0.5, 500m, 8Gi, 40Gi)"
    )
    # A negative one, which the API server would refuse with a 422 only at the first Job, is refused first.
    result = mrunner("+context=test-k8s", "context.mem=-1Gi", "exp.py", "lr=0.1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "mrunner: error: context test-k8s: mem '-1Gi' is not a Kubernetes quantity (e.g. 4, 0.5, 500m, 8Gi, 40Gi)"
    ]


def test_push_to_the_auth_registry_needs_credentials(
    mrunner_home, mrunner, project, namespace, k8s_service, own_images
):
    registry = own_images(namespace, k8s_service["auth_registry"])
    write_context(
        mrunner_home, "test-k8s", k8s_context(k8s_service, namespace, registry_url=registry, secrets=["MY_FAKE_TOKEN"])
    )
    refused = mrunner("+context=test-k8s", "exp.py", "lr=0.1")
    assert refused.returncode == 3, refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("mrunner: error: push of ") and "basic auth credentials" in last, last

    password = Path(k8s_service["registry_password_file"]).read_text().strip()
    write_context(
        mrunner_home,
        "test-k8s",
        k8s_context(
            k8s_service,
            namespace,
            registry_url=registry,
            secrets=["MY_FAKE_TOKEN"],
            registry_username=k8s_service["registry_username"],
            registry_password_env="MRT_REGISTRY_PASSWORD",
        ),
    )
    sweep_id, result = submit(mrunner, "lr=0.2", env={"MRT_REGISTRY_PASSWORD": password})
    assert "pushed " in result.stderr
    assert wait_for(lambda: experiments(mrunner, sweep_id), ended, timeout=120, every=1)[0]["state"] == "completed"
    records = Path(os.environ["XDG_DATA_HOME"]) / "mrunner"
    assert not any(password.encode() in p.read_bytes() for p in records.rglob("*") if p.is_file())


def _assert_image_free_of(k8s: dict, image: str, text: str) -> None:
    import docker

    client = docker.DockerClient(base_url=k8s["docker_host"])
    found = client.images.get(image)
    assert text not in json.dumps(found.history()) and text not in json.dumps(found.attrs)
    payload = b"".join(found.save())
    assert text.encode() not in payload


NEPTUNE_EXPERIMENT = """\
import hashlib, os
import mrunner

config = mrunner.get_configuration(with_neptune=True)
run = mrunner.neptune_run()
for step in range(3):
    run["train/score"].append(config.lr * step)
run.stop()
print("token_sha=" + hashlib.sha256(os.environ.get("NEPTUNE_API_TOKEN", "").encode()).hexdigest()[:16], flush=True)
"""


def test_neptune_offline_runs_in_the_pods_and_its_token_goes_nowhere(
    mrunner_home, mrunner, project, cluster, namespace, k8s_service, own_images
):
    """Neptune in offline mode, end to end on Kubernetes: the image installs neptune (from PyPI, through the
    host network), the pods' offline data on the volume claim names each experiment and holds its tags and
    parameters. Offline mode needs no token, so the user's NEPTUNE_API_TOKEN is not forwarded at all: it is
    in neither the pods nor the Jobs, the image or the records (the Secret path is tested above)."""
    core, batch = cluster
    token = "neptune-token-" + uuid.uuid4().hex
    (project / "exp.py").write_text(NEPTUNE_EXPERIMENT)
    (project / "requirements.txt").write_text("neptune==1.14.0.post2\n")
    write_context(
        mrunner_home,
        "test-k8s",
        k8s_context(
            k8s_service,
            namespace,
            registry_url=own_images(namespace),
            build_network="host",
            neptune=True,
            neptune_mode="offline",
            neptune_project="team/project",
            tags=["k8s-neptune"],
        ),
    )
    sweep_id, first = submit(mrunner, "-m", "lr=0.5,2", "--name", "Tracked Run", env={"NEPTUNE_API_TOKEN": token})
    runs = wait_for(lambda: experiments(mrunner, sweep_id), ended, timeout=300, every=1)
    assert [run["state"] for run in runs] == ["completed", "completed"], mrunner("logs", f"{sweep_id}/0").stdout[-2000:]
    assert "neptune: offline" in first.stderr

    volume = _volume(core, namespace)
    for run in runs:
        folder = volume / "mrt-project" / sweep_id / f"{run['index']}-tracked-run"
        (log,) = folder.glob(".neptune/offline/*/data-1.log")
        ops = [json.loads(line)["obj"] for line in log.read_text().splitlines() if line.strip()]
        values = {tuple(op["path"]): op.get("value") for op in ops if op["type"].startswith("Assign")}
        assert values[("sys", "name")] == "tracked-run"
        assert values[("parameters", "lr")] == run["parameters"]["lr"]
        assert values[("mrunner", "backend")] == "kubernetes" and values[("mrunner", "sweep")] == sweep_id
        tags = {t for op in ops if op["type"] == "AddStrings" and op["path"] == ["sys", "tags"] for t in op["values"]}
        assert tags == {sweep_id, "k8s-neptune"}
        logs = mrunner("logs", f"{sweep_id}/{run['index']}")
        assert f"token_sha={hashlib.sha256(b'').hexdigest()[:16]}" in logs.stdout and token not in logs.stdout

    jobs = batch.list_namespaced_job(namespace, label_selector=f"mrunner/sweep={sweep_id}").items
    assert token not in json.dumps(batch.api_client.sanitize_for_serialization(jobs))
    for path in (Path(os.environ["XDG_DATA_HOME"]) / "mrunner").rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    assert token not in first.stdout + first.stderr
    sweep = json.loads(mrunner("status", sweep_id, "--json").stdout)["sweep"]
    _assert_image_free_of(k8s_service, sweep["package"]["image"], token)


def test_fractional_cpus_run_and_a_request_no_node_holds_says_it_can_never_run(mrunner, project):
    sweep_id, _ = submit(mrunner, "lr=0.3", "context.cpu=0.5")
    [run] = wait_for(lambda: experiments(mrunner, sweep_id), ended, timeout=300, every=1)
    assert (run["state"], run["exit_code"]) == ("completed", 0)

    sweep_id, _ = submit(mrunner, "lr=0.4", "context.cpu=64")
    [run] = wait_for(
        lambda: experiments(mrunner, sweep_id),
        lambda runs: "can never run" in (runs[0]["detail"] or ""),
        timeout=120,
        every=1,
    )
    assert run["state"] == "pending" and "Insufficient cpu" in run["detail"]
    assert "cpu 64 is more than any node offers" in run["detail"]
    table = mrunner("status", sweep_id).stdout
    assert "1 pending (unschedulable: 0/1 nodes are available: 1 Insufficient cpu." in table
    assert mrunner("cancel", sweep_id).returncode == 0

    waited = mrunner("+context=test-k8s", "exp.py", "lr=0.5", "context.cpu=64", "--wait", timeout=300)
    assert waited.returncode != 0, waited.stderr  # ends with one line instead of waiting for ever
    last = waited.stderr.strip().splitlines()[-1]
    assert last.startswith("mrunner: error: experiment ") and "waits for ever: unschedulable" in last, last
    assert "cpu 64 is more than any node offers" in last
    assert mrunner("cancel", waited.stdout.strip().splitlines()[0]).returncode == 0


def test_an_experiment_ended_before_its_pod_started_is_named_as_having_no_log(mrunner, project):
    """A pod no node can hold, cancelled: `logs` names the missing log in one line with the recorded end, as
    every backend names it (``NoLog``), not as a connection or a pod still to come."""
    sweep_id, _ = submit(mrunner, "lr=0.6", "context.cpu=64")
    wait_for(
        lambda: experiments(mrunner, sweep_id),
        lambda runs: "can never run" in (runs[0]["detail"] or ""),
        timeout=120,
        every=1,
    )
    assert mrunner("cancel", sweep_id).returncode == 0
    [run] = experiments(mrunner, sweep_id)
    assert run["state"] == "cancelled", run
    shown = mrunner("logs", f"{sweep_id}/0", timeout=300)
    lines = shown.stderr.strip().splitlines()
    assert shown.returncode == 2 and len(lines) == 1, shown.stderr
    assert lines[0].startswith(f"mrunner: error: experiment {sweep_id}/0 has no log of attempt 0"), lines[0]


def _closed_port_kubeconfig(folder: Path) -> Path:
    kubeconfig = folder / "unreachable.kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "down",
                "clusters": [
                    {"name": "c", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}}
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "down", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    return kubeconfig


def test_an_api_server_down_at_the_namespace_step_and_an_unreachable_registry_are_one_line(
    mrunner_home, mrunner, project, namespace, k8s_service, tmp_path_factory, own_images
):
    kubeconfig = _closed_port_kubeconfig(tmp_path_factory.mktemp("kube"))
    write_context(
        mrunner_home,
        "test-k8s",
        k8s_context(
            k8s_service, namespace, registry_url=own_images(namespace), kubeconfig=str(kubeconfig), kube_context="down"
        ),
    )
    down = mrunner("+context=test-k8s", "exp.py", "lr=0.1")
    assert down.returncode == 3 and "Traceback" not in down.stderr, down.stderr
    last = down.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"mrunner: error: cannot reach the Kubernetes API server at https://127.0.0.1:1 to read namespace {namespace}: "
    ), last
    # refused before anything reached the cluster: the sweep is not kept, and the line says to submit again
    assert last.endswith("(nothing was submitted or recorded: fix it and submit again)"), last
    assert json.loads(mrunner("status", "--json").stdout) == []

    write_context(
        mrunner_home, "test-k8s", k8s_context(k8s_service, namespace, registry_url=own_images(namespace, "127.0.0.1:1"))
    )
    unreachable = mrunner("+context=test-k8s", "exp.py", "lr=0.2")
    assert unreachable.returncode == 3 and "Traceback" not in unreachable.stderr, unreachable.stderr
    last = unreachable.stderr.strip().splitlines()[-1]
    assert last.startswith("mrunner: error: push of 127.0.0.1:1/mrunner-tests/") and "127.0.0.1:1" in last, last
    assert last.endswith("(nothing was submitted or recorded: fix it and submit again)"), last


@pytest.fixture
def own_dockerd():
    """A dockerd of this test alone, which it may kill (the service's engine is shared)."""
    from tests.own_dockerd import OwnDockerd

    engine = OwnDockerd()
    try:
        engine.start()
        yield engine
    finally:
        engine.close()


@pytest.fixture
def registry_proxy(k8s_service):
    from tests.own_dockerd import RegistryProxy

    proxy = RegistryProxy(k8s_service["registry"])
    yield proxy
    proxy.close()


def test_a_dockerd_that_dies_during_the_push_is_one_line_and_the_next_submission_continues(
    mrunner_home, mrunner, project, namespace, k8s_service, own_images, own_dockerd, registry_proxy
):
    """The test's own dockerd builds the image and is killed (SIGKILL) when its push starts the first blob
    upload: one line, nothing recorded; with the engine back, the same submission goes on from the image
    that engine built (no second build) and runs."""
    registry = own_images(namespace, registry_proxy.address)
    write_context(
        mrunner_home,
        "test-k8s",
        k8s_context(
            k8s_service, namespace, registry_url=registry, docker_host=own_dockerd.url, secrets=["MY_FAKE_TOKEN"]
        ),
    )
    registry_proxy.on_upload = own_dockerd.kill
    died = mrunner("+context=test-k8s", "exp.py", "lr=0.1")
    assert registry_proxy.uploads_cut == 1, died.stderr  # killed in the middle of the push
    assert died.returncode == 3 and "Traceback" not in died.stderr, died.stderr
    last = died.stderr.strip().splitlines()[-1]
    assert last.startswith(f"mrunner: error: the connection to docker was lost while pushing {registry}/"), last
    assert last.endswith("(nothing was submitted or recorded: fix it and submit again)"), last
    assert json.loads(mrunner("status", "--json").stdout) == []

    own_dockerd.start()
    sweep_id, again = submit(mrunner, "lr=0.1")
    assert "building image" not in again.stderr and "pushed " in again.stderr, again.stderr
    [run] = wait_for(lambda: experiments(mrunner, sweep_id), ended, timeout=300, every=1)
    assert (run["state"], run["exit_code"]) == ("completed", 0), mrunner("logs", f"{sweep_id}/0").stdout


def test_a_resource_quota_that_blocks_the_pods_is_named_in_one_line(mrunner, project, cluster, namespace):
    """The namespace's ResourceQuota lets no pod be created: status says the quota's own words, once the
    namespace exists (the submission makes it), instead of "waiting for a pod"."""
    from kubernetes import client

    core, _ = cluster
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    quota = client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="no-pods"), spec=client.V1ResourceQuotaSpec(hard={"pods": "0"})
    )
    core.create_namespaced_resource_quota(namespace, quota)
    sweep_id, _ = submit(mrunner, "lr=0.5")
    [run] = wait_for(
        lambda: experiments(mrunner, sweep_id),
        lambda runs: "refuses" in (runs[0]["detail"] or ""),
        timeout=120,
        every=1,
    )
    assert run["state"] == "pending" and "exceeded quota: no-pods" in run["detail"], run["detail"]
    assert "\n" not in run["detail"] and "raise the quota" in run["detail"]
    table = mrunner("status", sweep_id).stdout
    assert "the cluster refuses to create its pod: exceeded quota: no-pods" in " ".join(table.split())
    assert mrunner("cancel", sweep_id).returncode == 0


def test_a_volume_claim_that_cannot_be_bound_is_named_in_one_line(
    mrunner, mrunner_home, project, namespace, k8s_service, own_images
):
    """A storage class the cluster does not have: the claim stays Pending, and status says so with the
    claim's own warning and the keys to fix, instead of the scheduler's words."""
    write_context(
        mrunner_home,
        "test-k8s",
        k8s_context(
            k8s_service,
            namespace,
            registry_url=own_images(namespace),
            storage_class="no-such-class",
            secrets=["MY_FAKE_TOKEN"],
        ),
    )
    sweep_id, _ = submit(mrunner, "lr=0.6")
    [run] = wait_for(
        lambda: experiments(mrunner, sweep_id),
        lambda runs: "cannot be bound" in (runs[0]["detail"] or ""),
        timeout=120,
        every=1,
    )
    assert run["state"] == "pending" and "\n" not in run["detail"], run["detail"]
    assert "no-such-class" in run["detail"] and "fix storage_class" in run["detail"], run["detail"]
    assert mrunner("cancel", sweep_id).returncode == 0


@pytest.fixture
def namespace_user(cluster, namespace, k8s_service, tmp_path):
    """A kubeconfig of a user whose rights are those of ``edit`` in the test's namespace alone (a
    ServiceAccount there, its token from the TokenRequest API): it may neither read nor create namespaces.
    Its objects live in the namespace, which the ``namespace`` fixture deletes."""
    import yaml
    from kubernetes import client

    core, _ = cluster
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="user"))
    )
    client.RbacAuthorizationV1Api(core.api_client).create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="user-edit"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="edit"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="user", namespace=namespace)],
        ),
    )
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))
    token = core.create_namespaced_service_account_token("user", namespace, request).status.token
    admin = yaml.safe_load(Path(k8s_service["kubeconfig"]).read_text())
    cluster_entry = next(c for c in admin["clusters"] if c["name"] == next(
        x["context"]["cluster"] for x in admin["contexts"] if x["name"] == k8s_service["kube_context"]))  # fmt: skip
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster_entry],
        "users": [{"name": "user", "user": {"token": token}}],
        "contexts": [{"name": "user", "context": {"cluster": cluster_entry["name"], "user": "user"}}],
        "current-context": "user",
    }
    path = tmp_path / "user.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return str(path)


def test_a_namespace_the_user_may_not_create_is_named_in_one_line_and_nothing_is_recorded(
    mrunner, mrunner_home, project, namespace, k8s_service, own_images, namespace_user
):
    """A user with rights in their own namespace alone, whose context names another that does not exist: one
    line names that namespace, and that this user may not create it (it was the API server's 403 about the
    volume claim), and no sweep is recorded. In their own namespace, the same user's sweep runs."""
    missing = f"{namespace}-missing"
    keys = {"registry_url": own_images(namespace), "kubeconfig": namespace_user, "kube_context": "user"}
    write_context(mrunner_home, "test-k8s", k8s_context(k8s_service, missing, **keys))
    refused = mrunner("+context=test-k8s", "exp.py", "lr=0.8")
    assert refused.returncode == 3 and "Traceback" not in refused.stderr, refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith(f"mrunner: error: namespace {missing} does not exist or gives this user no rights, "
                           "and this user may not create it ("), last  # fmt: skip
    assert "set the context's `namespace`" in last and "nothing was submitted or recorded" in last, last
    assert "volume claim" not in last and "persistentvolumeclaims" not in last, last
    assert json.loads(mrunner("status", "--json").stdout) == []  # nothing recorded
    _assert_nothing_built(refused.stderr, k8s_service, namespace)  # refused before the build (it came after)
    write_context(mrunner_home, "test-k8s", k8s_context(k8s_service, namespace, **keys))
    sweep_id, _ = submit(mrunner, "lr=0.9")
    runs = wait_for(lambda: experiments(mrunner, sweep_id), ended, timeout=300, every=1)
    assert [run["state"] for run in runs] == ["completed"], runs


def _assert_nothing_built(stderr: str, k8s: dict, namespace: str) -> None:
    """No build or pip step was started, the engine holds no image of the test's registry path (``own_images``'
    path for ``namespace``) and the registry no repository under it: the sweep was refused before the image."""
    import urllib.error
    import urllib.request

    import docker

    assert "building image" not in stderr and "installing the requirements" not in stderr, stderr
    client = docker.DockerClient(base_url=k8s["docker_host"])
    tags = [tag for image in client.api.images() for tag in image.get("RepoTags") or []]
    assert not [tag for tag in tags if f"/mrunner-tests/{namespace}/" in tag], tags
    looked = f"http://{k8s['registry']}/v2/mrunner-tests/{namespace}/mrt-project/tags/list"
    with pytest.raises(urllib.error.HTTPError) as unknown:  # the registry knows no such repository
        urllib.request.urlopen(looked, timeout=30).close()
    assert unknown.value.code == 404, unknown.value


def test_a_missing_namespace_is_named_to_a_user_with_the_clusters_rights_on_claims_alone(
    mrunner, mrunner_home, project, cluster, namespace, k8s_service, own_images, namespace_user
):
    """The same user given the cluster's rights on volume claims (not on namespaces): the claim's creation
    answers 404 about the namespace, named as the namespace that does not exist."""
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(cluster[0].api_client)
    name = f"{namespace}-claims"
    rule = client.V1PolicyRule(api_groups=[""], resources=["persistentvolumeclaims"], verbs=["create", "list"])
    rbac.create_cluster_role(client.V1ClusterRole(metadata=client.V1ObjectMeta(name=name), rules=[rule]))
    try:
        rbac.create_cluster_role_binding(
            client.V1ClusterRoleBinding(
                metadata=client.V1ObjectMeta(name=name),
                role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=name),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name="user", namespace=namespace)],
            )
        )
        missing = f"{namespace}-missing"
        keys = {"registry_url": own_images(namespace), "kubeconfig": namespace_user, "kube_context": "user"}
        write_context(mrunner_home, "test-k8s", k8s_context(k8s_service, missing, **keys))
        refused = mrunner("+context=test-k8s", "exp.py", "lr=0.8")
        assert refused.returncode == 3 and "Traceback" not in refused.stderr, refused.stderr
        last = refused.stderr.strip().splitlines()[-1]
        assert last.startswith(f"mrunner: error: namespace {missing} does not exist ("), last
        assert "nothing was submitted or recorded" in last and "volume claim" not in last, last
        assert json.loads(mrunner("status", "--json").stdout) == []
        _assert_nothing_built(refused.stderr, k8s_service, namespace)
    finally:
        for delete in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
            try:
                delete(name)
            except client.exceptions.ApiException:
                pass


def test_a_pip_failure_in_the_image_build_is_one_short_line(mrunner, project):
    """pip's pages of output and colours are cut to its last words: which requirement it could not find."""
    (project / "requirements.txt").write_text("mrunner-no-such-package-3f2a==9.9\n")
    failed = mrunner("+context=test-k8s", "exp.py", "lr=0.7", "context.build_network=none")
    assert failed.returncode == 3 and "Traceback" not in failed.stderr, failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("mrunner: error: docker build of ") and "mrunner-no-such-package-3f2a" in last, last
    assert "\x1b" not in last and len(last) < 800, last


class _Relay:
    """A TCP relay in front of the API server that the test stops and starts again on the same port: an API
    server restart (or a dropped connection) as the client sees it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port, self._sockets, self._listener = target, 0, [], None

    def start(self) -> None:
        import socket
        import threading

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port, self._listener = listener.getsockname()[1], listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source, sink) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.close()
                except OSError:
                    pass

    def stop(self) -> None:
        import socket

        self._listener.close()
        for end in self._sockets:
            try:
                end.shutdown(socket.SHUT_RDWR)
                end.close()
            except OSError:
                pass
        self._sockets = []


def test_wait_rides_out_an_api_server_that_goes_away_and_comes_back(
    mrunner, project, namespace, k8s_service, own_images, mrunner_home, tmp_path
):
    import subprocess
    import sys
    import threading
    from urllib.parse import urlparse

    api = urlparse(k8s_service["api_server"])
    relay = _Relay((api.hostname, api.port))
    relay.start()
    kubeconfig = tmp_path / "relayed.kubeconfig"
    text = Path(k8s_service["kubeconfig"]).read_text()
    kubeconfig.write_text(text.replace(k8s_service["api_server"], f"https://127.0.0.1:{relay.port}"))
    keys = k8s_context(
        k8s_service,
        namespace,
        registry_url=own_images(namespace),
        secrets=["MY_FAKE_TOKEN"],
        kubeconfig=str(kubeconfig),
    )
    write_context(mrunner_home, "test-k8s", keys)
    waiting = subprocess.Popen(
        [sys.executable, "-m", "mrunner", "+context=test-k8s", "exp.py", "lr=0.7", "sleep=25", "--wait"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        for line in waiting.stderr:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()

    def said(fragment: str, timeout: float) -> None:
        wait_for(lambda: any(fragment in line for line in list(lines)), timeout=timeout, what=repr(fragment))

    said(": 1 running", timeout=300)
    relay.stop()  # the API server goes away while the experiment runs
    said("asking again for up to 5 minutes", timeout=120)
    relay.start()  # and comes back on the same address
    assert waiting.wait(timeout=300) == 0, "\n".join(lines)
    said("the backend answers again", timeout=5)
    assert any(": 1 completed" in line for line in lines), "\n".join(lines)
    assert not any("Traceback" in line for line in lines)
