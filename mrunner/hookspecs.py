"""Every hook mrunner calls. A plugin implements some of them with ``@mrunner.hookimpl``.

Backends (local, slurm, kubernetes, third-party) serve contexts whose ``backend`` key names them: each of
their hooks first checks ``sweep.backend`` (or ``context["backend"]``) and returns ``None`` for any other
backend. Hooks marked "first result" stop at the first plugin that returns something other than ``None``.
Trackers (Neptune, ...) answer for every backend.

The core never imports a backend's libraries: a plugin's module imports paramiko, kubernetes or docker
inside the hook that needs them, so ``mrunner --help`` and unrelated backends stay fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

if TYPE_CHECKING:
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
class SubmitOptions:
    """How the user asked to submit: ``detach`` returns at once (local: the sweep runs in the background)."""

    detach: bool = False


# -- what plugins provide ------------------------------------------------------------------------------------


@hookspec
def mrunner_backends() -> list[BackendInfo]:
    """Called when mrunner needs to know which backends are installed.

    Return the backends this plugin serves (usually one). A context naming a backend no plugin serves is an
    error that names the package to install.
    """


@hookspec
def mrunner_context_keys(backend: str) -> list[ContextKey]:
    """Called to validate a context of backend ``backend``, and by `mrunner context show` / `plugins`.

    A backend returns its keys when ``backend`` is its own name (and ``None`` otherwise); a tracker returns
    its keys for every backend. The core adds the keys every context has (``backend``, ``project``,
    ``python``, ``env``, ``secrets``, ``tags``). A backend key with the same name as a core key replaces it
    (a backend may give ``python`` another default). Unknown keys in a context are an error listing these.
    """


# -- before submitting ---------------------------------------------------------------------------------------


@hookspec
def mrunner_warm_up(context: Mapping[str, Any]) -> None:
    """Called first at a submission, before mrunner imports Hydra and composes the context (~0.15 s), with
    the context file's own keys: not validated, and command-line overrides may still change them.

    A backend may start slow preparations in the background here, e.g. open its connection. It must not
    raise, block, or do anything a wrong guess would harm; ``mrunner_check`` comes later with the real
    context. Every plugin is called.
    """


@hookspec
def mrunner_check(context: Mapping[str, Any], context_name: str) -> None:
    """Called once per submission (and dry run), after the context is validated, before anything is recorded.

    Raise ``MrunnerError`` with a one-line message naming what to fix (missing credentials, an unusable
    combination of keys). Every plugin is called.
    """


@hookspec(firstresult=True)
def mrunner_plan(context: Mapping[str, Any], count: int) -> list[str] | None:
    """Called by ``--dry-run``: describe, in a few short lines, what the backend would do with ``count``
    experiments (processes at a time, job arrays and their sizes, Jobs and image). First result.
    """


@hookspec
def mrunner_secrets(context: Mapping[str, Any]) -> dict[str, str]:
    """Called at submission and resume: return secret environment variables the experiments need
    (name -> value), e.g. a tracker's API token. Every plugin is called; the results are merged with the
    variables the context lists under ``secrets``.

    Secrets are never recorded and never shown: a backend must deliver them only into the experiment's
    own environment (a child's environment, a user-only file read at job start, a Kubernetes Secret).
    """


@hookspec
def mrunner_experiment_env(context: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, str]:
    """Called for each experiment when a sweep is recorded: return non-secret environment variables for it
    (e.g. ``NEPTUNE_PROJECT``). They are recorded with the experiment. Every plugin is called.
    """


# -- submitting ----------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def mrunner_package(sweep: Sweep, snapshot: Snapshot, reporter: Reporter) -> dict[str, Any] | None:
    """Called at submission and resume, before ``mrunner_setup_resources``: make the code snapshot
    available where the experiments will run: upload it, build and push an image. ``snapshot.files`` is
    the manifest (path -> (sha256, mode)); ``snapshot.read(path)`` gives a file's content, checked against
    its hash; ``snapshot.folder()`` freezes a copy on this machine and returns it (only for a backend that
    needs a folder: copying costs time). Return JSON-serialisable facts to record on the sweep
    (``sweep.package``), e.g. the remote code directory or the image reference. First result.
    """


@hookspec(firstresult=True)
def mrunner_setup_resources(sweep: Sweep, secrets: Mapping[str, str], reporter: Reporter) -> dict[str, Any] | None:
    """Called after ``mrunner_package``: make sure what the experiments need exists (remote directories,
    a virtualenv, a namespace, a volume claim, the Secret holding ``secrets``). Never delete or shrink what
    exists. Return facts to merge into ``sweep.detail``. First result.
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
    """Called to hand ``runs`` (all in state ``planned``) to the backend. Return ``True`` when handled.

    Call ``record`` with updates (state ``submitted`` and the job reference) as soon as the backend has
    accepted each part, so that an interruption loses nothing. Submitting the same run at the same
    ``attempt`` twice must not create a second job (deterministic names, or look before submitting):
    `mrunner resume` after an interruption relies on it. Raise ``BackendError`` with the backend's own
    message when it refuses; what was recorded before stays. First result.
    """


# -- afterwards ----------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def mrunner_status(sweep: Sweep, runs: Sequence[Run]) -> list[RunUpdate] | None:
    """Called by `mrunner status`, `resume` and ``--wait``: return the current state of ``runs`` (the
    sweep's runs that have not ended), in as few calls to the backend as possible (one per sweep).
    An empty list means nothing changed. First result.
    """


@hookspec(firstresult=True)
def mrunner_cancel(sweep: Sweep, runs: Sequence[Run]) -> list[RunUpdate] | None:
    """Called by `mrunner cancel`: stop exactly ``runs`` (queued or running) and return their new states.
    First result.
    """


@hookspec(firstresult=True)
def mrunner_logs(sweep: Sweep, run: Run, follow: bool) -> Iterator[str] | None:
    """Called by `mrunner logs`: return an iterator over the experiment's output (chunks of text); with
    ``follow`` it ends when the experiment ends. First result.
    """


@hookspec
def mrunner_sweep_submitted(sweep: Sweep, runs: Sequence[Run], reporter: Reporter) -> None:
    """Called when a submission or resume is about to hand its runs to ``mrunner_submit`` (packaging and
    resources are ready): tell the user where to look, e.g. a tracker prints the link to the sweep in its
    UI. Called before the submit hook because a local sweep runs inside it. Every plugin is called.
    """
