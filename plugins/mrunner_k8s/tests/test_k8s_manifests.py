import json

import pytest
from kubernetes import client
from mrunner_k8s import manifests, names

from mrunner import layout
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
    # The core's start wrapper, run from the shipped client's folder, around the recorded command.
    assert container["command"] == [
        "python3",
        "-m",
        "mrunner.attempt",
        "--code",
        "/mrunner/code",
        "--workdir",
        "src",
        "--entries",
        json.dumps(sweep.package["entries"]),
        "--config-from",
        "/etc/mrunner/config.json",
        "--grace",
        "30",
        "--log",
        layout.of_run("/storage", sweep, run).log_file(),
        "--once",
        "--",
        *run.command,
    ]
    assert container["workingDir"] == "/mrunner/client"
    assert pod["terminationGracePeriodSeconds"] == 30 + manifests.KILL_MARGIN_SECONDS
    env = _env(job)
    where = layout.of_run("/storage", sweep, run)
    assert {key: env[key]["value"] for key in layout.VARIABLES} == where.environment()
    assert env["MRUNNER_EXPERIMENT_DIR"]["value"] == f"/storage/Demo_Project/{sweep.id}/3-Exp_0003.train"
    assert env["MRUNNER_ATTEMPT"]["value"] == "1" and env["MRUNNER_CONFIG"]["value"] == where.config_file
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


def test_the_runs_env_cannot_replace_the_contracts_variables(sweep, make_run):
    run = make_run(0, MRUNNER_EXPERIMENT_DIR="/elsewhere", STORAGE_DIR="/nope")
    env = _env(manifests.to_dict(manifests.job(sweep, run, "img", {})))
    assert env["MRUNNER_EXPERIMENT_DIR"]["value"] == layout.of_run("/storage", sweep, run).experiment_dir
    assert env["STORAGE_DIR"]["value"] == "/storage"


def test_grace_period_sets_the_wrapper_and_the_pod(make_sweep, make_run):
    pod = manifests.to_dict(manifests.job(make_sweep(grace_period=7), make_run(), "img", {}))["spec"]["template"]
    command = pod["spec"]["containers"][0]["command"]
    assert command[command.index("--grace") + 1] == "7"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 7 + manifests.KILL_MARGIN_SECONDS


def test_placement_keys(make_sweep, make_run):
    sweep = make_sweep(
        host_network=True,
        node_selector={"pool": "gpu"},
        image_pull_secret="regcred",
        tpu=8,
        tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}],
    )
    pod = manifests.to_dict(manifests.job(sweep, make_run(), "img", {}))["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}]
    assert pod["containers"][0]["resources"]["limits"] == {"google.com/tpu": "8"}
    assert "MY_TOKEN" not in _env({"spec": {"template": {"spec": pod}}})


def test_pull_pod_reads_the_claim_with_the_sweeps_image_where_experiments_run(make_sweep):
    sweep = make_sweep(
        host_network=True,
        node_selector={"pool": "gpu"},
        image_pull_secret="regcred",
        python="/venv/bin/python",
        tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        storage="/data",
    )
    pod = manifests.to_dict(manifests.pull_pod(sweep, "brave-turing-3f2a9c-pull-0a1b2c"))
    labels = pod["metadata"]["labels"]
    assert labels[manifests.PULL_LABEL] == sweep.id and labels["app.kubernetes.io/managed-by"] == "mrunner"
    assert "mrunner/sweep" not in labels  # the sweep's status lists its pods by that label: not this one
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never" and spec["activeDeadlineSeconds"] == manifests.PULL_DEADLINE_SECONDS
    container = spec["containers"][0]
    assert container["image"] == sweep.package["image"]  # the experiment's own Python runs the transfer
    assert container["command"][:2] == ["/venv/bin/python", "-c"]
    compile(container["command"][2], "pull-watch", "exec")
    assert container["volumeMounts"] == [{"name": "storage", "mountPath": "/data", "readOnly": True}]
    assert spec["volumes"] == [
        {"name": "storage", "persistentVolumeClaim": {"claimName": names.PVC_NAME, "readOnly": True}}
    ]
    assert spec["hostNetwork"] is True and spec["nodeSelector"] == {"pool": "gpu"}
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    term = spec["affinity"]["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["labelSelector"]["matchLabels"]["mrunner/project"] == names.label_value(sweep.project)


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
