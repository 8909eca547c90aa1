"""Every hook mrunner calls on its plugins. A plugin implements some of them with ``@mrunner.hookimpl``.

Two kinds of plugin answer them:

- A **backend plugin** registers its ``mrunner.Backend`` objects through ``mrunner_register_backends`` (one
  hook, as llm's ``register_models``). The core then calls the backend's methods, typed, for its own sweeps
  and contexts; what each method gets and returns is documented in ``mrunner/backend.py``. A plugin that
  implements the per-operation hooks of earlier mrunner versions (``mrunner_backends``, ``mrunner_submit``,
  ...) is refused when it loads, with a line pointing to docs/write-a-backend.md.
- A **tracker** (Neptune, W&B, ...) or the core's own plugin answers the hooks called on every plugin
  (check, secrets, experiment env, sweep submitted, context keys, warm-up) for every backend.

A plugin that implements a hook name not declared here is refused when it loads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

if TYPE_CHECKING:
    from mrunner.backend import Backend
    from mrunner.records import Run, Sweep
    from mrunner.reporter import Reporter

_F = TypeVar("_F", bound=Callable[..., Any])

hookspec = pluggy.HookspecMarker("mrunner")
#: Decorate a plugin's hook implementations with this. Typed so checkers keep the function's signature.
hookimpl: Callable[[_F], _F] = pluggy.HookimplMarker("mrunner")  # type: ignore[assignment]


# -- what plugins provide ------------------------------------------------------------------------------------


@hookspec
def mrunner_register_backends(register: Callable[[Backend], None]) -> None:
    """Called once, when the plugin loads: register the backends this plugin serves (usually one).

    ``register``: call it with each backend object, ``register(MyBackend())``; a backend's module stays
    light (heavy imports inside its methods), since every plugin loads at every `mrunner` command. A
    backend class that misses one of ``Backend``'s abstract methods is refused with one line naming the
    distribution; of two plugins serving the same name, the first loaded keeps it. A context naming a backend no plugin
    registers is an error that names the package to install. Returns nothing.
    """


@hookspec
def mrunner_context_keys() -> type | None:
    """Called to validate a context, and by `mrunner context show --keys` and the docs: the keys a tracker
    adds to every context, whatever its backend.

    Returns a dataclass declaring the keys with ``mrunner.schema.key``
    (``None``: none). A backend declares its own keys as ``Backend.keys`` instead; the core's keys
    (``mrunner.builtin.CoreKeys``) come first, a tracker's next, the backend's last (a backend's key of a
    core key's name overrides its default). Unknown keys in a context are an error listing every accepted
    key.
    """


# -- before submitting ---------------------------------------------------------------------------------------


@hookspec
def mrunner_warm_up(context: Mapping[str, Any]) -> None:
    """Called first at a submission, before mrunner imports Hydra and composes the context, after the
    backend's ``Backend.warm_up``.

    ``context``: the context file's own keys: not validated, and command-line overrides may still change
    them. A tracker may start slow preparations in the background here. It must not raise, block, or do
    anything a wrong guess would harm: ``mrunner_check`` comes later with the real context. Returns nothing.
    """


@hookspec
def mrunner_check(context: Mapping[str, Any], context_name: str, dry_run: bool) -> None:
    """Called once per submission, dry run and resume, after the context is validated and the backend's
    ``Backend.check`` passed, before anything is recorded, built or submitted.

    ``context``: the validated context (every key present, defaults filled in); ``context_name``: its name,
    for messages; ``dry_run``: the check is for ``--dry-run``, which checks the same but reaches nothing.
    Raise ``MrunnerError`` with a one-line message naming what to fix (missing credentials, an unusable
    combination of keys). Returns nothing.
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
    its identity.
    """


@hookspec
def mrunner_sweep_submitted(sweep: Sweep, runs: Sequence[Run], reporter: Reporter) -> None:
    """Called when a submission or resume is about to hand its runs to ``Backend.submit`` (packaging and
    resources are ready): tell the user where to look, e.g. a tracker prints the link to the sweep in its UI.

    ``sweep``: the sweep; ``runs``: the runs about to be handed over; ``reporter``: where to say it. Called
    before ``Backend.submit`` because a local sweep runs inside it. Returns nothing.
    """
