"""Contexts and mrunner's own settings.

A context is an option of the Hydra config group ``context``: the user's files in
``$XDG_CONFIG_HOME/mrunner/context/`` come first on the search path, then the examples shipped in ``conf/``.
It is composed with Hydra, so ``context.KEY=VALUE``, ``+context.KEY=VALUE`` and ``~context.KEY`` on the
command line work as in any Hydra app. ``config.yaml`` beside the contexts holds ``current_context``.
"""

from __future__ import annotations

import copy
import errno
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from mrunner import paths
from mrunner.errors import MrunnerError, os_error

DEFAULT_CONTEXT = "local"


class _Loader(yaml.SafeLoader):
    """YAML as a person reads it: ``2:00:00`` and ``1:30`` stay strings (a Slurm time), where YAML 1.1 (PyYAML,
    and OmegaConf, which Hydra composes contexts with) reads base-60 numbers: 7200, which Slurm takes as minutes."""


_NUMBERS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, re.compile(r"^(?![^\n]*:)" + pattern.pattern[1:], pattern.flags) if tag in _NUMBERS else pattern)
        for tag, pattern in resolvers
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader, with numbers that hold no colon


SETTINGS = {"current_context": "the context used when a command names none"}


def user_context_dir() -> Path:
    return paths.config_dir() / "context"


def settings_file() -> Path:
    return paths.config_dir() / "config.yaml"


# -- settings (config.yaml) ----------------------------------------------------------------------------------


def read_settings() -> dict[str, Any]:
    data = _read_yaml(settings_file())
    if data is not None and not isinstance(data, dict):
        raise MrunnerError(
            f"{settings_file()} must be a mapping such as `current_context: local`, not a {type(data).__name__}: "
            f"fix it, or delete it to start from no settings"
        )
    return data or {}


def write_setting(key: str, value: str | None) -> None:
    if key not in SETTINGS:
        raise MrunnerError(f"unknown setting {key!r}; settings: {', '.join(SETTINGS)}")
    settings = read_settings()
    if value is None:
        settings.pop(key, None)
    else:
        settings[key] = value
    write_yaml(settings_file(), settings)


def current_context() -> str:
    """The context of a command that names none: the setting ``current_context``, else ``local``. An active
    context that no longer exists (deleted, its file removed) is refused in one line, never replaced by
    ``local``: a researcher who thought they submit to a cluster must not run on this machine unawares."""
    name = read_settings().get("current_context")
    if not name:
        return DEFAULT_CONTEXT
    if name not in context_sources():
        raise MrunnerError(
            f"the active context {name!r} no longer exists (current_context in {settings_file()}): choose "
            f"another with `mrunner context use NAME` (`mrunner context list` shows them), or name one with "
            f"--context NAME"
        )
    return str(name)


# -- contexts ------------------------------------------------------------------------------------------------


def context_sources() -> dict[str, Path]:
    """Every context by name and the file it comes from (the user's shadow the shipped examples)."""
    found: dict[str, Path] = {}
    for folder in (user_context_dir(), paths.shipped_conf_dir() / "context"):
        if folder.is_dir():
            for file in sorted(folder.glob("*.yaml")):
                found.setdefault(file.stem, file)
    return found


def is_user_context(name: str) -> bool:
    return os.path.lexists(user_context_dir() / f"{name}.yaml")


def compose(name: str | None, overrides: list[str]) -> tuple[str, dict[str, Any]]:
    """The context ``name`` (default: ``current_context``, else ``local``) with ``context.*`` overrides applied,
    composed by Hydra's own steps (``hydra_internals.Composer``) from the user's folder, then mrunner's; a
    context that uses nothing of Hydra's (``plain``) is read without it."""
    chosen = name or current_context()
    sources = context_sources()
    if chosen not in sources:
        known = ", ".join(sorted(sources)) or "none"
        raise MrunnerError(f"unknown context {chosen!r}; contexts: {known} (add one with `mrunner context add`)")
    _check_readable(sources[chosen], chosen)
    context = plain(sources[chosen], overrides)
    context = context if context is not None else composed(chosen, sources[chosen], overrides)
    _as_written(context, _read_yaml(sources[chosen]) or {})
    return chosen, context


def composed(chosen: str, source: Path, overrides: list[str]) -> dict[str, Any]:
    """The context composed by Hydra (``compose`` without its shortcut)."""
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from mrunner.hydra_internals import Composer

    composer = Composer(
        [("mrunner-user", f"file://{paths.config_dir()}"), ("main", f"file://{paths.shipped_conf_dir()}")]
    )
    try:
        config = composer.compose(
            "mrunner", [f"context={chosen}", *(_forcing(o) for o in overrides)], refuse_sweeps=True
        )
        context = OmegaConf.to_container(config.context, resolve=True)
    except MissingConfigException as error:
        raise MrunnerError(f"context {chosen}: {str(error).splitlines()[0]}") from None
    except (HydraException, OmegaConfBaseException) as error:
        raise MrunnerError(f"context {chosen}: {' '.join(str(error).split())}") from None
    if not isinstance(context, dict):
        raise MrunnerError(f"context {chosen} ({source}) must be a mapping of keys to values")
    return context  # type: ignore[return-value]  # keys of a composed mapping are strings


def plain(source: Path, overrides: list[str]) -> dict[str, Any] | None:
    """The context in ``source`` with ``overrides`` applied, as Hydra composes it, when neither uses anything
    of Hydra's or OmegaConf's own (``None`` otherwise): no defaults list, package header or interpolation,
    keys that are words, values YAML reads as OmegaConf does (no duplicate key, date, or string OmegaConf reads
    as a float), and overrides ``context.KEY=VALUE`` of one plain value each (``grid.plain_axis``) replacing
    no mapping or list. Hydra's import and composition are most of the start of a command that plans a sweep
    (benchmarks/results-core.md); ``tests/test_contexts.py`` compares the two ways."""
    if os.path.lexists(paths.config_dir() / "mrunner.yaml"):  # the user's own primary config: Hydra's to read
        return None
    try:
        text = source.read_text()
        data = yaml.load(text, Loader=_Strict) if "@package" not in text else None  # _Strict is a SafeLoader
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    context = copy.deepcopy(data)  # YAML's aliases are one object; OmegaConf's nodes are each their own
    if not context or not isinstance(context, dict) or "defaults" in context or not _plain_tree(context):
        return None
    from mrunner import grid

    seen: set[str] = set()
    for override in overrides:
        known = grid.plain_axis(override)
        if known is None or known[1]:
            return None
        axis = known[0]
        prefix, _, key = axis.key.partition(".")
        if prefix != "context" or "." in key or key in seen or isinstance(context.get(key), (dict, list)):
            return None
        seen.add(key)
        context[key] = axis.values[0]
    return context


class _Strict(yaml.SafeLoader):
    """PyYAML's safe loader refusing a duplicate key, as OmegaConf's loader does."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        keys = [key.value for key, _ in node.value if key.tag == yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG]
        if len(keys) != len(set(keys)):
            raise yaml.constructor.ConstructorError(None, None, "found a duplicate key", node.start_mark)
        return super().construct_mapping(node, deep=deep)


#: A plain scalar OmegaConf's YAML loader reads as a float where PyYAML's reads a string (``1e-3``, ``1_0.5``).
_OMEGACONF_FLOAT = re.compile(
    r"""^(?:[-+]?[0-9]+(?:_[0-9]+)*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9]+(?:_[0-9]+)*(?:[eE][-+]?[0-9]+)
    |\.[0-9]+(?:_[0-9]+)*(?:[eE][-+][0-9]+)?
    |[-+]?[0-9]+(?:_[0-9]+)*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_KEY = re.compile(r"[A-Za-z_][\w-]*", re.ASCII)


def _plain_tree(value: Any) -> bool:
    """Whether OmegaConf holds ``value`` as it is: words as keys, scalars without interpolation or escapes."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _KEY.fullmatch(k) and _plain_tree(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain_tree(v) for v in value)
    if isinstance(value, str):
        return "$" not in value and "\\" not in value and value != "???" and not _OMEGACONF_FLOAT.match(value)
    return value is None or isinstance(value, (bool, int, float))


def _as_written(composed: dict[Any, Any], written: dict[Any, Any]) -> None:
    """Put back what Hydra's YAML read as a base-60 number (``time: 2:00:00`` as 7200) where the file wrote it
    with colons (``load_yaml``), unless an override changed it."""
    for key, value in written.items():
        here = composed.get(key)
        if isinstance(value, dict) and isinstance(here, dict):
            _as_written(here, value)
        elif isinstance(value, str) and ":" in value and isinstance(here, (int, float)) and not isinstance(here, bool):
            try:
                read = yaml.safe_load(value)
            except yaml.YAMLError:
                continue
            if read == here:
                composed[key] = value


def _forcing(override: str) -> str:
    """``context.KEY=V`` may set a key the context file lacks: schema validation, not Hydra, rejects unknown keys."""
    return override if override.startswith(("+", "~")) else f"++{override}"


def _check_readable(path: Path, name: str) -> None:
    data = _read_yaml(path)
    if data is not None and not isinstance(data, dict):
        raise MrunnerError(f"context {name} ({path}) must be a mapping of keys to values")


def read_context(name: str) -> dict[str, Any]:
    """A context file's own content, without composing (for show/edit/copy)."""
    sources = context_sources()
    if name not in sources:
        raise MrunnerError(f"unknown context {name!r}; contexts: {', '.join(sorted(sources)) or 'none'}")
    data = _read_yaml(sources[name])
    if data is not None and not isinstance(data, dict):
        raise MrunnerError(
            f"context {name} ({sources[name]}) must be a mapping of keys to values, not a {type(data).__name__}"
        )
    return dict(data or {})


def write_context(name: str, context: dict[str, Any]) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", name):  # what `--context NAME` (Hydra's grammar) takes
        raise MrunnerError(
            f"invalid context name {name!r}: use ASCII letters, digits, dots, dashes and underscores, "
            f"starting with a letter, a digit or an underscore"
        )
    path = user_context_dir() / f"{name}.yaml"
    write_yaml(path, context)
    return path


def _read_yaml(path: Path) -> Any:
    if not path.exists():
        if path.is_symlink():  # a dangling link is a broken file, not a missing one (nor an empty context)
            raise MrunnerError(
                f"{path} is a link to {os.readlink(path)}, which does not exist: fix the link or delete it"
            )
        return None
    try:
        return load_yaml(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise MrunnerError(f"{path} is not valid YAML{where}: {problem}") from None
    except OSError as error:
        raise os_error(error, "read", path) from None
    except UnicodeDecodeError as error:
        raise MrunnerError(
            f"{path} is not valid YAML: it is not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None


def write_yaml(path: Path, data: Any) -> None:
    """Write atomically: a crash (or a full disk) never leaves a half-written config."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(handle, "w") as stream:
            yaml.safe_dump(data, stream, sort_keys=False, default_flow_style=False)
        os.replace(temporary, path)
    except OSError as error:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
        raise os_error(
            error, "write", path, _CONFIG_REMEDIES.get(error.errno or 0, "")
        ) from None  # path, not the temporary file: that is the one to fix


_CONFIG_REMEDIES = {
    errno.EROFS: "that file system is read-only: point XDG_CONFIG_HOME at a writable folder",
    errno.EACCES: "make its folder writable, or point XDG_CONFIG_HOME at a writable folder",
    errno.EPERM: "make its folder writable, or point XDG_CONFIG_HOME at a writable folder",
    errno.ENOSPC: "free some space on that file system, or point XDG_CONFIG_HOME at another one",
}
