"""The names of each installed backend's context keys, remembered between commands for ``mrunner --help``.

Which backends honour a shorthand option is read from their typed keys, and reading them means importing every
plugin (pluggy, each backend's module and what it imports, the context machinery): several times the rest of
``--help``. The answer changes only when the code that declares keys changes, so it is kept in
``$XDG_CACHE_HOME/mrunner`` under a fingerprint of that code, which costs a few ``stat`` calls to check: the
distributions in every folder of ``sys.path`` (an install, upgrade or removal), the group's entry points, the modified
time and size of every ``.py`` file of mrunner and of each entry point's package (where editable installs keep
their code), and ``MRUNNER_PLUGINS``. A fingerprint that differs, or a cache that cannot be read or written,
means the keys are read from the plugins as before: the cache only ever saves time.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

#: ``plugins.ENTRY_POINT_GROUP`` (``mrunner.plugins`` imports pluggy, which a hit must not pay for).
GROUP = "mrunner"


#: How many fingerprints a cache file keeps: ``mrunner`` and ``python -m mrunner`` in different folders start
#: with different ``sys.path``, and should not push each other's answer out.
KEPT = 8


def key_names(read: Callable[[], dict[str, list[str] | None]]) -> dict[str, list[str] | None]:
    """Each backend's key names (``None`` for a backend whose keys could not be read): remembered under the
    current fingerprint, else ``read()``, remembered only when every backend's could be read (a failure may
    be this moment's)."""
    fingerprint = _fingerprint()
    file = _cache_file()
    try:
        kept = [entry for entry in json.loads(file.read_text()) if isinstance(entry.get("keys"), dict)]
    except (OSError, ValueError, TypeError, AttributeError):
        kept = []
    for entry in kept:
        if entry.get("fingerprint") == fingerprint:
            return {str(backend): [str(name) for name in names] for backend, names in entry["keys"].items()}
    keys = read()
    if None in keys.values():
        return keys
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        temporary = file.with_name(f"{file.name}.{os.getpid()}")
        temporary.write_text(json.dumps([{"fingerprint": fingerprint, "keys": keys}, *kept[: KEPT - 1]]))
        os.replace(temporary, file)  # whole or not at all, for a command reading it at the same moment
    except OSError:
        pass
    return keys


def _cache_file() -> Path:
    """One file per Python environment (``sys.prefix``): each has its own plugins."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mrunner"
    environment = hashlib.sha256(sys.prefix.encode()).hexdigest()[:16]
    return root / f"backend-keys-{environment}.json"


def _fingerprint() -> str:
    from mrunner import entrypoints

    parts: list[object] = [sys.prefix, sys.path, os.environ.get("MRUNNER_PLUGINS")]
    parts += [_installed(entry or ".") for entry in sys.path]
    packages = {str(Path(__file__).resolve().parent.parent)}  # mrunner: the core's and built-in trackers' keys
    for entry_point in entrypoints.of_group(GROUP):
        parts.append((entry_point.name, entry_point.value, entry_point.where))
        packages.update(_package_folders(entry_point.value.partition(":")[0].partition(".")[0].strip()))
    for folder in sorted(packages):
        parts += list(_sources(folder))
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _installed(folder: str) -> list[str]:
    """The distributions installed in a folder of ``sys.path`` (their metadata folders' names carry the
    version), not its modified time, which any file written beside them changes (the current folder)."""
    try:
        return sorted(name for name in os.listdir(folder) if name.endswith((".dist-info", ".egg-info", ".egg")))
    except OSError:
        return []


def _stamp(path: str) -> tuple[str, int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return path, status.st_mtime_ns, status.st_size


def _package_folders(name: str) -> list[str]:
    """Where the top-level module ``name`` lives (found, not imported; its module file alone when it is one)."""
    from importlib.machinery import PathFinder

    spec = PathFinder.find_spec(name)
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return [str(Path(location).resolve()) for location in spec.submodule_search_locations]
    return [spec.origin] if spec.origin else []


def _sources(folder: str) -> Iterator[tuple[str, int, int] | None]:
    """The stamp of every ``.py`` file under ``folder`` (or of ``folder`` itself when it is a file)."""
    if os.path.isfile(folder):
        yield _stamp(folder)
        return
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if name != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                yield _stamp(os.path.join(root, name))
