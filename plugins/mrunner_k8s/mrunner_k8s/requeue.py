"""The next attempt of an experiment whose pod was lost (evicted, deleted, its node gone) or, with
``retry_failed``, whose script failed: a new Job named for the attempt, with the same checkpoint folder on
the claim, started while ``mrunner status`` looks at the sweep.

Kubernetes 1.20 has no pod failure policy, and its Job controller replaces a deleted pod by itself at once,
in the same Job and attempt: that pod refuses to run the attempt again (``mrunner.attempt --once``), the
old Job ends failed and stays (with its pods' logs), and the next attempt runs in a Job of its own.

A cancel records ``cancelled`` first and then deletes the experiment's Jobs of every attempt, Job first: so
a replacement is created only while the lost attempt's Job is still there, and one created while a cancel
deleted that Job is deleted again at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from mrunner.records import FAILED, PENDING, PREEMPTED, Run, RunUpdate, Sweep
from mrunner_k8s import manifests
from mrunner_k8s.cluster import Cluster, is_loss


def next_attempts(
    cluster: Cluster, sweep: Sweep, runs: Sequence[Run], updates: Sequence[RunUpdate], jobs: Sequence[Any]
) -> list[RunUpdate]:
    """``updates`` with each lost (or, within ``retry_failed``, failed) attempt replaced by its next one,
    started here; a lost attempt beyond ``max_requeue`` ends ``preempted``."""
    by_index = {run.index: run for run in runs}
    jobs_by_key = {_key(job): job for job in jobs}
    result = []
    for update in updates:
        run = by_index[update.index]
        job = jobs_by_key.get((str(run.index), str(run.attempt)))
        retry = update.state == FAILED and update.ended_by_itself
        if job is None or not (is_loss(update) or retry):
            result.append(update)
            continue
        counts = {
            key: int((job.metadata.annotations or {}).get(key, 0)) for key in (manifests.REQUEUES, manifests.RETRIES)
        }
        kind = manifests.RETRIES if retry else manifests.REQUEUES
        limit = int(sweep.context.get("retry_failed" if retry else "max_requeue") or 0)
        if counts[kind] >= limit:
            key = "retry_failed" if retry else "max_requeue"
            note = f" (started again {counts[kind]} times, {key}={limit})" if limit else ""
            result.append(replace(update, detail=f"{update.detail or update.state}{note}"))
            continue
        counts[kind] += 1
        started = _start(cluster, sweep, run, job, counts)
        if started is not None:
            end = FAILED if retry else PREEMPTED
            why = f"attempt {run.attempt} {'failed' if retry else update.detail}"
            codes = {run.attempt: update.exit_code} if retry and update.exit_code is not None else {}
            result.append(
                RunUpdate(
                    run.index,
                    PENDING,
                    backend_ref=started,
                    detail=why,
                    attempt=run.attempt + 1,
                    ends={run.attempt: end},
                    end_codes=codes,
                )
            )
    return result


def _start(cluster: Cluster, sweep: Sweep, run: Run, job: Any, counts: dict[str, int]) -> str | None:
    """Create the next attempt's Job; None when the lost attempt's Job went meanwhile (a cancel)."""
    secret_names = [
        env.name for env in job.spec.template.spec.containers[0].env or [] if env.value_from is not None
    ]  # the sweep's Secret's keys, which status is not given
    body = manifests.job(
        sweep,
        replace(run, attempt=run.attempt + 1),
        sweep.package["image"],
        secret_names,
        requeues=counts[manifests.REQUEUES],
        retries=counts[manifests.RETRIES],
    )
    cluster.create_job(body)
    if not cluster.job_stays(job.metadata.name):
        cluster.delete_job(body.metadata.name)
        return None
    return f"{cluster.namespace}/{body.metadata.name}"


def _key(job: Any) -> tuple[str, str]:
    labels = job.metadata.labels or {}
    return labels.get("mrunner/index", ""), labels.get("mrunner/attempt", "")
