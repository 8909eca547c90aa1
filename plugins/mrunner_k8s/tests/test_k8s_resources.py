"""Per-point resources on Kubernetes: each experiment's Job asks for its own point's resources (a swept
``context.mem``), in the manifest and on the loopback cluster."""

from __future__ import annotations

import dataclasses
import re

from mrunner_k8s import manifests

from mrunner.testing import wait_for
from plugins.mrunner_k8s.tests.test_k8s_cluster import ended, experiments, project, submit  # noqa: F401


def test_a_runs_own_resources_replace_the_contexts_in_its_job(sweep, make_run):
    own = dataclasses.replace(make_run(1), resources={"mem": "16Gi", "gpu": 2, "active_deadline_seconds": 60})
    job = manifests.to_dict(manifests.job(sweep, own, "127.0.0.1:5000/demo:c-1", {}))
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "cpu": "2",
        "memory": "16Gi",
        "nvidia.com/gpu": "2",
    }
    assert job["spec"]["activeDeadlineSeconds"] == 60
    plain = manifests.to_dict(manifests.job(sweep, make_run(0), "127.0.0.1:5000/demo:c-1", {}))
    assert plain["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "4Gi"


def test_each_pod_gets_the_memory_of_its_point(mrunner, project, cluster, namespace):  # noqa: F811
    sweep_id, result = submit(mrunner, "-m", "context.mem=64Mi,128Mi", "lr=0.1")
    runs = wait_for(lambda: experiments(mrunner, sweep_id), ended, timeout=300, every=1)
    assert [(r["state"], r["resources"]) for r in runs] == [
        ("completed", {"mem": "64Mi"}),
        ("completed", {"mem": "128Mi"}),
    ]
    jobs = cluster[1].list_namespaced_job(namespace, label_selector=f"mrunner/sweep={sweep_id}").items
    memory = {
        job.metadata.labels["mrunner/index"]: job.spec.template.spec.containers[0].resources.limits["memory"]
        for job in jobs
    }
    assert memory == {"0": "64Mi", "1": "128Mi"}
    shown = mrunner("status", sweep_id)
    assert "resources: mem=64Mi (1), mem=128Mi (1)" in shown.stdout, shown.stdout


def test_only_the_point_asking_more_than_any_node_says_it_can_never_run(mrunner, project):  # noqa: F811
    sweep_id, _ = submit(mrunner, "-m", "context.mem=64Mi,1000Ti", "lr=0.2")
    runs = wait_for(
        lambda: experiments(mrunner, sweep_id),
        lambda runs: runs[0]["state"] == "completed" and "can never run" in (runs[1]["detail"] or ""),
        timeout=300,
        every=1,
        what="the small point to complete and the big one to be found unschedulable",
    )
    assert runs[1]["state"] == "pending" and "mem 1000Ti is more than any node offers" in runs[1]["detail"]
    # in units a user reads (it was the bytes, 25171337216)
    assert re.search(r"the largest allocatable memory is \d+(\.\d)?[KMGT]i\)", runs[1]["detail"]), runs[1]["detail"]
    # `logs` says why there is no output yet, as `status` does, in one line (it said only "not started yet")
    logs = mrunner("logs", f"{sweep_id}/1")
    assert logs.returncode == 3 and logs.stdout == "", logs
    (line,) = logs.stderr.strip().splitlines()
    assert "has not started yet, so it has no output: unschedulable: " in line, line
    assert "mem 1000Ti is more than any node offers" in line and "cancel it and submit with less" in line, line
    assert mrunner("cancel", sweep_id).returncode == 0


def test_a_gpu_on_a_cluster_without_gpus_can_never_run_and_wait_ends(mrunner, project):  # noqa: F811
    """No node of the cluster offers nvidia.com/gpu at all: the pod waits for ever, so `--wait` ends with one
    line as it does for a cpu above every node's (it waited with no end)."""
    waited = mrunner("+context=test-k8s", "exp.py", "lr=0.6", "context.gpu=1", "--wait", timeout=300)
    assert waited.returncode != 0, waited.stderr
    last = waited.stderr.strip().splitlines()[-1]
    assert last.startswith("mrunner: error: experiment ") and "waits for ever: unschedulable" in last, last
    assert "gpu 1 is more than any node offers (the largest allocatable nvidia.com/gpu is 0)" in last, last
    assert mrunner("cancel", waited.stdout.strip().splitlines()[0]).returncode == 0
