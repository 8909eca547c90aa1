"""A pod lost to deletion on the loopback Kubernetes 1.20 cluster comes back as the experiment's next attempt,
in a Job of its own, from its checkpoint folder on the claim, up to max_requeue; a failed script is started
again only within retry_failed.

A first attempt saves `hold` steps and then waits for a `release` file the test writes beside its checkpoint
(the claim is a hostPath folder the test reads and writes): the test deletes a pod it knows is still running and
releases only the neighbour, so no run can end before the disruption, however slow the machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mrunner.records import COMPLETED, FAILED, PREEMPTED
from mrunner.testing import wait_for, write_context
from plugins.mrunner_k8s.tests import test_k8s_cluster as base
from plugins.mrunner_k8s.tests.test_k8s_cluster import _volume, experiments, k8s_context, submit

# The end-to-end tests' project folder (the clients and the namespace come from conftest.py).
project = base.project

HOLD = 3

# Saves its step in the checkpoint folder after every step; SIGTERM (the pod deleted) saves and stops. Attempt 0
# waits after step `hold` (0: never) until the file `release` is in its checkpoint folder; later attempts never do.
CHECKPOINTING = """
import json, os, signal, sys, time
import mrunner

config = mrunner.get_configuration()
folder = mrunner.checkpoint_dir()
path = os.path.join(folder, "state.json")
state = json.load(open(path)) if os.path.exists(path) else {"step": 0, "attempts": []}
state["attempts"].append(mrunner.attempt())

def save(*_):
    with open(path + ".tmp", "w") as out:
        json.dump(state, out)
    os.replace(path + ".tmp", path)

signal.signal(signal.SIGTERM, lambda *_: (save(), sys.exit(143)))
print("attempt", mrunner.attempt(), "from step", state["step"], flush=True)
while state["step"] < config.steps:
    state["step"] += 1
    save()
    if mrunner.attempt() == 0 and state["step"] == config.hold:
        while not os.path.exists(os.path.join(folder, "release")):
            time.sleep(0.1)
    time.sleep(config.pause)
print("done at step", state["step"], flush=True)
sys.exit(int(config.get("code", 0)))
"""


@pytest.fixture
def checkpointing(project, k8s_service, namespace):
    (project / "exp.py").write_text(CHECKPOINTING)
    return project


def _context(mrunner_home, k8s_service, namespace, **keys):
    write_context(
        mrunner_home,
        "test-k8s",
        k8s_context(
            k8s_service, namespace, registry_url=f"{k8s_service['registry']}/mrunner-tests", grace_period=5, **keys
        ),
    )


def _folder(volume: Path, sweep_id: str, run: dict) -> Path:
    return volume / "mrt-project" / sweep_id / "checkpoints" / f"{run['index']}-{run['name']}"


def checkpoint(volume: Path, sweep_id: str, run: dict) -> dict:
    path = _folder(volume, sweep_id, run) / "state.json"
    return json.loads(path.read_text()) if path.exists() else {"step": 0, "attempts": []}


def ends(mrunner, sweep_id: str) -> list[list[tuple[int, str | None]]]:
    result = mrunner("status", sweep_id, "--json")
    return [[(a["number"], a["end"]) for a in run["attempts"]] for run in json.loads(result.stdout)["experiments"]]


def _delete_held_pod(mrunner, cluster, namespace, sweep_id, volume) -> dict:
    """Wait until experiment 0's first attempt holds at step `hold`, delete its pod as a node drain would, then
    release experiment 1 (experiment 0's first attempt is never released: only the deletion ends it)."""
    first, neighbour = experiments(mrunner, sweep_id)
    wait_for(
        lambda: checkpoint(volume, sweep_id, first)["step"],
        lambda step: step == HOLD,
        timeout=180,
        every=0.5,
        what=f"experiment 0 to hold at step {HOLD}",
    )
    selector = f"mrunner/sweep={sweep_id},mrunner/index=0"
    (pod,) = cluster[0].list_namespaced_pod(namespace, label_selector=selector).items
    cluster[0].delete_namespaced_pod(pod.metadata.name, namespace)
    _folder(volume, sweep_id, neighbour).mkdir(parents=True, exist_ok=True)
    (_folder(volume, sweep_id, neighbour) / "release").write_text("")
    return first


def test_a_deleted_pod_continues_from_its_checkpoint_as_attempt_1_and_its_neighbour_runs_once(
    mrunner_home,
    mrunner,
    checkpointing,
    cluster,
    namespace,
    k8s_service,
):
    _context(mrunner_home, k8s_service, namespace)
    sweep_id, _ = submit(mrunner, "-m", "i=0,1", "steps=40", "pause=0.5", f"hold={HOLD}")
    volume = _volume(cluster[0], namespace)
    first = _delete_held_pod(mrunner, cluster, namespace, sweep_id, volume)
    runs = wait_for(
        lambda: experiments(mrunner, sweep_id),
        lambda rs: all(r["state"] == COMPLETED for r in rs),
        timeout=180,
        every=1,
        what="the end",
    )
    assert [r["attempt"] for r in runs] == [1, 0]
    assert ends(mrunner, sweep_id) == [[(0, PREEMPTED), (1, COMPLETED)], [(0, COMPLETED)]]
    state = checkpoint(volume, sweep_id, first)
    assert state["step"] == 40 and state["attempts"] == [0, 1]  # never a second run of attempt 0
    assert checkpoint(volume, sweep_id, runs[1])["attempts"] == [0]
    jobs = cluster[1].list_namespaced_job(namespace, label_selector=f"mrunner/sweep={sweep_id},mrunner/index=0")
    assert sorted(job.metadata.labels["mrunner/attempt"] for job in jobs.items) == ["0", "1"]  # a Job per attempt
    latest = mrunner("logs", f"{sweep_id}/0").stdout
    assert int(latest.split("attempt 1 from step ")[1].split()[0]) == HOLD and "done at step 40" in latest


def test_max_requeue_0_ends_a_deleted_pods_experiment_preempted(
    mrunner_home,
    mrunner,
    checkpointing,
    cluster,
    namespace,
    k8s_service,
):
    _context(mrunner_home, k8s_service, namespace, max_requeue=0)
    sweep_id, _ = submit(mrunner, "-m", "i=0,1", "steps=20", "pause=0.5", f"hold={HOLD}")
    volume = _volume(cluster[0], namespace)
    _delete_held_pod(mrunner, cluster, namespace, sweep_id, volume)
    runs = wait_for(
        lambda: experiments(mrunner, sweep_id),
        lambda rs: all(r["state"] in (COMPLETED, PREEMPTED) for r in rs),
        timeout=180,
        every=1,
        what="the end",
    )
    assert [(r["state"], r["attempt"]) for r in runs] == [(PREEMPTED, 0), (COMPLETED, 0)]
    assert ends(mrunner, sweep_id) == [[(0, PREEMPTED)], [(0, COMPLETED)]]


def test_a_failed_script_is_retried_only_within_retry_failed(
    mrunner_home, mrunner, checkpointing, cluster, namespace, k8s_service
):
    _context(mrunner_home, k8s_service, namespace, retry_failed=1)
    sweep_id, _ = submit(mrunner, "-m", "code=0,3", "steps=2", "pause=0", "hold=0")
    runs = wait_for(
        lambda: experiments(mrunner, sweep_id),
        lambda rs: all(r["state"] in (COMPLETED, FAILED) for r in rs),
        timeout=180,
        every=1,
        what="the end",
    )
    assert [(r["state"], r["exit_code"], r["attempt"]) for r in runs] == [(COMPLETED, 0, 0), (FAILED, 3, 1)]
    assert ends(mrunner, sweep_id) == [[(0, COMPLETED)], [(0, FAILED), (1, FAILED)]]
