"""The Slurm backend's hooks: code to a content-addressed store over SSH, one job array per sweep.

The core calls these hooks only for Slurm contexts and sweeps. Each imports its modules (paramiko among them)
inside its body, so `mrunner --help` and the other backends never pay for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mrunner.errors import MrunnerError
from mrunner.hookspecs import Artefact, BackendInfo, Keep, Login, Pulled, Rendered, SubmitOptions, hookimpl
from mrunner.records import Run, RunUpdate, Sweep
from mrunner.reporter import Reporter
from mrunner.schema import ContextKey

if TYPE_CHECKING:  # the snapshot module (pathspec) is imported only by what builds one
    from mrunner.snapshot import Snapshot

NAME = "slurm"


@hookimpl
def mrunner_backends() -> list[BackendInfo]:
    return [BackendInfo(NAME, "job arrays on a Slurm cluster reached over SSH")]


@hookimpl
def mrunner_context_keys(backend: str) -> list[ContextKey] | None:
    from mrunner_slurm.keys import KEYS

    return KEYS


@hookimpl
def mrunner_warm_up(context: Mapping[str, Any]) -> None:
    url = context.get("slurm_url")
    if isinstance(url, str) and "${" not in url:  # not an interpolation
        _connect_in_background(context)


@hookimpl
def mrunner_check(context: Mapping[str, Any], context_name: str, dry_run: bool) -> None:
    from mrunner_slurm.keys import check

    check(context, context_name)
    if not dry_run:  # a dry run reaches nothing
        _connect_in_background(context)  # unless the warm-up started it for the same host


_CONNECTING: set[tuple[str, Any]] = set()


def _connect_in_background(context: Mapping[str, Any]) -> None:
    """Connect (without prompting) and start the first helper (0.1-0.6 s) while the core composes the context,
    snapshots the code and records the sweep."""
    import threading

    key = (str(context["slurm_url"]), context.get("ssh_config"))
    if key in _CONNECTING:
        return
    _CONNECTING.add(key)
    threading.Thread(target=_warm, args=(dict(context),), name="mrunner-slurm-connect", daemon=True).start()


def _warm(context: dict[str, Any]) -> None:
    from mrunner_slurm import remote, transport

    opened = transport.warm(context)
    if opened is not None:
        remote.prestart(opened)


@hookimpl
def mrunner_plan(context: Mapping[str, Any], count: int) -> list[str] | None:
    from mrunner_slurm.submit import describe

    return describe(context, count)


@hookimpl
def mrunner_render(
    sweep: Sweep, runs: Sequence[Run], snapshot: Snapshot, secret_names: Sequence[str]
) -> list[Rendered]:
    from mrunner_slurm.submit import render

    return render(sweep, runs, snapshot, secret_names)


@hookimpl
def mrunner_package(sweep: Sweep, snapshot: Snapshot, reporter: Reporter) -> dict[str, Any] | None:
    from mrunner import layout
    from mrunner_slurm import deploy, transport

    facts = deploy.deploy(
        transport.connection(sweep.context, sweep.context_name), sweep.context["storage_dir"], snapshot, reporter
    )
    return {**facts, "entries": layout.working_entries(snapshot.files, sweep.workdir)}  # once per sweep


@hookimpl
def mrunner_setup_resources(sweep: Sweep, secrets: Mapping[str, str], reporter: Reporter) -> dict[str, Any] | None:
    """The sweep's folder and, with ``requirements_file``, the virtualenv. Secrets are written by submit,
    in the same round trip as the batch scripts, into a file only the user can read."""
    from mrunner_slurm import batch, environment, transport

    detail: dict[str, Any] = {"sweep_dir": batch.sweep_dir(sweep.package["storage_dir"], sweep)}
    if sweep.context.get("requirements_file"):
        detail["venv"] = environment.ensure_venv(
            transport.connection(sweep.context, sweep.context_name), sweep, reporter
        )
    return detail


@hookimpl
def mrunner_submit(
    sweep: Sweep,
    runs: Sequence[Run],
    secrets: Mapping[str, str],
    options: SubmitOptions,
    record: Callable[[Sequence[RunUpdate]], None],
    reporter: Reporter,
) -> bool | None:
    from mrunner_slurm import submit, transport

    submit.submit(transport.connection(sweep.context, sweep.context_name), sweep, runs, secrets, record, reporter)
    return True


@hookimpl
def mrunner_status(sweep: Sweep, runs: Sequence[Run], ended: Sequence[Run]) -> list[RunUpdate] | None:
    """Also the ended runs: Slurm may run a finished task again (``scontrol requeue``)."""
    from mrunner_slurm import jobs, transport

    if not runs and not jobs.restartable(ended):
        return []  # no remote call for a sweep that ended long ago
    return jobs.status(transport.connection(sweep.context, sweep.context_name), sweep, runs, ended)


@hookimpl
def mrunner_cancel(
    sweep: Sweep, runs: Sequence[Run], record: Callable[[Sequence[RunUpdate]], None]
) -> list[RunUpdate] | None:
    from mrunner_slurm import jobs, transport

    return jobs.cancel(transport.connection(sweep.context, sweep.context_name), sweep, runs, record)


@hookimpl
def mrunner_logs(sweep: Sweep, run: Run, follow: bool, ended: Callable[[], bool]) -> Iterator[str] | None:
    from mrunner_slurm import jobs, transport

    return jobs.logs(transport.connection(sweep.context, sweep.context_name), sweep, run, follow, ended)


@hookimpl
def mrunner_pull(
    sweep: Sweep, runs: Sequence[Run], destination: Path, include: Sequence[str], reporter: Reporter
) -> Pulled | None:
    from mrunner_slurm import results, transport

    return results.pull(
        transport.connection(sweep.context, sweep.context_name), sweep, runs, destination, include, reporter
    )


@hookimpl
def mrunner_output_dirs(sweep: Sweep, runs: Sequence[Run]) -> dict[int, str] | None:
    from mrunner_slurm import results

    return {
        run.index: f"{sweep.context['slurm_url']}:{path}"
        for run, path in zip(runs, results.folders(sweep, runs).values())
    }


@hookimpl
def mrunner_gc(sweeps: Sequence[Sweep], keep: Keep, dry_run: bool, reporter: Reporter) -> list[Artefact]:
    """One helper call per cluster and storage folder the records name."""
    from mrunner_slurm import results, transport

    clusters: dict[tuple[str, Any], list[Sweep]] = {}
    for sweep in sweeps:
        clusters.setdefault((str(sweep.context["slurm_url"]), sweep.context.get("ssh_config")), []).append(sweep)
    removed: list[Artefact] = []
    for group in clusters.values():  # what a cluster's sweeps keep is kept in each of its storage folders
        for storage in sorted({results.storage_of(sweep) for sweep in group if sweep.package}):
            where = f"{group[0].context['slurm_url']}:{storage}"
            reporter.step(f"collecting in {where}")
            try:  # a cluster that needs a login is skipped, not prompted for: gc visits every cluster
                connection = transport.batch_connection(group[0].context, group[0].context_name)
                removed += results.collect(connection, storage, group, keep, dry_run)
            except transport.NeedsLogin as error:
                reporter.warn(f"skipped {group[0].context['slurm_url']}: {error}")
                break
            except MrunnerError as error:  # a retired cluster: collect the others
                reporter.warn(f"{where} left as it is: {error}")
                break
    return removed


@hookimpl
def mrunner_login(context: Mapping[str, Any], context_name: str) -> str | None:
    from mrunner_slurm import logins

    return logins.login(context, context_name)


@hookimpl
def mrunner_logout(context: Mapping[str, Any], context_name: str) -> str | None:
    from mrunner_slurm import logins

    return logins.logout(context, context_name)


@hookimpl
def mrunner_logins() -> list[Login]:
    from mrunner_slurm import logins

    return logins.logins()
