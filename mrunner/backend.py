"""A backend is one object: a ``Backend`` subclass that runs experiments on one platform.

A plugin registers it through the hook ``mrunner_register_backends(register)`` (``register(MyBackend())``),
as llm's plugins register models. The core holds the object and calls its methods, typed, only for the
sweeps and contexts of its ``name``, so a method never checks ``sweep.backend``: when it is called, the
sweep is its own. The abstract methods are the operations every backend must have; the others have
defaults that say what their absence means. A subclass that misses an abstract method is refused when its
plugin loads.

Its context keys are declared once, as a dataclass (``keys``; see ``mrunner.schema.key``): the core checks
types, ranges and choices from that declaration before ``check`` is called, and `mrunner context show
--keys` and docs/context-keys.md show it.

What an experiment sees (its folder, working directory, checkpoint folder, config file, exit-code file and
environment) is not a backend's choice: ``mrunner.layout`` defines it once, and ``mrunner.attempt`` starts an
attempt that way where a backend runs it remotely. A backend decides only where the storage root lies.

The core never imports a backend's libraries: a backend's module imports paramiko, kubernetes or docker
inside the method that needs them, so ``mrunner --help`` and unrelated backends stay fast.

Records are written by the core only: a backend reports through the ``record`` callback it is given and
through its return values.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from mrunner.errors import MrunnerError

if TYPE_CHECKING:
    from pathlib import Path

    from mrunner.records import Run, RunUpdate, Sweep
    from mrunner.reporter import Reporter
    from mrunner.snapshot import Snapshot


@dataclass(frozen=True)
class SubmitOptions:
    """How the user asked to submit: ``detach`` returns at once (local: the sweep runs in the background).

    ``records`` is the records database this submission writes to: a backend whose experiments are watched by
    a process of its own (the local supervisor, which may outlive mrunner) records through
    ``mrunner.recorder.Recorder(records, sweep.id)``, the core's API for that, at the same records."""

    detach: bool = False
    records: str = ""


@dataclass(frozen=True)
class Pulled:
    """What ``Backend.pull`` brought: files written (new or changed), their bytes, and files already here
    unchanged (neither sent nor rewritten)."""

    files: int = 0
    bytes: int = 0
    unchanged: int = 0


@dataclass(frozen=True)
class Rendered:
    """One thing ``Backend.render`` shows: ``title``, one line saying what it is and where it would go;
    ``text``, its exact content (a batch script, a manifest in YAML, a command line)."""

    title: str
    text: str


@dataclass(frozen=True)
class Artefact:
    """One thing of mrunner's own that ``Backend.gc`` removed (or, in a dry run, would remove): ``kind`` (code
    folder, object, virtualenv, Secret, ...), ``where`` (a path or an object's name on the backend), and how
    many files and bytes it held (``0`` where the platform does not count them, as for a Kubernetes object)."""

    kind: str
    where: str
    files: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class Keep:
    """What ``Backend.gc`` must leave: ``sweeps``, the recorded sweeps some run of which is planned, queued or
    running (states refreshed from the backend) or that were created within ``older_than`` seconds. What a
    recorded sweep outside ``sweeps`` made may go at once: this machine's submissions wait for the collection
    (the core's lock), and record their sweep before they package. What no record of this machine names
    (another machine's, or a submission cut off) may go only once it is older than both ``older_than`` and
    ``grace`` seconds and nothing queued or running on the backend uses it."""

    sweeps: Sequence[Sweep]
    older_than: float
    grace: float


@dataclass(frozen=True)
class Login:
    """A shared authenticated connection that `mrunner login` opened and that is still up."""

    context_name: str  # the context it was opened for
    where: str  # the host as the user knows it, e.g. ``cluster (me@login.example.org:22)``
    opened_at: float  # epoch seconds
    persist: str  # how long it stays up after its last use, as the context said (``10h``)


@dataclass(frozen=True, kw_only=True)
class NoKeys:
    """The context keys of a backend that adds none to the core's."""


class Backend(abc.ABC):
    """One backend: the name contexts use in ``backend:``, its context keys, and its operations.

    Every method's docstring says when the core calls it, what each argument is and what it returns; an
    optional method's default says what its absence means.
    """

    #: The name contexts use in ``backend:`` (``local``, ``slurm``, ``kubernetes``, ...).
    name: ClassVar[str]
    #: One line saying what it does, for `mrunner plugins`.
    description: ClassVar[str] = ""
    #: Its context keys, declared once as a dataclass whose fields use ``mrunner.schema.key``. A field named
    #: as one of the core's keys (``mrunner.builtin.CoreKeys``) overrides that key's default and help for
    #: this backend; `mrunner context show --keys` and docs/context-keys.md say so.
    keys: ClassVar[type] = NoKeys
    #: How long after a run's recorded end its platform may start it again by itself (Slurm requeues a
    #: finished job it still keeps), in seconds: ``status`` gets as ``ended`` the runs that ended within it.
    #: The default, 0, is a platform that never does, whose ``status`` gets no ended run, so that a look at
    #: a large finished sweep reads only its unfinished runs.
    restarts_within: ClassVar[float] = 0.0
    #: Seconds between two looks at a sweep's states while mrunner follows it to its end (``--wait``,
    #: ``status --wait``, Hydra's launcher). Each look asks ``status`` of the unfinished runs: a platform whose
    #: look is a query of a remote service keeps the default; one whose look is cheap and on this machine may
    #: look more often, so that a wait ends soon after the sweep's last run.
    look_every: ClassVar[float] = 2.0

    # -- before submitting -----------------------------------------------------------------------------------

    def warm_up(self, context: Mapping[str, Any]) -> None:
        """Called first at a submission, before mrunner imports Hydra and composes the context. Optional.

        ``context``: the context file's own keys: not validated, and command-line overrides may still change
        them. Start slow preparations in the background here, e.g. open the connection. Never raise, block,
        or do anything a wrong guess would harm: ``check`` comes later with the real context. The default
        does nothing. Returns nothing.
        """
        return None

    def check(self, context: Mapping[str, Any], context_name: str, dry_run: bool) -> None:
        """Called once per submission, dry run and resume, after the context is validated against ``keys``
        and before anything is recorded, built or submitted. Optional.

        ``context``: the validated context (every key present, defaults filled in, types, ranges and choices
        checked); ``context_name``: its name, for messages; ``dry_run``: the check is for ``--dry-run``,
        which checks the same but reaches nothing: start no connection or preparation then. Raise
        ``MrunnerError`` with a one-line message naming what to fix (missing credentials, an unusable
        combination of keys, a value the platform refuses): nothing is undone later. The default checks
        nothing more than the declaration. Returns nothing.
        """
        return None

    def canonical(self, context: Mapping[str, Any]) -> Mapping[str, Any]:
        """Called by the core when it compares targets (an experiment's identity, so "already submitted", at a
        submission and a dry run), and by a backend's own ``gc`` to group its clusters. Optional.

        Returns the context with every key that names where it runs spelled one way: the same cluster written
        two ways (a host alias and ``user@alias``, an explicit default port) must be the same target. Resolve as the platform does (for ssh: the ssh config),
        reaching nothing (a dry run asks too); never raise: keep a spelling that cannot be resolved. Keys
        that only served to resolve (an ssh config's path) may be left out. The default returns ``context``
        as it is.
        """
        return context

    def ready(
        self, context: Mapping[str, Any], context_name: str, classes: Sequence[tuple[Mapping[str, Any], int]]
    ) -> None:
        """Called once per submission after the code is snapshot and just before the sweep is recorded: the
        last word before anything is recorded, for an answer ``check`` started asking in the background (a
        cluster's limits, whether its storage folder can be written) or one only the platform can give (would
        it accept each resource class). Optional.

        ``context``, ``context_name``: as ``check`` had them; ``classes``: each resource class the plan holds
        (its own resources over ``context``, empty for the context's own) with how many experiments ask for
        it, as planned (a repeated submission may record fewer). Raise ``MrunnerError`` (``Refused`` for the
        platform's refusal) with one line naming the key and what to fix: the submission stops with nothing
        recorded; ``RefusedAsPlanned`` for a refusal of the experiments' number alone (a site's job allowance),
        which the core asks again of the runs it would record when those are fewer (a repeated submission
        skips runs already submitted). The default refuses nothing. Returns nothing.
        """
        return None

    def plan(self, context: Mapping[str, Any], count: int) -> list[str]:
        """Called by ``--dry-run``: what the backend would do. Optional.

        ``context``: the validated context; ``count``: how many experiments the sweep has. Returns a few
        short lines (processes at a time, job arrays and their sizes, Jobs and image); what would be handed
        over itself is ``render``'s. The default returns none: the dry run shows no plan.
        """
        return []

    def render(
        self, sweep: Sweep, runs: Sequence[Run], snapshot: Snapshot, secret_names: Sequence[str]
    ) -> list[Rendered]:
        """Called by ``--dry-run`` after the checks: what a submission would hand to the backend (the batch
        script, the Job manifest), rendered by the code that submits it, so the dry run shows exactly that.
        Optional.

        ``sweep``: the sweep as a submission would record it, but not recorded: its ``id`` is the dry run's
        own (shown as ``<sweep id>``: a submission gets a new one); ``package`` and ``detail`` are empty,
        since neither ``package`` nor ``setup_resources`` ran. ``runs``: its experiments in order (planned,
        attempt 0), each built when it is indexed, so take only the ones you need from a large sweep; as if
        none repeated another or had been submitted before (the records are not read). ``snapshot``: the code
        snapshot, hashed as a submission hashes it but stored nowhere (use ``snapshot.files`` and
        ``snapshot.read``, never ``folder()``). ``secret_names``: the names of the secret variables the
        experiments would get; their values are not given, since a rendering must reference them as the real
        objects do. Render without side effects: build, upload and contact nothing. A value that only
        packaging or the backend decides is shown as a placeholder in angle brackets (``<home folder on the
        cluster>``). Returns the renderings, in the order a submission makes them. The default returns none:
        the dry run shows the plan and the commands alone.
        """
        return []

    # -- logging in ------------------------------------------------------------------------------------------

    def login(self, context: Mapping[str, Any], context_name: str) -> str:
        """Called by `mrunner login CONTEXT`: open a shared authenticated connection to the context's cluster
        that every later command, in any shell, reuses without asking (a one-time code is then asked once a
        day). Optional.

        ``context``: the validated context; ``context_name``: its name, for messages. Prompt in the terminal as
        the platform's own client would. Returns one line saying what is open and until when. The default
        refuses: the backend needs no login.
        """
        raise MrunnerError(f"context {context_name}: backend {self.name} needs no login")

    def logout(self, context: Mapping[str, Any], context_name: str) -> str:
        """Called by `mrunner logout CONTEXT`: close what ``login`` opened for the context's cluster. Optional.

        ``context``: the validated context; ``context_name``: its name. Returns one line saying what was closed
        (or that nothing was open). The default refuses, as ``login`` does.
        """
        raise MrunnerError(f"context {context_name}: backend {self.name} needs no login")

    def logins(self) -> list[Login]:
        """Called by `mrunner login` without a context, on every backend: the logins that are up. Optional.

        Returns a ``Login`` for each. The default returns none: the backend has no logins.
        """
        return []

    # -- submitting ------------------------------------------------------------------------------------------

    def admit(self, sweep: Sweep, runs: Sequence[Run], reporter: Reporter) -> dict[str, Any]:
        """Called at submission and resume before anything else reaches the platform (before ``package``
        uploads anything and before trackers hear of the sweep): decide what depends on the platform's
        limits, and refuse what it would not accept whole. Optional.

        ``sweep``: the recorded sweep (``sweep.detail`` holds what earlier admissions returned); ``runs``: the
        runs about to be handed over, as ``submit`` will get them. Raise ``mrunner.errors.Refused`` with one
        line naming the limit and the option to change when the platform would accept only part of them (a
        new sweep is then removed from the records: nothing is left of it; a resume's records are put back as
        they were before it). Returns facts merged into
        ``sweep.detail`` and recorded before ``package``: a decision ``submit`` must make the same way when the
        same runs are submitted again after an interruption (how runs are grouped into jobs, so that the
        jobs' deterministic names find the ones already accepted). The default admits everything and
        returns no facts.
        """
        return {}

    def identify(self, sweep: Sweep, snapshot: Snapshot) -> dict[str, Any]:
        """Called just before ``package`` whenever the sweep's code is new to it (a submission, `mrunner resume
        --current-code`, a resume of a sweep stopped before anything was recorded of its package), while the
        snapshot can still be read: what names the package and the experiments' environment, worked out from
        the snapshot and the context alone (an image's content tag, the requirements' content), uploading and
        building nothing, so that `resume` after a stop at any later moment, and whatever the user edited
        since, runs that code in that environment instead of working it out again from the edited project.
        Optional.

        ``sweep``: the recorded sweep (``sweep.context`` is validated); ``snapshot``: its code snapshot, which
        can be read (``snapshot.read``). Never read a secret. Returns JSON-serialisable facts recorded as
        ``sweep.detail["identified"]`` before ``package`` starts (as ``admit``'s are: decisions a later
        hand-over of the same code must make the same way); ``package``, ``packaged`` and ``setup_resources``
        read them there. A fact named ``requirements`` (a file's text) is shown by `status --json` only as its digest
        and line count (``mrunner.records.WITHHELD_FACTS``): it may hold an index URL's token. The default returns
        no facts.
        """
        return {}

    @abc.abstractmethod
    def package(self, sweep: Sweep, snapshot: Snapshot, reporter: Reporter) -> dict[str, Any]:
        """Called at submission and resume, before ``setup_resources``: make the code snapshot available where
        the experiments will run (upload it, build and push an image). Required.

        ``sweep``: the recorded sweep (``sweep.context`` is validated). ``snapshot``: the manifest
        ``snapshot.files`` (path -> (sha256, mode)); ``snapshot.read(path)`` gives a file's content, checked
        against its hash; ``snapshot.folder()`` freezes a read-only copy on this machine and returns it (only
        for a backend that needs a folder: copying costs time); ``mrunner.layout.working_entries(snapshot.files,
        sweep.workdir)`` says how each experiment's folder mirrors it. ``reporter``: progress and warnings for
        the user. Returns JSON-serialisable facts recorded as ``sweep.package`` (the remote code folder, the
        image reference; ``{}`` when there are none).
        """

    def packaged(self, sweep: Sweep, snapshot: Snapshot, reporter: Reporter) -> dict[str, Any] | None:
        """Called by `mrunner resume` (without ``--current-code``) instead of ``package`` when the sweep's code
        snapshot can no longer be read on this machine (no frozen copy, and a file of the project changed or
        is gone since the submission): whether what ``package`` made of this snapshot earlier is still where
        the experiments run, whole (an image in the registry, a code folder in the cluster's storage), so that
        the new attempts run the code the sweep was submitted with. Optional.

        ``sweep``: the recorded sweep; ``sweep.package`` holds what ``package`` returned, or is empty when an
        interruption came before it was recorded: then ``sweep.detail["identified"]`` holds what ``identify``
        recorded before ``package`` started, unless the stop came before that too (work out the name from the
        snapshot's manifest then).
        ``snapshot``: the snapshot as recorded: ``snapshot.files`` (path -> (sha256, mode)) can be read, but
        the content of a changed file cannot (``read`` refuses it; never call ``folder()``). ``reporter``:
        one line saying what the attempts run. Ask the platform; never upload or build anything, unless
        what ``identify`` recorded makes the snapshot whole again (its hash checks a recorded file's text: put
        it in ``snapshot.kept``), then package from it as ``package`` would. Returns the
        facts to record as ``sweep.package`` (as ``package`` returns them), or None when what was packaged is
        gone or cannot be trusted to be the snapshot (then `resume` is refused, naming ``--current-code``).
        Raise ``MrunnerError`` with one line when the platform cannot be asked. The default returns None: the
        backend runs only what this machine still holds (the local backend's frozen copy).
        """
        return None

    def setup_resources(self, sweep: Sweep, secrets: Mapping[str, str], reporter: Reporter) -> dict[str, Any]:
        """Called after ``package``: make sure what the experiments need exists (remote folders, a
        virtualenv, a namespace, a volume claim, the Secret holding ``secrets``). Optional.

        ``sweep``: the sweep with ``sweep.package`` filled in; ``secrets``: name -> value, to be delivered
        only into the experiments' environment; ``reporter``: progress for the user. Never delete or shrink
        what exists. Returns facts merged into ``sweep.detail`` and recorded. The default prepares nothing
        and returns no facts.
        """
        return {}

    @abc.abstractmethod
    def submit(
        self,
        sweep: Sweep,
        runs: Sequence[Run],
        secrets: Mapping[str, str],
        options: SubmitOptions,
        record: Callable[[Sequence[RunUpdate]], None],
        reporter: Reporter,
    ) -> None:
        """Called to hand ``runs`` (all in state ``planned``, each at its ``attempt``) to the backend. Required.

        ``sweep``: the sweep, packaged and prepared; ``runs``: what to start; ``secrets``: name -> value for
        the experiments' environment only; ``options``: how the user asked to submit (``detach``); ``record``:
        call it with ``RunUpdate``s (state ``submitted`` and the job reference) as soon as the backend has
        accepted each part, so that an interruption loses nothing: hand each part over and record it inside
        ``mrunner.interrupts.held()``, or a Ctrl-C between the two leaves an accepted job recorded as never
        submitted, which `resume` runs again. A backend that can ask its platform afterwards what a cut-off
        hand-over submitted gives ``held`` a ``stop``: the second interrupt then cuts the wait short, the
        backend records what the platform says it accepted and makes sure nothing more is, and a third
        interrupt raises ``mrunner.interrupts.Unsettled``, which leaves the runs not recorded ``planned`` for
        `resume` (as the Slurm backend does); a backend whose submission finds what exists by its name raises
        ``Unsettled`` itself when the second interrupt breaks in before the record (as the Kubernetes one does). A backend that runs experiments itself, like the local one,
        also records ``running`` and the end through ``record``. ``reporter``: progress for the user. Submitting
        the same run at the same ``attempt`` twice must not create a second job (deterministic names, or look
        before submitting): `mrunner resume` after an interruption relies on it. Raise ``BackendError`` with
        the backend's own message when it refuses; what was recorded before stays. Returns once every run is
        handed over.
        """

    # -- afterwards ------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def status(self, sweep: Sweep, runs: Sequence[Run], ended: Sequence[Run]) -> list[RunUpdate]:
        """Called by `mrunner status`, `resume` and ``--wait``, once per sweep that has a run not cancelled:
        the current state of ``runs``. Required.

        ``sweep``: the recorded sweep; ``runs``: its runs that have not ended (submitted, pending, running),
        possibly none; ``ended``: its runs that ended but were not cancelled, handed to the backend and recorded
        within ``restarts_within`` seconds, for a platform that may start a finished run again by itself
        (Slurm requeues a finished job it still keeps), which reports such a run's new attempt; always empty
        for a backend that never does (the default), which returns ``[]`` at once when ``runs`` is empty. Ask the
        backend in as few calls as possible (one per sweep). A run that ended reports its real end (completed
        or failed with its exit code, from the attempt's exit-code file of ``mrunner.layout`` where the
        scheduler has forgotten it), and a run the backend no longer knows and that left no exit code is
        ``lost``. A run the platform started again by itself (a Slurm requeue, a replaced pod) reports the new
        attempt's state with ``RunUpdate.attempt`` set to the new attempt and ``RunUpdate.ends`` saying how
        each earlier one ended (``preempted``, ``timeout``, ``lost``, ``failed`` for a failure retried within
        the context's ``retry_failed``, with its exit code in ``RunUpdate.end_codes``): the core records every
        attempt's end. Returns the changed states (an empty list: nothing changed).
        """

    @abc.abstractmethod
    def cancel(
        self, sweep: Sweep, runs: Sequence[Run], record: Callable[[Sequence[RunUpdate]], None]
    ) -> list[RunUpdate]:
        """Called by `mrunner cancel`: stop exactly ``runs`` (queued or running). Required.

        ``sweep``: the recorded sweep; ``runs``: the runs to stop; ``record``: records updates at once (a
        backend whose experiments report their own end records ``cancelled`` before it stops them, so that the
        end is not taken for a failure). A running experiment's process group gets SIGTERM and the context's
        ``grace_period`` to save before it is killed. Returns the new states; a run that had already ended
        before the cancel keeps its real end.
        """

    @abc.abstractmethod
    def logs(self, sweep: Sweep, run: Run, follow: bool, ended: Callable[[], bool]) -> Iterator[str]:
        """Called by `mrunner logs`: the experiment's output. Required.

        ``sweep``, ``run``: the recorded experiment (at the attempt asked for, by default its latest);
        ``follow``: keep yielding new output until the experiment ends; ``ended``: asks the records (refreshed
        through ``status``) whether the run has ended, for a backend that cannot tell by itself. Returns an
        iterator over chunks of text; it raises ``mrunner.errors.NoLog`` for an ended attempt that has no log
        (it never started, its log could not be written): the command adds the recorded reason.
        """

    @abc.abstractmethod
    def pull(
        self, sweep: Sweep, runs: Sequence[Run], destination: Path, include: Sequence[str], reporter: Reporter
    ) -> Pulled:
        """Called by `mrunner pull`: bring the experiment folders of ``runs`` to this machine. Required.

        ``sweep``: the recorded sweep; ``runs``: the experiments to bring (each was handed to the backend; it
        may still run: bring what exists so far). ``destination``: a local folder; experiment ``run`` goes to
        ``destination / layout.folder_name`` (``mrunner.layout.of_run(...)``), mirroring its experiment folder
        (``Layout.experiment_dir``) file for file. Leave out links (the contract's links into the code snapshot
        are the project's files, not results). ``include``: glob patterns (``fnmatch``, matched against the
        path relative to the experiment folder; ``*`` crosses ``/``); empty: every file. Send only files new or
        changed since the last pull (size and modification time differ from the local copy, whose time is set
        to the remote's), and write each file aside and rename it into place, so an interrupted pull leaves no
        half-written file and the next one completes it. ``mrunner.transfer`` does all of this for a backend
        that can run Python where the files are. ``reporter``: a progress bar for long pulls. Returns what was
        pulled.
        """

    def summaries(
        self, sweep: Sweep, runs: Sequence[Run], have: Mapping[str, list[int]], reporter: Reporter
    ) -> dict[str, tuple[int, int, bytes]] | None:
        """Called by `mrunner results` for its table (not for ``--curves``, nor where this machine uploads the
        metrics to a tracker: ``tracking: deferred``, live MLflow's catch-up): the summaries of the metrics
        files of ``runs`` instead of the files. Optional.

        ``have``: what this machine holds of each experiment's metrics file (``layout.folder_name`` ->
        [size, mtime_ns], the file's or its last summary's). Returns, for each experiment whose
        ``mrunner.layout.METRICS_FILE`` exists and differs from ``have`` (size and modification time, as
        ``pull`` decides), ``folder_name`` -> (size, mtime_ns, summary): the summary being
        ``mrunner.metrics.summarised`` of the file's first ``size`` bytes, made where the file is, so that a
        large sweep's table crosses the network as a short line per experiment and is parsed where the files
        are. ``mrunner.summaries.sender_source`` is ``mrunner.transfer``'s sender that does it (a request made
        with ``summarise=True``; the summaries arrive in ``Receiver.summaries``). The default returns None:
        `results` pulls the files (``pull``) and reads them here.
        """
        return None

    def output_dirs(self, sweep: Sweep, runs: Sequence[Run]) -> dict[int, str]:
        """Called by `mrunner status SWEEP/INDEX` and ``status SWEEP --json``: where each experiment's folder
        is on its backend, as the user would reach it (``HOST:PATH``, ``pvc/CLAIM:PATH``, a local path).
        Optional.

        ``sweep``, ``runs``: recorded. Answer from the records alone (no remote call). Returns index -> place.
        The default returns none: status shows no place.
        """
        return {}

    def gc(self, sweeps: Sequence[Sweep], keep: Keep, dry_run: bool, reporter: Reporter) -> list[Artefact]:
        """Called by `mrunner gc`: remove the backend's own artefacts that no sweep in ``keep`` needs. Optional.

        ``sweeps``: every recorded sweep of this backend (their contexts and packages say where the backend
        put things: clusters, storage folders, namespaces), none when it has no recorded sweep (it is called
        then too, for what it made that outlives a forgotten sweep: a local cache; the command shows it only
        when that returns something); ``keep``: what must stay (see ``Keep``); also keep
        what the backend itself says is queued or running (a sweep of another machine's records);
        ``dry_run``: remove nothing, list what would go. Never remove results (experiment folders, checkpoint
        folders, logs, exit codes): only what mrunner made to run experiments (code folders, content-store
        objects, environments, secrets and configuration objects, finished jobs). Be safe against a
        submission that packages at the same time (a lock the packaging step takes too, or ``keep.grace``). A
        place (a cluster, a namespace) that cannot be reached is left as it is with one ``reporter.warn`` line,
        and the others are collected: one retired cluster must not stop every collection. ``reporter``:
        progress. Returns what was (or would be) removed. The default removes nothing: the backend's sweeps
        leave nothing to collect.
        """
        return []
