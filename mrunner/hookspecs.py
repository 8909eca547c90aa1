"""Every hook mrunner calls. A plugin implements some of them with ``@mrunner.hookimpl``.

Two kinds of plugin answer them:

- A **backend** (local, slurm, kubernetes, third-party) returns the backends it serves from
  ``mrunner_backends``. The core calls the hooks for a sweep or a context of backend ``B`` on B's plugin
  only (and on the non-backend plugins), so an implementation never checks ``sweep.backend``: when it is
  called, the sweep is its own. A backend must implement every hook in ``BACKEND_REQUIRED``; the others are
  optional, and what an optional hook's absence means is said at each. A backend plugin that misses a required
  hook, or implements a hook name that is not declared here, is refused when it loads.
- A **tracker** (Neptune, W&B, ...) or the core's own plugin implements no ``mrunner_backends``; it answers
  the hooks called on every plugin (check, secrets, experiment env, sweep submitted, context keys) for every
  backend.

Hooks marked "first result" stop at the first plugin that returns something other than ``None``.

What an experiment sees (its folder, working directory, checkpoint folder, config file, exit-code file and
environment) is not a backend's choice: ``mrunner.layout`` defines it once, and ``mrunner.attempt`` starts an
attempt that way where a backend runs it remotely. A backend decides only where the storage root lies.

The core never imports a backend's libraries: a plugin's module imports paramiko, kubernetes or docker
inside the hook that needs them, so ``mrunner --help`` and unrelated backends stay fast.

Records are written by the core only: a backend reports through the ``record`` callback it is given and
through its return values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    from mrunner.records import Run, RunUpdate, Sweep
    from mrunner.reporter import Reporter
    from mrunner.schema import ContextKey
    from mrunner.snapshot import Snapshot

_F = TypeVar("_F", bound=Callable[..., Any])

hookspec = pluggy.HookspecMarker("mrunner")
#: Decorate a plugin's hook implementations with this. Typed so checkers keep the function's signature.
hookimpl: Callable[[_F], _F] = pluggy.HookimplMarker("mrunner")  # type: ignore[assignment]


@dataclass(frozen=True)
class BackendInfo:
    """A backend a plugin serves: the name contexts use in ``backend:`` and a one-line description."""

    name: str
    description: str


@dataclass(frozen=True)
class Login:
    """A shared authenticated connection that `mrunner login` opened and that is still up."""

    context_name: str  # the context it was opened for
    where: str  # the host as the user knows it, e.g. ``cluster (me@login.example.org:22)``
    opened_at: float  # epoch seconds
    persist: str  # how long it stays up after its last use, as the context said (``10h``)


#: The hooks every backend plugin must implement (checked when it loads).
BACKEND_REQUIRED = (
    "mrunner_backends",
    "mrunner_package",
    "mrunner_submit",
    "mrunner_status",
    "mrunner_cancel",
    "mrunner_logs",
    "mrunner_pull",
)


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
    """What ``mrunner_pull`` brought: files written (new or changed), their bytes, and files already here
    unchanged (neither sent nor rewritten)."""

    files: int = 0
    bytes: int = 0
    unchanged: int = 0


@dataclass(frozen=True)
class Rendered:
    """One thing ``mrunner_render`` shows: ``title``, one line saying what it is and where it would go;
    ``text``, its exact content (a batch script, a manifest in YAML, a command line)."""

    title: str
    text: str


@dataclass(frozen=True)
class Artefact:
    """One thing of mrunner's own that ``mrunner_gc`` removed (or, in a dry run, would remove): ``kind`` (code
    folder, object, virtualenv, Secret, ...), ``where`` (a path or an object's name on the backend), and how
    many files and bytes it held (``0`` where the platform does not count them, as for a Kubernetes object)."""

    kind: str
    where: str
    files: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class Keep:
    """What ``mrunner_gc`` must leave: ``sweeps``, the recorded sweeps some run of which is planned, queued or
    running (states refreshed from the backend) or that were created within ``older_than`` seconds. What a
    recorded sweep outside ``sweeps`` made may go at once: this machine's submissions wait for the collection
    (the core's lock), and record their sweep before they package. What no record of this machine names
    (another machine's, or a submission cut off) may go only once it is older than both ``older_than`` and
    ``grace`` seconds and nothing queued or running on the backend uses it."""

    sweeps: Sequence[Sweep]
    older_than: float
    grace: float


# -- what plugins provide ------------------------------------------------------------------------------------


@hookspec
def mrunner_backends() -> list[BackendInfo]:
    """Called once, when the plugin loads: which backends this plugin serves (usually one).

    Returns the ``BackendInfo`` of each. Implementing this hook makes a plugin a backend plugin, which must
    then implement every hook in ``BACKEND_REQUIRED``. A context naming a backend no plugin serves is an
    error that names the package to install.
    """


@hookspec
def mrunner_context_keys(backend: str) -> list[ContextKey]:
    """Called to validate a context of backend ``backend``, and by `mrunner context show` and `plugins`.

    ``backend``: the context's backend; the serving backend's plugin and every tracker are called.
    Returns the keys this plugin accepts in such a context (``None`` or no implementation: none). The core adds
    the keys every context has (``backend``, ``project``, ``python``, ``env``, ``secrets``, ``tags``,
    ``grace_period``, ``max_requeue``, ``retry_failed``). A backend key with a core key's name replaces it (a backend may give ``python`` another
    default). Unknown keys in a context are an error listing every accepted key.
    """


# -- before submitting ---------------------------------------------------------------------------------------


@hookspec
def mrunner_warm_up(context: Mapping[str, Any]) -> None:
    """Called first at a submission, before mrunner imports Hydra and composes the context.

    ``context``: the context file's own keys: not validated, and command-line overrides may still change
    them. Called on the plugin of the backend the file names and on every tracker. Optional.
    A backend may start slow preparations in the background here, e.g. open its connection. It must not
    raise, block, or do anything a wrong guess would harm: ``mrunner_check`` comes later with the real
    context. Returns nothing.
    """


@hookspec
def mrunner_check(context: Mapping[str, Any], context_name: str, dry_run: bool) -> None:
    """Called once per submission, dry run and resume, after the context is validated and before anything
    is recorded, built or submitted.

    ``context``: the validated context (every key present, defaults filled in); ``context_name``: its name,
    for messages; ``dry_run``: the check is for ``--dry-run``, which checks the same but reaches nothing:
    start no connection or preparation then. Called on the context's backend plugin and on every tracker.
    Optional.
    Raise ``MrunnerError`` with a one-line message naming what to fix (missing credentials, an unusable
    combination of keys, a value the platform refuses): every backend key should be checked here, since
    nothing is undone later. Returns nothing.
    """


@hookspec(firstresult=True)
def mrunner_plan(context: Mapping[str, Any], count: int) -> list[str] | None:
    """Called by ``--dry-run``: describe what the backend would do.

    ``context``: the validated context; ``count``: how many experiments the sweep has. Returns a few short
    lines (processes at a time, job arrays and their sizes, Jobs and image); what would be handed over
    itself is ``mrunner_render``'s. Optional: without it the dry run shows no plan. First result.
    """


@hookspec(firstresult=True)
def mrunner_render(
    sweep: Sweep, runs: Sequence[Run], snapshot: Snapshot, secret_names: Sequence[str]
) -> list[Rendered] | None:
    """Called by ``--dry-run`` after the checks: what a submission would hand to the backend (the batch
    script, the Job manifest), rendered by the code that submits it, so the dry run shows exactly that.

    ``sweep``: the sweep as a submission would record it, but not recorded: its ``id`` is the dry run's own
    (shown as ``<sweep id>``: a submission gets a new one); ``package`` and ``detail`` are empty, since
    neither packaging nor ``mrunner_setup_resources`` ran. ``runs``: its experiments in order (planned,
    attempt 0), each built when it is indexed, so take only the ones you need from a large sweep; as if none
    repeated another or had been submitted before (the records are not read). ``snapshot``: the code
    snapshot, hashed as a submission hashes it but stored nowhere (use ``snapshot.files`` and
    ``snapshot.read``, never ``folder()``). ``secret_names``: the names of the secret variables the
    experiments would get; their values are not given, since a rendering must reference them as the real
    objects do. Render without side effects: build, upload and contact nothing. A value that only packaging
    or the backend decides is shown as a placeholder in angle brackets (``<home folder on the cluster>``).
    Returns the renderings, in the order a submission makes them. Optional: without it the dry run shows
    the plan and the commands alone. First result.
    """


@hookspec
def mrunner_secrets(context: Mapping[str, Any]) -> dict[str, str]:
    """Called at submission and resume: secret environment variables the experiments need.

    ``context``: the sweep's validated context. Returns ``{name: value}`` (``None``: none), e.g. a tracker's
    API token. Every plugin is called; the results are merged with the variables the context lists under
    ``secrets``. Secrets are never recorded and never shown: a backend must deliver them only into the
    experiment's own environment (a child's environment, a user-only file read at job start, a Kubernetes
    Secret), never on a command line, in a batch script, a log, an image layer or a manifest.
    """


@hookspec
def mrunner_experiment_env(context: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, str]:
    """Called for each experiment when a sweep is recorded: non-secret environment variables for it.

    ``context``: the validated context; ``parameters``: the experiment's parameters. Returns
    ``{name: value}`` (``None``: none), e.g. ``NEPTUNE_PROJECT``; recorded with the experiment and part of
    its identity. Called on the context's backend plugin and every tracker.
    """


# -- submitting ----------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def mrunner_package(sweep: Sweep, snapshot: Snapshot, reporter: Reporter) -> dict[str, Any] | None:
    """Called at submission and resume, before ``mrunner_setup_resources``: make the code snapshot
    available where the experiments will run (upload it, build and push an image). Required.

    ``sweep``: the recorded sweep (``sweep.context`` is validated). ``snapshot``: the manifest
    ``snapshot.files`` (path -> (sha256, mode)); ``snapshot.read(path)`` gives a file's content, checked
    against its hash; ``snapshot.folder()`` freezes a read-only copy on this machine and returns it (only for
    a backend that needs a folder: copying costs time); ``mrunner.layout.working_entries(snapshot.files,
    sweep.workdir)`` says how each experiment's folder mirrors it. ``reporter``: progress and warnings for
    the user. Returns JSON-serialisable facts recorded as ``sweep.package`` (the remote code folder, the
    image reference; ``{}`` when there are none). First result.
    """


@hookspec(firstresult=True)
def mrunner_setup_resources(sweep: Sweep, secrets: Mapping[str, str], reporter: Reporter) -> dict[str, Any] | None:
    """Called after ``mrunner_package``: make sure what the experiments need exists (remote folders, a
    virtualenv, a namespace, a volume claim, the Secret holding ``secrets``). Never delete or shrink what
    exists.

    ``sweep``: the sweep with ``sweep.package`` filled in; ``secrets``: name -> value, to be delivered only
    into the experiments' environment; ``reporter``: progress for the user. Returns facts merged into
    ``sweep.detail`` and recorded. Optional: without it (or returning ``None``) nothing is prepared.
    First result.
    """


@hookspec(firstresult=True)
def mrunner_submit(
    sweep: Sweep,
    runs: Sequence[Run],
    secrets: Mapping[str, str],
    options: SubmitOptions,
    record: Callable[[Sequence[RunUpdate]], None],
    reporter: Reporter,
) -> bool | None:
    """Called to hand ``runs`` (all in state ``planned``, each at its ``attempt``) to the backend. Required.

    ``sweep``: the sweep, packaged and prepared; ``runs``: what to start; ``secrets``: name -> value for the
    experiments' environment only; ``options``: how the user asked to submit (``detach``); ``record``: call
    it with ``RunUpdate``s (state ``submitted`` and the job reference) as soon as the backend has accepted
    each part, so that an interruption loses nothing: hand each part over and record it inside
    ``mrunner.interrupts.held()``, or a Ctrl-C between the two leaves an accepted job recorded as never
    submitted, which `resume` runs again (a backend that runs experiments itself, like the local one, also
    records ``running`` and the end through ``record``); ``reporter``: progress for the user.
    Submitting the same run at the same ``attempt`` twice must not create a second job (deterministic
    names, or look before submitting): `mrunner resume` after an interruption relies on it. Raise
    ``BackendError`` with the backend's own message when it refuses; what was recorded before stays.
    Returns ``True`` once every run is handed over. First result.
    """


# -- afterwards ----------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def mrunner_status(sweep: Sweep, runs: Sequence[Run], ended: Sequence[Run]) -> list[RunUpdate] | None:
    """Called by `mrunner status`, `resume` and ``--wait``: the current state of ``runs``. Required.

    ``sweep``: the recorded sweep; ``runs``: its runs that have not ended (submitted, pending, running).
    ``ended``: its runs that ended but were not cancelled, for a platform that may start a finished run again
    by itself (Slurm requeues a finished job it still keeps): a backend whose implementation takes this
    argument is called also when no run is active, and reports such a run's new attempt; one that does not
    take it is called only for active runs. Ask the backend in as few calls as possible (one per sweep). A run that ended reports its real end
    (completed or failed with its exit code, from the attempt's exit-code file of ``mrunner.layout`` where the
    scheduler has forgotten it), and a run the backend no longer knows and that left no exit code is
    ``lost``. A run the platform started again by itself (a Slurm requeue, a replaced pod) reports the new
    attempt's state with ``RunUpdate.attempt`` set to the new attempt and ``RunUpdate.ends`` saying how each
    earlier one ended (``preempted``, ``timeout``, ``lost``, ``failed`` for a failure retried within the context's
    ``retry_failed``, with its exit code in ``RunUpdate.end_codes``): the core records every attempt's end. Returns the changed states (an empty list: nothing changed). First result.
    """


@hookspec(firstresult=True)
def mrunner_cancel(
    sweep: Sweep, runs: Sequence[Run], record: Callable[[Sequence[RunUpdate]], None]
) -> list[RunUpdate] | None:
    """Called by `mrunner cancel`: stop exactly ``runs`` (queued or running). Required.

    ``sweep``: the recorded sweep; ``runs``: the runs to stop; ``record``: records updates at once (a backend
    whose experiments report their own end records ``cancelled`` before it stops them, so that the end is
    not taken for a failure). A running experiment's process group gets SIGTERM and the context's
    ``grace_period`` to save before it is killed. Returns the new states; a run that had already ended
    before the cancel keeps its real end. First result.
    """


@hookspec(firstresult=True)
def mrunner_logs(sweep: Sweep, run: Run, follow: bool, ended: Callable[[], bool]) -> Iterator[str] | None:
    """Called by `mrunner logs`: the experiment's output. Required.

    ``sweep``, ``run``: the recorded experiment (at its latest attempt); ``follow``: keep yielding new output
    until the experiment ends; ``ended``: asks the records (refreshed through ``mrunner_status``) whether the
    run has ended, for a backend that cannot tell by itself. Returns an iterator over chunks of text.
    First result.
    """


@hookspec(firstresult=True)
def mrunner_pull(
    sweep: Sweep, runs: Sequence[Run], destination: Path, include: Sequence[str], reporter: Reporter
) -> Pulled | None:
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
    pulled. First result.
    """


@hookspec(firstresult=True)
def mrunner_output_dirs(sweep: Sweep, runs: Sequence[Run]) -> dict[int, str] | None:
    """Called by `mrunner status SWEEP/INDEX` and ``status SWEEP --json``: where each experiment's folder is
    on its backend, as the user would reach it (``HOST:PATH``, ``pvc/CLAIM:PATH``, a local path).

    ``sweep``, ``runs``: recorded. Answer from the records alone (no remote call). Returns index -> place.
    Optional: without it status shows no place. First result.
    """


@hookspec
def mrunner_gc(sweeps: Sequence[Sweep], keep: Keep, dry_run: bool, reporter: Reporter) -> list[Artefact]:
    """Called by `mrunner gc`: remove the backend's own artefacts that no sweep in ``keep`` needs.

    ``sweeps``: every recorded sweep of this backend (their contexts and packages say where the backend put
    things: clusters, storage folders, namespaces); ``keep``: what must stay (see ``Keep``); also keep what
    the backend itself says is queued or running (a sweep of another machine's records); ``dry_run``: remove
    nothing, list what would go. Never remove results (experiment folders, checkpoint folders, logs, exit
    codes): only what mrunner made to run experiments (code folders, content-store objects, environments,
    secrets and configuration objects, finished jobs). Be safe against a submission that packages at the
    same time (a lock the packaging step takes too, or ``keep.grace``). A place (a cluster, a namespace) that
    cannot be reached is left as it is with one ``reporter.warn`` line, and the others are collected: one
    retired cluster must not stop every collection. ``reporter``: progress. Returns what was (or would be)
    removed. Optional: without it the backend's sweeps leave nothing to collect.
    """


@hookspec
def mrunner_sweep_submitted(sweep: Sweep, runs: Sequence[Run], reporter: Reporter) -> None:
    """Called when a submission or resume is about to hand its runs to ``mrunner_submit`` (packaging and
    resources are ready): tell the user where to look, e.g. a tracker prints the link to the sweep in its UI.

    ``sweep``: the sweep; ``runs``: the runs about to be handed over; ``reporter``: where to say it. Called
    before the submit hook because a local sweep runs inside it. Called on the sweep's backend plugin and
    every tracker. Returns nothing.
    """


# -- logging in ----------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def mrunner_login(context: Mapping[str, Any], context_name: str) -> str | None:
    """Called by `mrunner login CONTEXT`: open a shared authenticated connection to the context's cluster that
    every later command, in any shell, reuses without asking (a one-time code is then asked once a day).

    ``context``: the validated context; ``context_name``: its name, for messages. Prompt in the terminal as
    the platform's own client would. First result: one line saying what is open and until when. Optional:
    without it, the backend needs no login and `mrunner login` says so.
    """


@hookspec(firstresult=True)
def mrunner_logout(context: Mapping[str, Any], context_name: str) -> str | None:
    """Called by `mrunner logout CONTEXT`: close what ``mrunner_login`` opened for the context's cluster.

    ``context``: the validated context; ``context_name``: its name. First result: one line saying what was
    closed (or that nothing was open). Optional, like ``mrunner_login``.
    """


@hookspec
def mrunner_logins() -> list[Login]:
    """Called by `mrunner login` without a context, on every plugin: the logins that are up.

    Returns a ``Login`` for each. Optional: a plugin without it has none.
    """
