"""The plugin as the command line sees it, without a cluster: context keys, dry run, import cost."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path


def _context(**keys) -> None:
    folder = Path(os.environ["XDG_CONFIG_HOME"]) / "mrunner" / "context"
    folder.mkdir(parents=True, exist_ok=True)
    context = {"backend": "kubernetes", "registry_url": "gcr.io/my-project", "project": "Vision Lab", **keys}
    (folder / "test-k8s.yaml").write_text(json.dumps(context))


def test_plugin_module_does_not_import_kubernetes_or_docker():
    code = "import sys, mrunner_k8s.plugin; print(sorted(m for m in ('kubernetes', 'docker') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_dry_run_describes_image_objects_and_jobs(mrunner, tmp_path):
    _context(cpu=4, mem="8Gi")
    (tmp_path / "exp.py").write_text("print(1)\n")
    result = mrunner("+context=test-k8s", "exp.py", "-m", "lr=0.1,0.01", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "build gcr.io/my-project/vision-lab:<content tag> FROM python:3.11" in result.stdout
    assert "namespace vision-lab-" in result.stdout and "mrunner-storage (40Gi) at /storage" in result.stdout
    assert "2 Jobs (one pod each, never restarted), cpu=4, mem=8Gi" in result.stdout


def test_the_dry_run_plan_names_the_image_and_namespace_the_jobs_use_without_a_project_key(mrunner, tmp_path):
    """The project then comes from the project's folder: the plan's image and namespace are the Job's."""
    folder = Path(os.environ["XDG_CONFIG_HOME"]) / "mrunner" / "context"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test-k8s.yaml").write_text(json.dumps({"backend": "kubernetes", "registry_url": "gcr.io/p"}))
    project = tmp_path / "Cell Atlas"
    project.mkdir()
    (project / "exp.py").write_text("print(1)\n")
    result = mrunner("+context=test-k8s", str(project / "exp.py"), "--dry-run")
    assert result.returncode == 0, result.stderr
    image = next(line.split()[-1] for line in result.stdout.splitlines() if line.strip().startswith("image: "))
    namespace = re.search(r"of experiment 0 in namespace (\S+)", result.stdout)[1]
    assert image.startswith("gcr.io/p/cell-atlas:c-")
    assert "build gcr.io/p/cell-atlas:<content tag> FROM python:3.11" in result.stdout
    assert f"namespace {namespace} and volume claim" in result.stdout and namespace.startswith("cell-atlas")


def test_a_plain_registry_password_is_refused(mrunner, tmp_path):
    _context(registry_password="hunter2")
    (tmp_path / "exp.py").write_text("print(1)\n")
    result = mrunner("+context=test-k8s", "exp.py", "--dry-run")
    assert result.returncode == 2
    assert "unknown key 'registry_password'" in result.stderr and "registry_password_env" in result.stderr


def test_the_password_variable_must_be_set(mrunner, tmp_path):
    _context(registry_username="alice", registry_password_env="MRT_UNSET_PASSWORD")
    (tmp_path / "exp.py").write_text("print(1)\n")
    result = mrunner("+context=test-k8s", "exp.py", "--dry-run", env={"MRT_UNSET_PASSWORD": ""})
    assert result.returncode == 0, result.stderr  # set, even if empty
    environment = {k: v for k, v in os.environ.items() if k != "MRT_UNSET_PASSWORD"}
    result = subprocess.run(
        [sys.executable, "-m", "mrunner", "+context=test-k8s", "exp.py", "--dry-run"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "MRT_UNSET_PASSWORD" in result.stderr.strip().splitlines()[-1]


def test_an_unreachable_api_server_is_one_line(make_sweep, tmp_path):
    import pytest
    from mrunner_k8s.cluster import Cluster

    from mrunner.errors import BackendError

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "nowhere",
                "clusters": [
                    {"name": "c", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}}
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "nowhere", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    sweep = make_sweep(kubeconfig=str(kubeconfig))
    with pytest.raises(BackendError) as raised:
        Cluster(sweep.context, "demo").sweep_objects(sweep)
    message = str(raised.value)
    assert message.startswith(
        "cannot reach the Kubernetes API server at https://127.0.0.1:1 to list the sweep's Jobs: "
    )
    assert "Connection refused" in message and "\n" not in message and "HTTPSConnectionPool" not in message


def test_a_missing_kubeconfig_is_a_user_error(make_sweep, tmp_path):
    import pytest
    from mrunner_k8s.cluster import Cluster

    from mrunner.errors import MrunnerError

    with pytest.raises(MrunnerError, match="cannot load the Kubernetes configuration from .*nope"):
        Cluster(make_sweep(kubeconfig=str(tmp_path / "nope")).context, "demo")


def test_fractional_cpus_and_quantities_are_accepted(mrunner, tmp_path):
    (tmp_path / "exp.py").write_text("print(1)\n")
    for cpu in (0.5, "500m", 1.5, 2, "1e1"):
        _context(cpu=cpu, mem="1.5Gi")
        result = mrunner("+context=test-k8s", "exp.py", "--dry-run")
        assert result.returncode == 0, (cpu, result.stderr)
        assert f"cpu={cpu}" in result.stdout


def test_every_kubernetes_key_is_checked_before_anything_is_built(mrunner, tmp_path):
    """Checked from KubernetesKeys and by Backend.check, so the dry run refuses them, and a real submission records nothing."""
    (tmp_path / "exp.py").write_text("print(1)\n")
    cases = [
        ({"cpu": "half"}, "cpu 'half' is not a Kubernetes quantity"),
        ({"cpu": True}, "cpu True is not a Kubernetes quantity"),
        ({"mem": "8 GB"}, "mem '8 GB' is not a Kubernetes quantity"),
        ({"gpu": -1}, "key 'gpu' must be at least 0, got -1"),
        ({"tolerations": [{"kee": "gpu"}]}, "each item of tolerations must be a mapping of key, operator"),
        ({"tolerations": [{"key": "gpu", "operator": "Exist"}]}, "toleration operator must be Exists or Equal"),
        ({"tolerations": [{"key": "gpu", "effect": "NoSchedul"}]}, "toleration effect must be one of NoSchedule"),
        ({"tolerations": [{"key": "a", "effect": "NoSchedule", "tolerationSeconds": 5}]}, "needs effect NoExecute"),
        ({"tolerations": ["gpu"]}, "each item of tolerations must be a mapping"),
        ({"node_selector": {"pool": "gpu nodes"}}, "node_selector pool: 'gpu nodes' is not a valid label value"),
        ({"node_selector": {"bad key!": "x"}}, "node_selector bad key!"),
        ({"pvc_access_mode": "ReadWriteAll"}, "key 'pvc_access_mode' must be one of ReadWriteOnce"),
        ({"active_deadline_seconds": 0}, "key 'active_deadline_seconds' must be at least 1"),
        ({"storage": "relative"}, "storage 'relative' is not an absolute path"),
        ({"storage": ""}, "storage '' is not an absolute path"),
        ({"registry_url": ""}, "registry_url '' names no registry"),
        ({"registry_url": "https://"}, "registry_url 'https://' names no registry"),
        ({"registry_url": "gcr.io/my project"}, "registry_url 'gcr.io/my project' names no registry"),
        ({"base_image": ""}, "base_image '' is not an image name"),
        ({"base_image": "python 3.11"}, "base_image 'python 3.11' is not an image name"),
    ]
    for keys, expected in cases:
        _context(**keys)
        for args in (("--dry-run",), ()):
            result = mrunner("+context=test-k8s", "exp.py", *args)
            assert result.returncode == 2, (keys, result.stderr)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and expected in lines[0], (keys, lines)
    assert mrunner("status").stdout.strip() == "no sweeps recorded yet"
