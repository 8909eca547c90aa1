"""The Kubernetes backend: an image per code snapshot, the project's namespace and volume claim, one Job
per experiment; results read back from the claim by a short-lived pod. kubernetes and docker are imported
inside the methods that need them."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mrunner import interrupts
from mrunner.backend import Artefact, Backend, Keep, Pulled, Rendered, SubmitOptions
from mrunner.errors import BackendError, MrunnerError, NoLog
from mrunner.hookspecs import hookimpl
from mrunner.records import SUBMITTED, TERMINAL, Run, RunUpdate, Sweep
from mrunner.reporter import Reporter
from mrunner_k8s.keys import KubernetesKeys
from mrunner_k8s.keys import check as check_keys

if TYPE_CHECKING:  # the snapshot module (pathspec) is imported only by what builds one
    from mrunner.snapshot import Snapshot
    from mrunner_k8s.cluster import Cluster

LOG_WAIT_SECONDS = 600


def namespace_of(context: Mapping[str, Any], project: str) -> str:
    from mrunner_k8s import names

    return context.get("namespace") or names.namespace(project)


def _cluster(sweep: Sweep):
    from mrunner_k8s.cluster import Cluster

    return Cluster(sweep.context, sweep.detail.get("namespace") or namespace_of(sweep.context, sweep.project))


class KubernetesBackend(Backend):
    name = "kubernetes"
    description = "an image per code snapshot, one Kubernetes Job per experiment"
    keys = KubernetesKeys

    def check(self, context: Mapping[str, Any], context_name: str, dry_run: bool) -> None:
        from mrunner_k8s import names

        check_keys(context, context_name)
        variable = context.get("registry_password_env")
        if variable and variable not in os.environ:
            raise MrunnerError(
                f"context {context_name}: registry_password_env names {variable}, which is not set: export it"
            )
        if variable and not context.get("registry_username"):
            raise MrunnerError(f"context {context_name}: registry_password_env needs registry_username too")
        requested = context.get("namespace")
        if requested and names.rfc1123(requested) != requested:
            raise MrunnerError(
                f"context {context_name}: namespace {requested!r} is not a valid name (lower-case letters, digits, '-')"
            )

    def plan(self, context: Mapping[str, Any], count: int) -> list[str]:
        from mrunner_k8s import names

        project = context.get("project") or "(the project)"
        repository = names.image_repository(context["registry_url"], context.get("project") or "PROJECT")
        asked = (
            ", ".join(f"{key}={context[key]}" for key in ("cpu", "mem", "gpu", "tpu") if context.get(key))
            or "no resource requests"
        )
        namespace = context.get("namespace") or (
            names.namespace(context["project"]) if context.get("project") else "derived from the project"
        )
        return [
            f"build {repository}:<content tag> FROM {context['base_image']} (skipped if the registry has it) and push it",
            f"namespace {namespace} and volume claim {names.PVC_NAME} ({context['default_pvc_size']}) at {context['storage']} for {project}, created if missing",
            f"{count} Job{'s' * (count != 1)} (one pod each, never restarted), {asked}",
        ]

    def render(
        self, sweep: Sweep, runs: Sequence[Run], snapshot: Snapshot, secret_names: Sequence[str]
    ) -> list[Rendered]:
        """The first experiment's Job, made by ``manifests.job`` from what packaging would record: the image is
        named by its content, so its reference is known before it is built."""
        from dataclasses import replace

        import yaml

        from mrunner import layout
        from mrunner_k8s import image, manifests

        reference = image.reference(sweep, image.recipe(sweep, snapshot))
        planned = replace(
            sweep, package={"image": reference, "entries": layout.working_entries(snapshot.files, sweep.workdir)}
        )
        body = manifests.job(planned, runs[0], reference, secret_names)
        namespace = namespace_of(sweep.context, sweep.project)
        others = f" (one per experiment: {len(runs)} in all)" if len(runs) > 1 else ""
        text = yaml.safe_dump(manifests.to_dict(body), sort_keys=False, width=10_000)
        return [Rendered(f"Job {body.metadata.name} of experiment 0 in namespace {namespace}{others}", text)]

    def admit(self, sweep: Sweep, runs: Sequence[Run], reporter: Reporter) -> dict[str, Any]:
        """The namespace and volume claim ``setup_resources`` makes, asked as the API server's dry runs before
        the image is built or pushed: a namespace this user may not use or create, or a claim they may not
        make there, refuses the sweep before a build of minutes and a push. Decides nothing: no facts."""
        cluster = _cluster(sweep)
        cluster.namespace = namespace_of(sweep.context, sweep.project)
        cluster.preflight(sweep.context, sweep.project)
        return {}

    def identify(self, sweep: Sweep, snapshot: Snapshot) -> dict[str, Any]:
        """The image's reference and the requirements it installs, recorded before it is built or pushed:
        `resume` finds the image by it once the project (its requirements too) was edited."""
        from mrunner_k8s import image

        return image.identity(sweep, snapshot)

    def package(self, sweep: Sweep, snapshot: Snapshot, reporter: Reporter) -> dict[str, Any]:
        from mrunner import layout
        from mrunner_k8s import image

        facts = image.ensure(sweep, snapshot, reporter)
        if sweep.package.get("image") == facts["image"] and "entries" in sweep.package:
            # A resume: keep what the first hand-over recorded, so every attempt's folder mirrors the code alike.
            return {**sweep.package, **facts, "timestamp_tag": sweep.package.get("timestamp_tag")}
        return {**facts, "entries": layout.working_entries(snapshot.files, sweep.workdir)}

    def packaged(self, sweep: Sweep, snapshot: Snapshot, reporter: Reporter) -> dict[str, Any] | None:
        """The sweep's image, while the registry holds it: it is the submitted code whatever the project
        became. Its name is the recorded one (``identify`` records it before the build), or, for a sweep
        stopped before that, the one its recipe gives (the tag is the content's, so a tag the registry holds is
        that content). Not pushed yet (a stop between ``identify`` and the push) with only the requirements
        file changed since: built and pushed from the requirements ``identify`` recorded, which are that
        file's snapshotted content. None when the registry has neither and the snapshot cannot be read whole,
        or the recipe cannot be read (nothing was recorded or pushed, and the requirements file changed)."""
        from mrunner import layout
        from mrunner_k8s import image

        reference = sweep.package.get("image") or sweep.detail.get("identified", {}).get("image")
        if not reference:
            try:
                reference = image.reference(sweep, image.recipe(sweep, snapshot))
            except MrunnerError:
                return None
        digest = image.in_registry(sweep, reference)
        if digest is None:
            if not image.identified_requirements(sweep, snapshot):
                return None
            # stopped before the push, and only the requirements edited since: built from what was recorded
            reporter.step(f"image {reference} is not in the registry: building it from the submitted code")
            return self.package(sweep, snapshot, reporter)
        reporter.step(f"image {reference} ({digest}) is in the registry: the new attempts run it")
        entries = sweep.package.get("entries") or layout.working_entries(snapshot.files, sweep.workdir)
        return {
            "built": False,
            "pushed_bytes": 0,
            **sweep.package,
            "image": reference,
            "image_digest": digest,
            "entries": entries,
        }

    def setup_resources(self, sweep: Sweep, secrets: Mapping[str, str], reporter: Reporter) -> dict[str, Any]:
        from mrunner_k8s import names

        namespace = namespace_of(sweep.context, sweep.project)
        cluster = _cluster(sweep)
        cluster.namespace = namespace
        if cluster.ensure_namespace(sweep.project):
            reporter.step(f"created namespace {namespace}")
        if cluster.ensure_claim(sweep.context, sweep.project):
            reporter.step(f"created volume claim {names.PVC_NAME} ({sweep.context['default_pvc_size']}) in {namespace}")
        detail: dict[str, Any] = {"namespace": namespace, "secret": None}
        if secrets:
            cluster.put_secret(sweep, secrets)
            detail["secret"] = names.secret(sweep.id)
        return detail

    def submit(
        self,
        sweep: Sweep,
        runs: Sequence[Run],
        secrets: Mapping[str, str],
        options: SubmitOptions,
        record: Callable[[Sequence[RunUpdate]], None],
        reporter: Reporter,
    ) -> None:
        from mrunner_k8s import manifests

        cluster = _cluster(sweep)
        cluster.put_config(sweep, runs)
        image = sweep.package["image"]
        existing = 0
        with reporter.progress(len(runs), f"creating {len(runs)} Jobs in {cluster.namespace}") as progress:
            for run in runs:
                body = manifests.job(sweep, run, image, secrets)
                recorded = False
                try:
                    with interrupts.held():  # a Job the API server created is recorded before an interrupt stops us
                        if not cluster.create_job(body):
                            existing += 1
                        record(
                            [
                                RunUpdate(
                                    run.index,
                                    SUBMITTED,
                                    backend_ref=f"{cluster.namespace}/{body.metadata.name}",
                                    attempt=run.attempt,
                                )
                            ]
                        )
                        recorded = True
                except KeyboardInterrupt:
                    if recorded:
                        raise
                    # a second interrupt broke in: the API server may have created this Job unrecorded, so the
                    # runs stay planned and `resume` submits them at the same attempt, finding it by its name
                    raise interrupts.Unsettled from None
                progress.advance()
        created = len(runs) - existing
        note = f" ({existing} already existed)" if existing else ""
        reporter.step(
            f"sweep {sweep.id}: {created} Job{'s' * (created != 1)} created in namespace {cluster.namespace}{note}"
        )

    def status(self, sweep: Sweep, runs: Sequence[Run], ended: Sequence[Run]) -> list[RunUpdate]:
        """A replaced pod is reported as the run's next attempt; an ended run never starts again by itself."""

        from mrunner_k8s.cluster import run_states
        from mrunner_k8s.requeue import next_attempts

        if not runs:
            return []
        cluster = _cluster(sweep)
        jobs, pods = cluster.sweep_objects(sweep)
        updates = _explained(cluster, sweep, runs, run_states(runs, jobs, pods), jobs)
        return next_attempts(cluster, sweep, runs, updates, jobs)

    def cancel(
        self, sweep: Sweep, runs: Sequence[Run], record: Callable[[Sequence[RunUpdate]], None]
    ) -> list[RunUpdate]:
        from mrunner_k8s.cluster import cancelled, run_states

        cluster = _cluster(sweep)
        jobs, pods = cluster.sweep_objects(sweep)
        # A pod that had already ended keeps its real end, and its Job stays (with the log `mrunner logs` shows).
        ends = [update for update in run_states(runs, jobs, pods) if update.ended_by_itself]  # never retried here
        ended = {update.index for update in ends}
        stopping = [run for run in runs if run.index not in ended]
        updates = cancelled(stopping)
        if stopping:
            record(updates)  # before the delete: the pod's end under the kubelet's SIGTERM is the cancel's
            cluster.delete_jobs(sweep, stopping)
        return [*ends, *updates]

    def logs(self, sweep: Sweep, run: Run, follow: bool, ended: Callable[[], bool]) -> Iterator[str]:
        cluster = _cluster(sweep)
        pod = cluster.pod_of(sweep, run)
        deadline = time.monotonic() + LOG_WAIT_SECONDS
        waits = follow and run.state not in TERMINAL
        while waits and (pod is None or pod.status.phase == "Pending") and time.monotonic() < deadline:
            time.sleep(1)  # following an experiment that has not started yet: wait for its container
            pod = cluster.pod_of(sweep, run)
        if pod is None and run.state in TERMINAL:  # its Job was deleted (`mrunner gc`): the log on the claim stays
            from mrunner_k8s.results import claim_log

            return claim_log(cluster, sweep, run)
        if pod is None:
            why = _why_waiting(cluster, sweep, run)
            raise BackendError(
                f"experiment {run.ref} has no output yet: {why}"
                if why
                else f"experiment {run.ref} has no pod (state {run.state}): not started yet, or its Job was deleted"
            )
        if pod.status.phase == "Pending":
            if run.state in TERMINAL:  # ended before its container started (cancelled, unschedulable)
                raise NoLog(f"experiment {run.ref} has no log of attempt {run.attempt} (its pod never started)")
            why = _why_waiting(cluster, sweep, run)
            raise BackendError(
                f"experiment {run.ref}'s pod {pod.metadata.name} has not started yet, so it has no output"
                + (f": {why}" if why else "")
            )
        return cluster.log_chunks(pod.metadata.name, follow)

    def pull(
        self, sweep: Sweep, runs: Sequence[Run], destination: Path, include: Sequence[str], reporter: Reporter
    ) -> Pulled:
        from mrunner_k8s import results

        return results.pull(_cluster(sweep), sweep, runs, destination, include, reporter)

    def output_dirs(self, sweep: Sweep, runs: Sequence[Run]) -> dict[int, str]:
        from mrunner_k8s import results

        return results.output_dirs(sweep, runs)

    def gc(self, sweeps: Sequence[Sweep], keep: Keep, dry_run: bool, reporter: Reporter) -> list[Artefact]:
        """One round of lists per cluster and namespace the records name; a cluster that cannot be reached (its
        kubeconfig gone, its API server down) is left alone with a warning, the others are collected. Then each
        Docker engine the records name: pip's results no recorded sweep uses, and killed builds' leftovers."""
        from mrunner_k8s import local_images
        from mrunner_k8s.cluster import Cluster
        from mrunner_k8s.collect import collect

        places: dict[tuple[Any, Any, str], list[Sweep]] = {}
        for sweep in sweeps:
            namespace = sweep.detail.get("namespace") or namespace_of(sweep.context, sweep.project)
            place = (sweep.context.get("kubeconfig"), sweep.context.get("kube_context"), namespace)
            places.setdefault(place, []).append(sweep)
        removed: list[Artefact] = []
        for (_, kube_context, namespace), group in sorted(places.items(), key=lambda item: str(item[0])):
            where = f"namespace {namespace}" + (f" of {kube_context}" if kube_context else "")
            reporter.step(f"collecting in {where}")
            try:
                removed += collect(Cluster(group[0].context, namespace), sweeps, keep, dry_run)
            except MrunnerError as error:
                reporter.warn(f"{where} left as it is: {error}")
        return removed + local_images.collect(sweeps, keep, dry_run, reporter)


def _explained(
    cluster: Cluster, sweep: Sweep, runs: Sequence[Run], updates: list[RunUpdate], jobs: Sequence[Any]
) -> list[RunUpdate]:
    """``updates`` with why each waiting run waits as the cluster says it (a refused pod creation, a claim that
    cannot be bound, a request above every node's): what `status` shows and `logs` says of a pod not started."""
    from dataclasses import replace

    from mrunner_k8s.cluster import NO_POD, UNBOUND, explain_waiting, never_schedulable

    if any(update.detail == NO_POD for update in updates):
        updates = explain_waiting(updates, runs, jobs, cluster.creation_refusals())
    if any(UNBOUND in (update.detail or "") for update in updates):
        trouble = cluster.claim_trouble()
        updates = [replace(u, detail=trouble) if UNBOUND in (u.detail or "") else u for u in updates]
    unschedulable = [update.detail for update in updates if (update.detail or "").startswith("unschedulable:")]
    if any("Insufficient" in (detail or "") for detail in unschedulable):
        nodes = cluster.nodes()  # one more call, only then
        waiting = {u.index for u in updates if (u.detail or "").startswith("unschedulable:")}
        # each run's own request (a per-point resource may ask more than the sweep's context), once a class
        by_class: dict[str, str | None] = {}
        never: dict[int, str | None] = {}
        for run in runs:
            if run.index in waiting:
                if run.resource_class not in by_class:
                    by_class[run.resource_class] = never_schedulable(run.context(sweep), nodes) if nodes else None
                never[run.index] = by_class[run.resource_class]
        updates = [
            replace(update, detail=f"{update.detail} {never[update.index]}") if never.get(update.index) else update
            for update in updates
        ]
    return updates


def _why_waiting(cluster: Cluster, sweep: Sweep, run: Run) -> str | None:
    """Why the run's attempt has not started, as `status` says it; None when the cluster names no reason."""
    from mrunner_k8s.cluster import run_states

    jobs, pods = cluster.run_objects(sweep, run)
    updates = _explained(cluster, sweep, [run], run_states([run], jobs, pods), jobs)
    return next((update.detail for update in updates if update.detail), None)


@hookimpl
def mrunner_register_backends(register: Callable[[Backend], None]) -> None:
    register(KubernetesBackend())
