"""A Hydra app's own config, composed here to check a grid's overrides before anything is submitted.

The app is read, never run: its ``@hydra.main(config_path=..., config_name=..., version_base=...)`` is
found in the source, and Hydra's own config loader composes the config from that folder, as the app
will when it starts. An override the config does not accept (``lrr=3`` for ``lr``, ``db=nope``, ``+lr``
for an existing key) is refused with Hydra's reason, before anything is recorded.

Composing costs tens of milliseconds, so it runs once per distinct combination of config group choices
(``db=mysql,postgres`` composes twice, however many other values the grid has); each other value is
applied to the composed config by Hydra's own override logic, which is cheap.
"""

from __future__ import annotations

import ast
import copy
import itertools
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mrunner import grid
from mrunner.errors import MrunnerError
from mrunner.hydra_app import is_hydra_main

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override

_UNSET: Any = object()


@dataclass(frozen=True)
class MainArguments:
    """What the app passes to ``hydra.main``; ``config_dir`` is ``None`` for an app without a config folder."""

    config_dir: str | None
    config_name: str | None
    version_base: str | None


def main_arguments(script: Path) -> MainArguments | None:
    """The app's ``hydra.main`` arguments, or ``None`` when they cannot be known without running it: they
    are not literals, or the app registers configs in code (``ConfigStore``), which only running it shows."""
    tree = _parsed(script)
    if tree is None or _registers_configs(script):
        return None
    call = next((n for n in ast.walk(tree) if isinstance(n, ast.Call) and is_hydra_main(n.func)), None)
    if call is None:
        return None
    given = dict(zip(("config_path", "config_name", "version_base"), call.args))
    given.update({k.arg: k.value for k in call.keywords if k.arg})
    values = {}
    for name in ("config_path", "config_name", "version_base"):
        node = given.get(name)
        if node is None:
            values[name] = _UNSET
        elif isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, str)):
            values[name] = node.value
        else:
            return None
    version_base = values["version_base"]
    if version_base is _UNSET:
        version_base = "1.1"  # what Hydra assumes (and warns about) when the app names none
    config_path = values["config_path"]
    if config_path is _UNSET:  # Hydra 1.1 looked beside the script; 1.2 and later look nowhere
        config_path = None if version_base is None or _at_least(version_base, "1.2") else "."
    config_dir = None
    if config_path is not None:
        if config_path.startswith("pkg://") or "://" in config_path:
            config_dir = config_path
        else:
            config_dir = f"file://{(script.parent / config_path).resolve()}"
    name = values["config_name"]
    return MainArguments(config_dir, None if name is _UNSET else name, version_base)


def _parsed(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return None


_REGISTERS = (b"ConfigStore", b"hydra_zen")


def _registers_configs(script: Path) -> bool:
    """Whether the script, or a module of its own folder that it imports (and so on), registers configs in
    code: Hydra then composes configs this reading cannot see, and a check could refuse what is valid."""
    folder = script.parent
    pending, seen = [script], set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        try:
            source = path.read_bytes()
        except OSError:
            continue
        if any(marker in source for marker in _REGISTERS):
            return True
        tree = _parsed(path)
        for node in ast.walk(tree) if tree else ():
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                base = folder.joinpath(*name.split("."))
                pending += [p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()]
    return False


def _at_least(version: str, floor: str) -> bool:
    from packaging.version import Version  # Hydra's own dependency

    return Version(version) >= Version(floor)


class AppConfig:
    """The config of one Hydra app, composed by Hydra's own steps (``hydra_internals.Composer``) from the
    app's config folder, as the app itself would compose it."""

    def __init__(self, script: Path, arguments: MainArguments) -> None:
        from mrunner.hydra_internals import Composer

        self.script = script
        self.arguments = arguments
        own = [] if arguments.config_dir is None else [("main", arguments.config_dir)]
        self.composer = Composer([("hydra", "pkg://hydra.conf"), *own])

    def is_group(self, override: Override) -> bool:
        """Whether the override chooses a config group option (``db=postgres``) rather than sets a value."""
        value = None if override.is_delete() else override.value()
        return not isinstance(value, dict) and self.composer.group_exists(override.key_or_group)

    def chooses_group(self, axis: grid.Axis) -> bool:
        """Whether the grid's axis chooses options of a config group (``db=mysql,postgres``), read from the
        axis as the grid parsed it."""
        if axis.how == grid.DELETE or not axis.values or isinstance(axis.values[0], dict):
            return False
        return self.composer.group_exists(axis.key.split("@", 1)[0])

    def group_options(self, group: str) -> list[str]:
        """The options of config group ``group``, as ``glob()`` sees them in Hydra."""
        return self.composer.group_options(group.split("@", 1)[0])

    def compose(self, overrides: Sequence[str], choices: Sequence[str] = ()) -> Any:
        """The app's config with ``overrides``, or an error with Hydra's reason on one line (which names
        the group ``choices`` it was composed with, if any)."""
        from mrunner.hydra_internals import app_runtime

        name = self.arguments.config_name
        with app_runtime(self.script.stem, self.arguments.version_base):
            try:
                if not any(text.lstrip("+~").startswith("hydra") for text in overrides):
                    try:
                        return self.composer.compose(name, overrides)
                    except Exception:  # e.g. the app's defaults override a hydra/ group: Hydra's whole way says
                        pass
                return self.composer.compose_with_hydra(name, overrides)
            except Exception as error:  # Hydra's and OmegaConf's own errors: what the app would report
                raise self._refusal(error, choices) from None

    def apply(self, config: Any, override: str, choices: Sequence[str] = ()) -> None:
        """Apply one value override to a composed config, as Hydra does after composing."""
        try:
            self.composer.apply(config, override)
        except Exception as error:
            raise self._refusal(error, choices) from None

    def _refusal(self, error: BaseException, choices: Sequence[str]) -> MrunnerError:
        where = f" (with {' '.join(choices)})" if choices else ""
        return MrunnerError(f"{self.script.name}'s config{where} refuses an override: {reason(error)}")


def reason(error: BaseException) -> str:
    """Hydra's message (and OmegaConf's beneath it) on one line, without the search path listing."""
    parts: list[str] = []
    seen: BaseException | None = error
    while seen is not None and len(parts) < 3:
        text = _one_line(str(seen))
        if text and not any(text in part for part in parts):
            parts.append(text)
        seen = seen.__cause__
    return "; ".join(parts) or type(error).__name__


def _one_line(text: str) -> str:
    pieces: list[str] = []
    listing = False  # inside a tab-indented list (Hydra's "Available options")
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Config search path"):
            break
        if not stripped or stripped.startswith(("See https://", "full_key:", "object_type=", "reference_type=")):
            continue
        item = line.startswith("\t")
        if pieces and item and listing:
            pieces[-1] += ","
        elif pieces and not pieces[-1].endswith((".", ":", ",", ";", "!", "?")):
            pieces[-1] += "."
        listing = item
        pieces.append(stripped)
    return " ".join(pieces)


# -- checking a grid -----------------------------------------------------------------------------------------


def check(script: Path, fixed: Sequence[Sequence[str]], axes: Sequence[grid.Axis]) -> int:
    """Refuse (with ``MrunnerError``) any override of the grid the app's config does not accept.

    ``fixed`` holds each experiment's own overrides (a spec's parameters; one empty list for a plain
    script) and ``axes`` the command line's. Returns how many times the config was composed: once per
    distinct combination of group choices, each other value being applied to that composition.
    Returns 0 when the app's config cannot be known without running it (see ``main_arguments``).
    """
    arguments = main_arguments(script)
    if arguments is None:
        return 0
    app = AppConfig(script, arguments)
    # The grid, read once: the group options it chooses, the values composed with, the values tried after.
    # Only a set (key=value) can be refused for its value, once its key exists: an added or forced key has
    # no type to keep, and a delete has no value.
    chooses = [app.chooses_group(axis) for axis in axes]
    group_texts = [[a.override(p) for p in range(len(a.values))] for a, group in zip(axes, chooses) if group]
    value_axes = [axis for axis, group in zip(axes, chooses) if not group]
    first_values = [axis.override(0) for axis in value_axes]
    later_values = [a.override(p) for a in value_axes if a.how == grid.SET for p in _checked_positions(a)]
    set_by_axes = {axis.key for axis in axes}
    # Each experiment's own overrides, less those the command line sets again, by the group options they choose.
    by_groups: dict[tuple[str, ...], list[list[str]]] = {}
    for own in fixed:
        parsed = {text: grid.parse(text) for text in own}
        overrides = [text for text in own if _key(parsed[text]) not in set_by_axes]
        groups = tuple(text for text in overrides if app.is_group(parsed[text]))
        by_groups.setdefault(groups, []).append([text for text in overrides if text not in groups])
    composed = 0
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        for fixed_groups, fixed_values in by_groups.items():
            others = {text for values in fixed_values[1:] for text in values if text[0] not in "+~"}
            for chosen in itertools.product(*group_texts):
                choices = [*fixed_groups, *chosen]
                config = app.compose([*choices, *fixed_values[0], *first_values], choices)
                composed += 1
                for text in [*others, *later_values]:
                    app.apply(copy.deepcopy(config), text, choices)
    for message in dict.fromkeys(_one_line(str(warning.message)) for warning in warned):
        # Hydra warns at each composition, in Python's two-line format naming its own file: said once here.
        print(f"mrunner: warning: {script.name}'s config: {message}", file=sys.stderr)
    return composed


def _key(override: Override) -> str:
    return f"{override.key_or_group}@{override.package}" if override.package else override.key_or_group


def _checked_positions(axis: grid.Axis) -> Sequence[int]:
    """The values of an axis beyond the first that need applying: all of a list, the last of an integer range
    (its values share one type, so the ends stand for the rest)."""
    count = len(axis.values)
    if isinstance(axis.values, range):
        return [count - 1] if count > 1 else []
    return range(1, count)
