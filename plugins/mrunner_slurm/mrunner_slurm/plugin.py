"""The Slurm backend: code to a content-addressed store over SSH, one job array per sweep.

The core calls its methods only for Slurm contexts and sweeps. Each imports its modules (paramiko among
them) inside its body, so `mrunner --help` and the other backends never pay for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mrunner.backend import Artefact, Backend, Keep, Login, Pulled, Rendered, SubmitOptions
from mrunner.errors import MrunnerError
from mrunner.hookspecs import hookimpl
from mrunner.records import Run, RunUpdate, Sweep
from mrunner.reporter import Reporter
from mrunner_slurm.keys import SlurmKeys, check_combinations

if TYPE_CHECKING:  # the snapshot module (pathspec) is imported only by what builds one
    from mrunner.snapshot import Snapshot


class SlurmBackend(Backend):
    name = "slurm"
    description = "job arrays on a Slurm cluster reached over SSH"
    keys = SlurmKeys
    #: Slurm can requeue a finished job only while it keeps it (MinJobAge after its end, 300 s by default;
    #: clusters often keep them longer); a requeued task that ran while nobody looked is found by its
    #: attempt's log.
    restarts_within = 3600.0

    def warm_up(self, context: Mapping[str, Any]) -> None:
        url = context.get("slurm_url")
        if isinstance(url, str) and "${" not in url:  # not an interpolation
            _connect_in_background(context, prestart=False)  # `results` may make no helper call at all

    def check(self, context: Mapping[str, Any], context_name: str, dry_run: bool) -> None:
        check_combinations(context, context_name)
        if not dry_run:  # a dry run reaches nothing
            _connect_in_background(context, prestart=True)  # a submission's calls: a helper started ahead
            _read_limits_in_background(context)  # for admit, while the core snapshots and records

    def canonical(self, context: Mapping[str, Any]) -> Mapping[str, Any]:
        """``slurm_url`` as ``user@hostname:port`` as the context's ssh resolves it (``places``)."""
        from mrunner_slurm import places

        return places.canonical(context)

    def ready(
        self, context: Mapping[str, Any], context_name: str, classes: Sequence[tuple[Mapping[str, Any], int]]
    ) -> None:
        """Refused here, before the sweep is recorded: a ``storage_dir`` the cluster's user cannot write (the
        limits' round trip started by ``check`` asked: ``storage_check``), a plan beyond the user's job
        allowance (``RefusedAsPlanned``: the limit and ``points_per_task``), and a resource class sbatch would
        refuse (``submit.refuse_planned``: one helper call, which ``admit`` then does not make). A
        connection the background could not open (it never prompts) is opened here, before anything is
        recorded: in a terminal it asks (a passphrase, a code) once for the whole command; without one, or
        for a host that cannot be reached, it is the command's one line, with no sweep recorded first and
        forgotten. ``admit`` then reads the limits over it."""
        from mrunner_slurm import submit, transport

        key = _reading_key(context)
        reading = _READINGS.get(key)
        if reading is None:  # a dry run reaches nothing
            return
        try:
            found = reading.limits()
        except Exception:  # the reading's own failure: admit raises it again, worded as it was
            return
        if found is None:
            transport.connection(context, context_name)
            return
        if found.storage_refusal:
            raise MrunnerError(f"on {context['slurm_url']}: {found.storage_refusal}")
        connection = transport.connection(context, context_name)  # the one the reading used: no prompt
        _ASKED[key] = submit.refuse_planned(connection, context, context_name, classes, found)

    def plan(self, context: Mapping[str, Any], count: int) -> list[str]:
        from mrunner_slurm.submit import describe

        return describe(context, count)

    def render(
        self, sweep: Sweep, runs: Sequence[Run], snapshot: Snapshot, secret_names: Sequence[str]
    ) -> list[Rendered]:
        from mrunner_slurm.submit import render

        return render(sweep, runs, snapshot, secret_names)

    def admit(self, sweep: Sweep, runs: Sequence[Run], reporter: Reporter) -> dict[str, Any]:
        """Refused whole, before anything is uploaded or reaches Slurm, when the array tasks
        (``points_per_task`` experiments each; ``auto`` packs to fit) exceed the jobs the site still allows
        the user (``limits``: the association's, the account's and the QOS's limits). The packing is
        decided here and recorded, so that a submission cut off after an sbatch packs the same way when
        submitted again (``submit.admit``); the limits on running jobs are recorded for `status`. Also
        refused whole when sbatch would refuse one of its resource classes ``ready`` did not ask about
        (``submit.refuse_classes``: a resumed sweep, a connection that wanted a prompt)."""
        from mrunner_slurm import limits, submit, transport

        connection = transport.connection(sweep.context, sweep.context_name)
        account, qos = sweep.context.get("account"), sweep.context.get("qos")
        reading = _READINGS.pop(_reading_key(sweep.context), None)  # started by check, read meanwhile
        found = reading.limits() if reading is not None else None
        if found is None:
            found = limits.site_limits(connection, account, qos, sweep.context["storage_dir"])
        if found.storage_refusal:  # a connection that wanted a prompt: not known before the sweep was recorded
            raise MrunnerError(f"on {sweep.context['slurm_url']}: {found.storage_refusal}")
        asked = _ASKED.pop(_reading_key(sweep.context), set())  # the classes ready asked sbatch about
        return {"packing": submit.admit(connection, sweep, runs, found, asked), "running_limits": found.running}

    def identify(self, sweep: Sweep, snapshot: Snapshot) -> dict[str, Any]:
        """With a ``requirements_file``, its content, recorded before the code is uploaded: the virtualenv of
        every later attempt is built from it (or reused), whatever the file became since."""
        from mrunner_slurm import environment

        return environment.identity(sweep, snapshot)

    def package(self, sweep: Sweep, snapshot: Snapshot, reporter: Reporter) -> dict[str, Any]:
        from mrunner import layout
        from mrunner_slurm import deploy, transport

        connection = transport.connection(sweep.context, sweep.context_name)
        facts = deploy.deploy(connection, sweep.context["storage_dir"], snapshot, reporter, sweep.id)
        # once per sweep; mirrored: a job that cannot mount the code's view links per file (mrunner.attempt --watch)
        return {**facts, "entries": layout.working_entries(snapshot.files, sweep.workdir, mirror=True)}

    def packaged(self, sweep: Sweep, snapshot: Snapshot, reporter: Reporter) -> dict[str, Any] | None:
        """The snapshot's code folder on the cluster, while it is there (uploaded by the interrupted
        submission or an earlier one, not collected since): it holds the submitted code whatever the project
        became, and the virtualenv is built from (or is the one of) the requirements ``identify`` recorded
        before the upload, or, for a sweep stopped before that, those uploaded with the code (checked against
        the snapshot). Not uploaded yet (a stop between ``identify`` and the upload) with only the requirements
        file changed since: uploaded then, that file from the recorded requirements (its snapshotted content).
        None without the folder, or when the requirements can be read as submitted nowhere."""
        from mrunner import layout
        from mrunner_slurm import deploy, environment, transport

        wanted = None  # the requirements file of the snapshot, to read from the code folder on the cluster
        if sweep.context.get("requirements_file") and "requirements" not in sweep.detail.get("identified", {}):
            try:
                environment.requirements(sweep, snapshot)
            except MrunnerError:
                wanted = environment.in_snapshot(sweep, snapshot)
                if wanted is None:
                    return None
        connection = transport.connection(sweep.context, sweep.context_name)
        facts = deploy.deployed(connection, sweep.context["storage_dir"], snapshot, reporter, sweep.id, read=wanted)
        if facts is None:
            if not environment.identified_requirements(sweep, snapshot):
                return None
            # stopped before the upload, and only the requirements edited since: uploaded from what was recorded
            reporter.step(f"code snapshot {snapshot.digest[:12]} is not on the cluster: uploading the submitted code")
            return self.package(sweep, snapshot, reporter)
        if wanted is not None:
            uploaded = facts.pop("read")
            if uploaded is None:
                return None
            facts["requirements"] = uploaded.decode("utf-8", "surrogateescape")
        reporter.step(f"code snapshot {snapshot.digest[:12]} is in {facts['code_dir']}: the new attempts run it")
        return {**facts, "entries": layout.working_entries(snapshot.files, sweep.workdir, mirror=True)}

    def setup_resources(self, sweep: Sweep, secrets: Mapping[str, str], reporter: Reporter) -> dict[str, Any]:
        """The sweep's folder and, with ``requirements_file``, the virtualenv. Secrets are written by submit,
        in the same round trip as the batch scripts, into a file only the user can read."""
        from mrunner_slurm import batch, environment, transport

        detail: dict[str, Any] = {"sweep_dir": batch.sweep_dir(sweep.package["storage_dir"], sweep)}
        if sweep.context.get("requirements_file"):
            detail["venv"] = environment.ensure_venv(
                transport.connection(sweep.context, sweep.context_name), sweep, reporter
            )
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
        """As ``admit`` packed them (recorded in ``sweep.detail``)."""
        from mrunner_slurm import submit, transport

        connection = transport.connection(sweep.context, sweep.context_name)
        submit.submit(connection, sweep, runs, secrets, record, reporter)

    def status(self, sweep: Sweep, runs: Sequence[Run], ended: Sequence[Run]) -> list[RunUpdate]:
        """Also the ended runs: Slurm may run a finished task again (``scontrol requeue``)."""
        from mrunner_slurm import jobs, transport

        if not runs and not jobs.restartable(ended):
            return []  # no remote call for a sweep whose ended runs Slurm never had
        return jobs.status(transport.connection(sweep.context, sweep.context_name), sweep, runs, ended)

    def cancel(
        self, sweep: Sweep, runs: Sequence[Run], record: Callable[[Sequence[RunUpdate]], None]
    ) -> list[RunUpdate]:
        from mrunner_slurm import jobs, transport

        return jobs.cancel(transport.connection(sweep.context, sweep.context_name), sweep, runs, record)

    def logs(self, sweep: Sweep, run: Run, follow: bool, ended: Callable[[], bool]) -> Iterator[str]:
        from mrunner_slurm import jobs, transport

        return jobs.logs(transport.connection(sweep.context, sweep.context_name), sweep, run, follow, ended)

    def pull(
        self, sweep: Sweep, runs: Sequence[Run], destination: Path, include: Sequence[str], reporter: Reporter
    ) -> Pulled:
        from mrunner_slurm import results, transport

        return results.pull(
            transport.connection(sweep.context, sweep.context_name), sweep, runs, destination, include, reporter
        )

    def summaries(
        self, sweep: Sweep, runs: Sequence[Run], have: Mapping[str, list[int]], reporter: Reporter
    ) -> dict[str, tuple[int, int, bytes]] | None:
        from mrunner_slurm import results, transport

        made = results.summaries_input(sweep, runs, have)  # while the warm-up's connection may still be opening
        return results.summaries(transport.connection(sweep.context, sweep.context_name), sweep, made, reporter)

    def output_dirs(self, sweep: Sweep, runs: Sequence[Run]) -> dict[int, str]:
        from mrunner_slurm import results

        return {
            run.index: f"{sweep.context['slurm_url']}:{path}"
            for run, path in zip(runs, results.folders(sweep, runs).values())
        }

    def gc(self, sweeps: Sequence[Sweep], keep: Keep, dry_run: bool, reporter: Reporter) -> list[Artefact]:
        """One helper call per cluster and storage folder the records name."""
        from mrunner_slurm import results, transport
        from mrunner_slurm.places import place

        clusters: dict[str, list[Sweep]] = {}  # by the cluster each names, however its records spell it
        for sweep in sweeps:
            clusters.setdefault(place(sweep.context), []).append(sweep)
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

    def login(self, context: Mapping[str, Any], context_name: str) -> str:
        from mrunner_slurm import logins

        return logins.login(context, context_name)

    def logout(self, context: Mapping[str, Any], context_name: str) -> str:
        from mrunner_slurm import logins

        return logins.logout(context, context_name)

    def logins(self) -> list[Login]:
        from mrunner_slurm import logins

        return logins.logins()


_CONNECTING: set[tuple[str, Any, bool]] = set()
#: The site's limits being read for a submission (``limits.Reading``), from its check to its admission, by
#: cluster, account and QOS.
_READINGS: dict[tuple[str, Any, Any, Any, Any], Any] = {}
#: The sbatch options of the resource classes ``ready`` found sbatch accepts, for ``admit`` (same keys).
_ASKED: dict[tuple[str, Any, Any, Any, Any], set[tuple[str, ...]]] = {}


def _reading_key(context: Mapping[str, Any]) -> tuple[str, Any, Any, Any, Any]:
    return (
        str(context["slurm_url"]),
        context.get("ssh_config"),
        context.get("account"),
        context.get("qos"),
        context.get("storage_dir"),
    )


def _read_limits_in_background(context: Mapping[str, Any]) -> None:
    """Read the site's limits (``limits.Reading``) over the connection opened without prompting; a
    connection that needs a prompt leaves it to ``admit``."""
    from mrunner_slurm import limits, transport

    key = _reading_key(context)
    if key not in _READINGS:
        kept = dict(context)
        _READINGS[key] = limits.Reading(
            lambda: transport.warm(kept), kept.get("account"), kept.get("qos"), str(kept["storage_dir"])
        )


def _connect_in_background(context: Mapping[str, Any], prestart: bool) -> None:
    """Connect (without prompting) while the core composes the context, snapshots the code and records the
    sweep; with ``prestart`` (a submission, which makes several helper calls), then start the first helper
    (``remote.prestart``). Without it (`results`, whose one call may never come) no helper waits unused.
    A second call for the same host waits for the first one's connection (``transport.warm``)."""
    import threading

    key = (str(context["slurm_url"]), context.get("ssh_config"), prestart)
    if key in _CONNECTING:
        return
    _CONNECTING.add(key)
    threading.Thread(target=_warm, args=(dict(context), prestart), name="mrunner-slurm-connect", daemon=True).start()


def _warm(context: dict[str, Any], prestart: bool) -> None:
    from mrunner_slurm import remote, transport

    opened = transport.warm(context)
    if opened is not None and prestart:
        remote.prestart(opened)


@hookimpl
def mrunner_register_backends(register: Callable[[Backend], None]) -> None:
    register(SlurmBackend())
