import json

import pytest
from kubernetes import client
from mrunner_k8s import manifests, names

from mrunner.errors import MrunnerError


def _env(job: dict) -> dict:
    return {item["name"]: item for item in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_job_manifest(sweep, make_run):
    run = make_run(3, attempt=1, DATASET="mnist")
    model = manifests.job(sweep, run, "127.0.0.1:5000/demo:c-1", {"MY_TOKEN": "s3cret"})
    assert isinstance(model, client.V1Job)
    job = manifests.to_dict(model)
    assert job["metadata"]["name"] == names.job(sweep.id, 3, 1, run.name)
    labels = job["metadata"]["labels"]
    assert labels["mrunner/sweep"] == sweep.id and labels["mrunner/index"] == "3" and labels["mrunner/attempt"] == "1"
    assert labels["mrunner/experiment"] == run.id
    assert job["spec"]["template"]["metadata"]["labels"] == labels  # pods are found by the same labels
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert container["command"][:2] == ["python3", "-c"] and container["command"][3:] == run.command
    assert container["workingDir"] == "/mrunner/code/src"
    env = _env(job)
    assert env["MRUNNER_CONFIG"]["value"] == "/etc/mrunner/config.json"
    assert env["MRUNNER_EXPERIMENT_DIR"]["value"] == f"/storage/Demo_Project/{sweep.id}/3-Exp_0003.train"
    assert env["STORAGE_DIR"]["value"] == "/storage" and env["DATASET"]["value"] == "mnist"
    assert env["MY_TOKEN"] == {
        "name": "MY_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": names.secret(sweep.id), "key": "MY_TOKEN"}},
    }
    assert "s3cret" not in json.dumps(job)
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["storage"]["persistentVolumeClaim"]["claimName"] == names.PVC_NAME
    assert volumes["mrunner-config"]["configMap"]["items"] == [{"key": "3.json", "path": "config.json"}]
    assert "hostNetwork" not in pod and "nodeSelector" not in pod


def test_boot_creates_the_experiment_dir_and_passes_the_exit_code_on(tmp_path):
    import subprocess
    import sys

    target = tmp_path / "a" / "b"
    result = subprocess.run(
        [sys.executable, "-c", manifests.BOOT, sys.executable, "-c", "print('ok'); raise SystemExit(3)"],
        env={"MRUNNER_EXPERIMENT_DIR": str(target)}, capture_output=True, text=True,
    )  # fmt: skip
    assert target.is_dir() and result.stdout.strip() == "ok" and result.returncode == 3


def test_boot_passes_sigterm_to_the_experiment(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    experiment = "import signal, sys, time; print('up', flush=True); time.sleep(60)"
    boot = subprocess.Popen(
        [sys.executable, "-c", manifests.BOOT, sys.executable, "-c", experiment],
        env={"MRUNNER_EXPERIMENT_DIR": str(tmp_path)}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert boot.stdout.readline().strip() == "up"
    started = time.monotonic()
    boot.send_signal(signal.SIGTERM)
    assert boot.wait(timeout=10) == 128 + signal.SIGTERM  # the experiment got it and ended; boot reports it
    assert time.monotonic() - started < 5


def test_placement_keys(make_sweep, make_run):
    sweep = make_sweep(
        host_network=True, node_selector={"pool": "gpu"}, image_pull_secret="regcred", tpu=8,
        tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 30}],
    )  # fmt: skip
    pod = manifests.to_dict(manifests.job(sweep, make_run(), "img", {}))["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 30}]
    assert pod["containers"][0]["resources"]["limits"] == {"google.com/tpu": "8"}
    assert "MY_TOKEN" not in _env({"spec": {"template": {"spec": pod}}})


def test_no_resources_means_no_requests(make_sweep, make_run):
    pod = manifests.to_dict(manifests.job(make_sweep(), make_run(), "img", {}))["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == {}


def test_unknown_toleration_key_is_an_error():
    with pytest.raises(MrunnerError, match="tolerations"):
        manifests.tolerations([{"kee": "gpu"}])


def test_claim_namespace_secret_and_config_map(sweep, make_run):
    claim = manifests.to_dict(manifests.volume_claim({**sweep.context, "storage_class": "fast"}, sweep.project))
    assert claim["metadata"]["name"] == names.PVC_NAME
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "40Gi"}},
        "storageClassName": "fast",
    }
    namespace = manifests.to_dict(manifests.namespace("demo", sweep.project))
    assert namespace["metadata"]["labels"]["mrunner/project"] == "Demo_Project"
    secret = manifests.to_dict(manifests.secret(sweep, {"MY_TOKEN": "s3cret"}))
    assert secret["stringData"] == {"MY_TOKEN": "s3cret"} and secret["metadata"]["name"] == names.secret(sweep.id)
    runs = [make_run(0), make_run(1)]
    data = manifests.to_dict(manifests.config_map(sweep, runs))["data"]
    assert set(data) == {"0.json", "1.json"}
    assert json.loads(data["1.json"]) == runs[1].config_document(sweep)
