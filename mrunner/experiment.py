"""An experiment as a spec describes it: a script, its parameters, and what surrounds them."""

from __future__ import annotations

import functools
import hashlib
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mrunner.errors import MrunnerError

BARE_PYTHONS = ("python", "python3")


@dataclass
class Experiment:
    """One point of a grid. ``script`` is a ``.py`` path (relative to where you run mrunner) or a shell
    command such as ``python3 train.py --fast``; a leading ``.py`` path, or a leading bare ``python`` or
    ``python3``, is run with the context's ``python``.

    ``exclude`` (gitignore patterns) and ``paths_to_copy`` shape the code snapshot, which a sweep shares:
    the sweep uses the union of its experiments' lists. ``overrides`` are what a Hydra app receives on its
    command line, in Hydra's grammar (the plan sets them: see ``grid.hydra_point``). ``resources`` are
    context keys this experiment asks for differently from the context (``{"mem": "32G", "gpu": 2}``): only
    keys the backend declares per point (resources), checked when the sweep is planned; experiments of the
    same resources are submitted together (one Slurm job array per class).
    """

    script: str
    parameters: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    project: str | None = None
    tags: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    script_args: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    paths_to_copy: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.script, str) or not self.script.strip():
            raise MrunnerError(f"experiment {self.name or '?'}: script must be a non-empty string, got {self.script!r}")
        if not isinstance(self.parameters, Mapping):
            raise MrunnerError(f"experiment {self.name or self.script}: parameters must be a mapping")
        self._check_parameters()
        if not isinstance(self.resources, Mapping) or not all(isinstance(k, str) for k in self.resources):
            raise MrunnerError(
                f"experiment {self.name or self.script}: resources must be a mapping of context keys to values, "
                f"such as {{'mem': '32G'}}"
            )
        if type(self.tags) is not list or not all(type(tag) is str for tag in self.tags):
            self.tags = tag_list(self.tags, f"experiment {self.name or self.script}: ")
        bad_env = [k for k, v in self.env.items() if not isinstance(v, str)]
        if bad_env:
            raise MrunnerError(f"experiment {self.name or self.script}: env value of {bad_env[0]} must be a string")

    def _check_parameters(self) -> None:
        try:
            _IDENTITY_ENCODER.encode(self.parameters)  # sorted, as the experiment's identity encodes them
        except (TypeError, ValueError) as error:
            if "not supported between instances" in str(error):  # names that do not sort: 3 beside 'a'
                problem = f"parameter names of one mapping must all be strings (they mix types: {error})"
            else:
                problem = f"parameters must be plain data (numbers, strings, booleans, None, lists, mappings): {error}"
            raise MrunnerError(f"experiment {self.name or self.script}: {problem}") from None

    def at_point(self, parameters: dict[str, Any], **changes: Any) -> Experiment:
        """A copy of this experiment (checked when it was made) with a grid point's ``parameters`` and
        ``changes`` (its overrides, resources): only the parameters are checked again, which is what a point
        changes that can be wrong. ``dataclasses.replace`` would check every field of every point again."""
        point = object.__new__(Experiment)
        point.__dict__.update(self.__dict__, parameters=parameters, **changes)
        point._check_parameters()
        return point

    @property
    def script_tokens(self) -> list[str]:
        try:
            return list(_split(self.script))
        except ValueError as error:
            raise MrunnerError(f"script {self.script!r}: {error}") from None

    @property
    def python_file(self) -> str | None:
        """The ``.py`` file the script runs, when there is one (``train.py`` or ``python3 train.py``)."""
        tokens = self.script_tokens
        for token in tokens[:2]:
            if token.endswith(".py"):
                return token
        return None

    def command(self, python: str, hydra_app: bool) -> list[str]:
        """The argv that runs this experiment; a Hydra app also gets its ``overrides``."""
        tokens = self.script_tokens
        if tokens[0].endswith(".py"):  # `-x.py` is a file: `python -x.py` would read it as options
            tokens = [python, f"./{tokens[0]}" if tokens[0].startswith("-") else tokens[0], *tokens[1:]]
        elif tokens[0] in BARE_PYTHONS:  # `python3 -m pkg.run`: the context's interpreter, not whichever is on PATH
            tokens = [python, *tokens[1:]]
        if hydra_app:
            tokens += self.overrides
        return tokens + list(self.script_args)


# The same output as json.dumps(..., sort_keys=True, separators=(",", ":")), without a new encoder per call.
_IDENTITY_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def tag_list(tags: Any, where: str = "") -> list[str]:
    """``tags`` as a list of strings. A string alone is refused naming the list to write: ``list("baseline")``
    made eight one-letter tags without a word."""
    if isinstance(tags, str) or not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) for t in tags):
        fix = f": write tags=[{tags!r}] for one tag" if isinstance(tags, str) else ", such as tags=['baseline']"
        raise MrunnerError(f"{where}tags must be a list of strings, got {type(tags).__name__} {tags!r}{fix}")
    return list(tags)


@functools.lru_cache(maxsize=64)
def _split(script: str) -> tuple[str, ...]:
    """A script's words, split once however many grid points share it (shlex is slow: 20 us a call)."""
    return tuple(shlex.split(script))


#: Context keys that change neither where an experiment runs nor with what, so a sweep that differs only in
#: them repeats the earlier one: how many run at once (``max_parallel``, ``array_parallelism``), how a stop
#: or a failure is handled (``grace_period``, ``max_requeue``, ``retry_failed``), labels (``tags``), which
#: secrets are forwarded (their values are never recorded), where results are tracked (the trackers' keys,
#: ``tracking``), the guards asked at submission (``max_experiments``, ``max_snapshot_mb``), the way to the
#: cluster rather than which (``ssh``, ``login_persist``), and how the image is built and pushed rather than
#: what it holds (``docker_host``, ``build_network``, the registry's credentials). Every other key is the target: the cluster, its storage, the resources, the
#: interpreter and environment set-up, so changing one of them is a new run, not a repeat.
NOT_TARGET = frozenset(
    {
        "max_parallel",
        "array_parallelism",
        "max_experiments",  # guards asked at submission
        "max_snapshot_mb",
        "tracking",  # a tracker's, as the trackers' own keys below
        "ssh",  # the way to the cluster, not which cluster
        "login_persist",
        "grace_period",
        "max_requeue",
        "retry_failed",
        "tags",
        "secrets",
        "neptune",
        "neptune_project",
        "neptune_mode",
        "mlflow",
        "mlflow_experiment",
        "mlflow_tracking_uri",
        "wandb",
        "wandb_entity",
        "wandb_mode",
        "wandb_project",
        "docker_host",
        "build_network",
        "registry_username",
        "registry_password_env",
        "image_pull_secret",
        "env",
    }
)


def target(context: Mapping[str, Any]) -> dict[str, Any]:
    """Where and with what a context runs its experiments, as part of their identity: every key but
    ``NOT_TARGET`` (``env`` is the experiment's own environment, already in its identity). A key left unset
    is left out, so a key that a later mrunner adds without a value keeps earlier identities."""
    return {key: value for key, value in context.items() if key not in NOT_TARGET and value is not None}


def identity(
    command: Sequence[str],
    parameters: Mapping[str, Any],
    env: Mapping[str, str],
    snapshot: str,
    where: Mapping[str, Any],
) -> str:
    """The experiment's stable identity: the same command, parameters, environment, code and target
    (``target``: the cluster, storage and resources, of the context as its backend spells it one way,
    ``Backend.canonical``) give the same id."""
    document = _IDENTITY_ENCODER.encode(
        {"command": list(command), "parameters": parameters, "env": dict(env), "snapshot": snapshot, "target": where}
    )
    return hashlib.sha256(document.encode()).hexdigest()[:16]
