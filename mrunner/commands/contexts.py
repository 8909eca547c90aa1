"""`mrunner context ...` and `mrunner config ...`: named contexts and mrunner's own settings."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import yaml

from mrunner import config, schema, table
from mrunner.errors import MrunnerError, mask_credentials
from mrunner.planning import context_keys, validated_context

# The original mrunner's names for keys that are spelled differently now.
RENAMED_KEYS = {"type": "backend", "backend_type": "backend"}
DROPPED_KEYS = ("name", "context_name")
#: the values ``--neptune VALUE`` may take (YAML's words for true and false); alone, ``--neptune`` is true
BOOLEAN_WORDS = ("true", "false", "yes", "no", "on", "off")


def context_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Manage contexts: where and how experiments run. Without an action: list them."
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="list contexts; * marks the active one")
    show = actions.add_parser("show", help="print a context (default: the active one)")
    show.add_argument("name", nargs="?")
    show.add_argument("--keys", action="store_true", help="also list every key its backend accepts")
    add = actions.add_parser("add", help="add a context (the first one added becomes active)")
    add.add_argument("--name", required=True)
    add.add_argument(
        "--backend",
        "--type",
        "--backend_type",
        dest="backend",
        required=True,
        help="local, slurm, kubernetes, or a third-party backend",
    )
    add.add_argument("--storage", help="storage folder (storage_dir for local and slurm, storage for kubernetes)")
    add.add_argument("--resources", help='resources as "cpu=4 mem=8G gpu=1"')
    add.add_argument("--registry_url", help="image registry (kubernetes)")
    add.add_argument("--neptune", action=argparse.BooleanOptionalAction, default=None, help="track runs in Neptune")
    add.add_argument(
        "keys",
        nargs="*",
        metavar="KEY=VALUE",
        help="any other key of the backend, as KEY=VALUE or --KEY VALUE (listed in docs/context-keys.md)",
    )
    edit = actions.add_parser("edit", help="edit a context in $EDITOR")
    edit.add_argument("name")
    delete = actions.add_parser("delete", help="delete one of your contexts")
    delete.add_argument("name")
    copy = actions.add_parser("copy", help="copy a context under a new name")
    copy.add_argument("source")
    copy.add_argument("destination")
    use = actions.add_parser("use", aliases=["set-active"], help="make a context the active one")
    use.add_argument("name")
    imported = actions.add_parser("import", help="import the contexts of the original mrunner's config.yaml")
    imported.add_argument("file", type=Path, help="e.g. ~/.config/mrunner/config.yaml of mrunner < 1.0")


def context_command(options: argparse.Namespace) -> int:
    action = options.action or "list"
    if action == "list":
        return _list()
    if action == "show":
        return _show(options.name or config.current_context(), options.keys)
    if action == "add":
        return _add(options)
    if action == "edit":
        return _edit(options.name)
    if action == "delete":
        return _delete(options.name)
    if action == "copy":
        data = config.read_context(options.source)
        if options.destination in config.context_sources():
            raise MrunnerError(f"context {options.destination!r} exists already; delete it first or pick another name")
        print(f"copied {options.source} to {config.write_context(options.destination, data)}")
        return 0
    if action in ("use", "set-active"):
        config.read_context(options.name)  # it must exist
        config.write_setting("current_context", options.name)
        print(f"active context: {options.name}")
        return 0
    return _import(options.file)


def _list() -> int:
    import sys

    try:
        active: str | None = config.current_context()
    except MrunnerError as error:  # the list is how to choose another: shown, with why none is marked
        active = None
        print(mask_credentials(f"mrunner: warning: {error}"), file=sys.stderr)
    rows = []
    for name, path in config.context_sources().items():
        try:
            backend = (config.read_context(name) or {}).get("backend", "?")
        except MrunnerError as error:  # one broken file must not hide the others
            backend = "(broken)"
            print(mask_credentials(f"mrunner: warning: context {name} cannot be read: {error}"), file=sys.stderr)
        origin = "yours" if config.is_user_context(name) else "example shipped with mrunner"
        rows.append(("*" if name == active else "", name, backend, origin, path))
    print(table.render(("", "NAME", "BACKEND", "ORIGIN", "FILE"), rows, max_width=80))
    return 0


def _show(name: str, with_keys: bool) -> int:
    data = config.read_context(name)
    print(f"# context {name} ({config.context_sources()[name]})")
    # a tracker's URI or an index URL may hold a token: shown masked, as every line mrunner prints
    print(mask_credentials(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip()))
    if with_keys:
        keys = context_keys(data.get("backend", ""))
        print(f"# keys of backend {data.get('backend')} (all of them: docs/context-keys.md):")
        for declared in keys.values():
            print(f"#   {schema.describe(declared)}")
    return 0


def _check(name: str, data: dict[str, Any]) -> None:
    validated_context(name, data)


def _add(options: argparse.Namespace) -> int:
    if options.name in config.context_sources() and config.is_user_context(options.name):
        raise MrunnerError(f"context {options.name!r} exists already; `mrunner context edit {options.name}` changes it")
    data: dict[str, Any] = {"backend": options.backend}
    keys = context_keys(options.backend)
    if options.storage is not None:
        storage_key = next((k for k in ("storage_dir", "storage") if k in keys), "storage_dir")
        data[storage_key] = options.storage
    resources = _pairs(shlex.split(options.resources), "--resources") if options.resources else {}
    given = _pairs(options.keys, "context add")
    for source in (resources, given):  # `--storage /a storage_dir=/b`, `--resources cpu=4 --cpu 8`: one was dropped
        for key in sorted(source.keys() & data.keys()):
            if data[key] != source[key]:
                raise MrunnerError(f"context add: {key} is given twice ({data[key]!r} and {source[key]!r}); keep one")
        data.update(source)
    if options.registry_url is not None:
        data["registry_url"] = options.registry_url
    if options.neptune is not None:
        data["neptune"] = options.neptune
    _check(options.name, data)
    folder = config.user_context_dir()
    first = not (folder.is_dir() and any(folder.glob("*.yaml")))  # not after `config unset current_context`
    path = config.write_context(options.name, data)
    print(f"added context {options.name} ({path})")
    if first and not config.read_settings().get("current_context"):
        config.write_setting("current_context", options.name)
        print(f"active context: {options.name} (the first one added)")
    return 0


def key_options(args: list[str]) -> list[str]:
    """``context add``'s ``--KEY VALUE`` and ``--KEY=VALUE`` for any key of the chosen backend, as the original
    mrunner's README writes them (``--slurm_url host --storage_dir /x``), turned into ``KEY=VALUE``."""
    if "add" not in args:
        return args
    backend = None
    for position, arg in enumerate(args):
        for option in ("--backend", "--type", "--backend_type"):
            if arg == option and position + 1 < len(args):
                backend = args[position + 1]
            elif arg.startswith(option + "="):
                backend = arg.partition("=")[2]
    if not backend:
        return args  # argparse says --backend is missing
    own = {"name", "backend", "type", "backend_type", "storage", "resources", "registry_url", "neptune", "debug"}
    keys = set(context_keys(backend)) - own
    rewritten: list[str] = []
    pairs: list[str] = []  # after every option: argparse takes KEY=VALUE positionals in one run
    position = 0
    while position < len(args):
        arg = args[position]
        key, equals, value = arg[2:].partition("=")
        if arg == "--neptune" and position + 1 < len(args) and args[position + 1].lower() in BOOLEAN_WORDS:
            pairs.append(f"neptune={args[position + 1]}")  # `--neptune true`: the flag with a value
            position += 2
            continue
        if arg.startswith("--neptune=") and value.lower() in BOOLEAN_WORDS:
            pairs.append(f"neptune={value}")
            position += 1
            continue
        if arg.startswith("--") and key.replace("-", "_") in keys:
            key = key.replace("-", "_")
            if not equals:
                if position + 1 >= len(args):
                    raise MrunnerError(f"context add: --{key} needs a value")
                position += 1
                value = args[position]
            pairs.append(f"{key}={value}")
        elif arg.startswith("--") and key.replace("-", "_") not in own | {"no_neptune", "help"}:
            options = keys | (set(context_keys(backend)) & own)  # `--storage`, `--registry_url`: options, and keys
            raise MrunnerError(_unknown_key(arg[2:].partition("=")[0], backend, sorted(options)))
        else:
            rewritten.append(arg)
        position += 1
    return rewritten + pairs


def _unknown_key(given: str, backend: str, keys: list[str]) -> str:
    """One line for ``context add --KEY`` of a key the backend does not have: the closest key, and all of them
    (argparse said only "unrecognized arguments")."""
    import difflib

    close = difflib.get_close_matches(given.replace("-", "_"), keys, n=1)
    guess = f" (did you mean --{close[0]}?)" if close else ""
    return (
        f"context add: --{given} is not a key of the {backend} backend{guess}; its keys: {', '.join(keys)} "
        f"(as --KEY VALUE or KEY=VALUE; `mrunner context add --help` for the options of every backend)"
    )


def _pairs(items: list[str], where: str) -> dict[str, Any]:
    pairs: dict[str, Any] = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise MrunnerError(f"{where}: {item!r} is not KEY=VALUE")
        parsed = config.load_yaml(value) if value else ""
        if key in pairs and pairs[key] != parsed:  # `--cpu 4 cpu=8`: one of them was dropped without a word
            raise MrunnerError(f"{where}: {key} is given twice ({pairs[key]!r} and {parsed!r}); keep one")
        pairs[key] = parsed
    return pairs


def _edit(name: str) -> int:
    data = config.read_context(name)
    path = config.user_context_dir() / f"{name}.yaml"
    if not path.exists():  # a shipped example: edit your own copy
        config.write_context(name, data)
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    subprocess.run([*shlex.split(editor), str(path)], check=False)
    try:
        _check(name, config.read_context(name))
    except MrunnerError as error:  # the editor saved it: say so, and how to come back to it
        raise MrunnerError(f"{error} ({path} keeps your edit: `mrunner context edit {name}` fixes it)") from None
    print(f"context {name} saved ({path})")
    return 0


def _delete(name: str) -> int:
    path = config.user_context_dir() / f"{name}.yaml"
    if not os.path.lexists(path):  # a dangling link of yours is deleted too
        if name in config.context_sources():
            raise MrunnerError(f"context {name!r} is an example shipped with mrunner; it cannot be deleted")
        raise MrunnerError(f"unknown context {name!r}; `mrunner context list` shows them")
    path.unlink()
    if config.read_settings().get("current_context") == name:
        # kept as the setting: a command naming no context then refuses, saying so, instead of running here
        print(
            f"deleted context {name}, the active one: commands that name no --context refuse until "
            f"`mrunner context use NAME` picks another"
        )
        return 0
    print(f"deleted context {name}")
    return 0


def _import(file: Path) -> int:
    if not os.path.lexists(file.expanduser()):  # read as no file at all, it would be "no `contexts:` mapping"
        raise MrunnerError(f"{file} does not exist: name the original mrunner's config.yaml")
    data = config._read_yaml(file.expanduser())
    if not isinstance(data, dict) or not isinstance(data.get("contexts"), dict):
        raise MrunnerError(f"{file} has no `contexts:` mapping; is it the original mrunner's config.yaml?")
    for name, context in data["contexts"].items():
        context = {RENAMED_KEYS.get(k, k): v for k, v in dict(context or {}).items() if k not in DROPPED_KEYS}
        if isinstance(context.get("resources"), str):
            context.update(_pairs(shlex.split(context.pop("resources")), f"context {name} resources"))
        if "storage" in context and context.get("backend") in ("local", "slurm"):
            context["storage_dir"] = context.pop("storage")
        if config.is_user_context(name):
            print(f"skipped {name}: you have a context of that name already")
            continue
        path = config.write_context(name, context)
        try:
            _check(name, context)
            print(f"imported {name} ({path})")
        except MrunnerError as error:
            print(f"imported {name} ({path}), but fix it with `mrunner context edit {name}`: {error}")
    current = data.get("current_context")
    if current and not config.read_settings().get("current_context"):
        config.write_setting("current_context", current)
        print(f"active context: {current}")
    return 0


# -- config --------------------------------------------------------------------------------------------------


def config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = f"mrunner's settings ({config.settings_file()}). Without an action: show them."
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("show", help="print the settings")
    setter = actions.add_parser("set", help="set a setting")
    setter.add_argument("key", choices=sorted(config.SETTINGS))
    setter.add_argument("value")
    unsetter = actions.add_parser("unset", help="remove a setting")
    unsetter.add_argument("key", choices=sorted(config.SETTINGS))


def config_command(options: argparse.Namespace) -> int:
    action = options.action or "show"
    if action == "set":
        if options.key == "current_context":
            config.read_context(options.value)
        config.write_setting(options.key, options.value)
    elif action == "unset":
        config.write_setting(options.key, None)
    settings = config.read_settings()
    for key, meaning in config.SETTINGS.items():
        print(f"{key}: {settings.get(key, '')}  # {meaning}")
    return 0
