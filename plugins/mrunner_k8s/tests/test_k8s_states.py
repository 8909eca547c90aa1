"""How Job conditions and pod states become experiment states (the API objects built as the client's models)."""

from datetime import datetime, timezone

from kubernetes import client as k
from mrunner_k8s.cluster import is_loss, run_states


def _labels(index, attempt=0):
    return {"mrunner/sweep": "s", "mrunner/index": str(index), "mrunner/attempt": str(attempt)}


def job(index, condition=None, reason=None, attempt=0):
    conditions = [k.V1JobCondition(type=condition, status="True", reason=reason, message="m")] if condition else None
    return k.V1Job(metadata=k.V1ObjectMeta(labels=_labels(index, attempt)), status=k.V1JobStatus(conditions=conditions))


def pod(index, phase, exit_code=None, waiting=None, reason=None, attempt=0, created=0, unschedulable=None):
    if exit_code is not None:
        state = k.V1ContainerState(terminated=k.V1ContainerStateTerminated(exit_code=exit_code, reason="Error"))
    elif waiting:
        state = k.V1ContainerState(waiting=k.V1ContainerStateWaiting(reason=waiting, message="no such image"))
    else:
        state = k.V1ContainerState(running=k.V1ContainerStateRunning())
    statuses = [
        k.V1ContainerStatus(name="experiment", image="i", image_id="", ready=False, restart_count=0, state=state)
    ]
    conditions = (
        [k.V1PodCondition(type="PodScheduled", status="False", message=unschedulable)] if unschedulable else None
    )
    return k.V1Pod(
        metadata=k.V1ObjectMeta(
            labels=_labels(index, attempt), creation_timestamp=datetime.fromtimestamp(created, timezone.utc)
        ),
        status=k.V1PodStatus(phase=phase, container_statuses=statuses, reason=reason, conditions=conditions),
    )


def test_states_from_conditions_and_pods(make_run):
    runs = [make_run(i) for i in range(8)]
    for run in runs:
        run.state = "submitted"
    jobs = [
        job(0, "Complete"),
        job(1, "Failed", "BackoffLimitExceeded"),
        job(2, "Failed", "DeadlineExceeded"),
        job(3),
        job(4),
        job(5),
        job(6),
    ]
    pods = [
        pod(0, "Succeeded", 0),
        pod(1, "Failed", 3),
        pod(2, "Failed", 137),
        pod(3, "Running"),
        pod(4, "Pending", waiting="ImagePullBackOff"),
        pod(5, "Failed", 137, reason="Evicted"),
        pod(6, "Pending", unschedulable="0/1 nodes are available: 1 Insufficient nvidia.com/gpu."),
    ]
    updates = {u.index: u for u in run_states(runs, jobs, pods)}
    assert {i: (u.state, u.exit_code) for i, u in updates.items()} == {
        0: ("completed", 0),
        1: ("failed", 3),
        2: ("timeout", 137),
        3: ("running", None),
        4: ("pending", None),
        5: ("preempted", None),
        6: ("pending", None),
        7: ("lost", None),
    }
    assert updates[4].detail == "ImagePullBackOff: no such image"
    assert updates[6].detail.startswith("unschedulable: 0/1 nodes")


def test_only_the_runs_attempt_counts_and_unchanged_states_are_not_reported(make_run):
    run = make_run(0, attempt=1)
    run.state = "running"
    jobs = [job(0, "Failed", attempt=0), job(0, attempt=1)]
    pods = [pod(0, "Failed", 1, attempt=0), pod(0, "Running", attempt=1, created=5)]
    assert run_states([run], jobs, pods) == []
    pods.append(pod(0, "Succeeded", 0, attempt=1, created=9))  # a newer pod of the same attempt wins
    assert [(u.state, u.exit_code) for u in run_states([run], jobs, pods)] == [("completed", 0)]


def test_an_end_of_its_own_is_marked_and_a_deleted_pods_is_not(make_run):
    runs = [make_run(i) for i in range(4)]
    for run in runs:
        run.state = "running"
    deleting = pod(3, "Failed", 143)
    deleting.metadata.deletion_timestamp = datetime.fromtimestamp(60, timezone.utc)  # a cancel's delete
    jobs = [job(0, "Complete"), job(1, "Failed", "BackoffLimitExceeded"), job(2, "Failed", "DeadlineExceeded"), job(3)]
    pods = [pod(0, "Succeeded", 0), pod(1, "Failed", 3), pod(2, "Failed", 137), deleting]
    updates = {u.index: u for u in run_states(runs, jobs, pods)}
    assert {i: (u.state, u.ended_by_itself) for i, u in updates.items()} == {
        0: ("completed", True),
        1: ("failed", True),
        2: ("timeout", False),
        3: ("preempted", False),
    }
    assert is_loss(updates[3])  # deleted while its Job stays: the platform's doing, requeued by status


def test_a_deleted_pod_is_lost_only_once_nothing_of_its_attempt_runs(make_run):
    run = make_run(0)
    run.state = "running"
    saving = pod(0, "Running")
    saving.metadata.deletion_timestamp = datetime.fromtimestamp(60, timezone.utc)
    assert run_states([run], [job(0)], [saving]) == []  # its experiment still saves: nothing starts yet
    deleted = pod(0, "Failed", 143)
    deleted.metadata.deletion_timestamp = datetime.fromtimestamp(60, timezone.utc)
    replacement = pod(0, "Running", created=5)  # the Job controller's own, about to refuse (--once)
    assert run_states([run], [job(0)], [deleted, replacement]) == []
    (update,) = run_states([run], [job(0, "Failed")], [pod(0, "Failed", 98, created=5)])  # the deleted one is gone
    assert is_loss(update)
    pending = pod(0, "Pending", created=5)
    pending.status.container_statuses = None
    for waiting in (pending, pod(0, "Running", created=5)):  # the Job controller's replacement, not ended yet
        (update,) = run_states([run], [job(0, "Failed", "BackoffLimitExceeded")], [waiting])
        assert is_loss(update), update  # was `failed` without an exit code, when a status looked then
    cancelled = job(0)
    cancelled.metadata.deletion_timestamp = datetime.fromtimestamp(60, timezone.utc)
    assert not any(is_loss(u) for u in run_states([run], [cancelled], [deleted]))  # a cancel is no loss
    never_started = pod(0, "Pending")
    never_started.metadata.deletion_timestamp = datetime.fromtimestamp(60, timezone.utc)
    never_started.status.container_statuses = None
    legit = pod(0, "Running", created=5)  # deleted before it started: the Job's new pod runs the attempt
    assert run_states([run], [job(0)], [never_started, legit]) == []


def test_only_a_death_the_wrapper_saw_by_signal_is_named_as_one():
    """The start wrapper (PID 1) exits 128 + N either way; its termination message tells a signal's death
    from an experiment's own `sys.exit(130)`."""
    from mrunner_k8s.cluster import signal_end

    from mrunner.records import FAILED, RunUpdate

    assert signal_end(134, "killed by SIGABRT") == -6
    assert RunUpdate(0, FAILED, exit_code=signal_end(134, "killed by SIGABRT")).detail == "killed by SIGABRT"
    own = RunUpdate(0, FAILED, exit_code=signal_end(130, None))
    assert (own.exit_code, own.detail) == (130, None)
    assert signal_end(130, "killed by SIGABRT") == 130  # a message that does not match the exit code
    assert signal_end(137, "killed by SIGNOPE") == 137


def test_a_container_that_could_not_start_says_the_runtimes_reason(make_run):
    """The context's `python` missing from the image: the runtime's message names the program; "ContainerCannotRun"
    alone (and a log that printed nothing) left the user guessing."""
    run = make_run(0)
    run.state = "submitted"
    message = (
        "failed to create shim task: OCI runtime create failed: runc create failed: unable to start container"
        ' process: exec: "python9": executable file not found in $PATH: unknown'
    )
    terminated = k.V1ContainerStateTerminated(exit_code=127, reason="ContainerCannotRun", message=message)
    failed = pod(0, "Failed")
    failed.status.container_statuses[0].state = k.V1ContainerState(terminated=terminated)
    (update,) = run_states([run], [job(0, "Failed", "BackoffLimitExceeded")], [failed])
    assert (update.state, update.exit_code) == ("failed", 127)
    assert update.detail == f"ContainerCannotRun: {message}"
