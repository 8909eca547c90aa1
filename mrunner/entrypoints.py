"""The entry points of a group, found as ``importlib.metadata.entry_points(group=...)`` finds them, without
importing ``importlib.metadata`` where it needs not be.

Importing ``importlib.metadata`` (which imports ``email``, ``zipfile``, ``csv`` and more) cost about as much CPU
as the rest of a `mrunner status` of a Slurm sweep through an open connection (benchmarks/results-slurm.md), and
every command builds the plugin manager. What it does for the common layout is small: in each folder of
``sys.path``, in order, read every ``NAME-VERSION.dist-info/entry_points.txt``; the first distribution of a
(normalised) name wins. That is done here. Whatever this does not read the same way (a zip file, an
``.egg-info`` or an ``.egg`` folder on the path, a ``.DIST-INFO`` not in lower case, whose name
``importlib.metadata`` takes from its METADATA, a finder of distributions besides the standard path finder)
makes it ask ``importlib.metadata`` instead, so the answer is the same either way.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Any

#: What ``importlib.metadata.EntryPoint`` accepts as a value: ``module[:attr.attr][ [extras]]``.
_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")


@dataclass(frozen=True)
class EntryPoint:
    """One entry point, as ``importlib.metadata.EntryPoint`` gives it, and the distribution that declares it
    (``where``: ``NAME VERSION``, for messages)."""

    name: str
    value: str
    where: str
    distribution: tuple[str, str] | None

    def load(self) -> Any:
        import importlib

        match = _VALUE.match(self.value)
        if match is None:
            raise ValueError(f"entry point value {self.value!r} is not module[:attribute]")
        found = importlib.import_module(match["module"])
        for attribute in filter(None, (match["attr"] or "").split(".")):
            found = getattr(found, attribute)
        return found


def of_group(group: str) -> list[EntryPoint]:
    """The group's entry points of every distribution on ``sys.path``, in ``sys.path`` order."""
    found = _scanned(group)
    return found if found is not None else _from_metadata(group)


def _scanned(group: str) -> list[EntryPoint] | None:
    """Read from the dist-info folders of ``sys.path``; ``None`` where that might differ from importlib.metadata."""
    from importlib.machinery import PathFinder

    if any(hasattr(finder, "find_distributions") and finder is not PathFinder for finder in sys.meta_path):
        return None
    seen: set[str] = set()
    found: list[EntryPoint] = []
    for entry in sys.path:
        folder = entry or "."
        if os.path.basename(folder).lower().endswith(".egg"):
            return None  # an egg's EGG-INFO
        try:
            names = os.listdir(folder)
        except NotADirectoryError:
            return None  # a zip file on the path
        except OSError:
            continue  # gone or unreadable: importlib.metadata finds nothing there either
        for name in names:
            lowered = name.lower()
            if lowered.endswith(".egg-info"):
                return None
            if not lowered.endswith(".dist-info"):
                continue
            if not name.endswith(".dist-info"):
                return None
            normalised = re.sub(r"[-_.]+", "_", name[: -len(".dist-info")].partition("-")[0]).lower()
            if normalised in seen:
                continue
            seen.add(normalised)
            found += _declared(os.path.join(folder, name), group)
    return found


def _declared(dist_info: str, group: str) -> list[EntryPoint]:
    """The group's entries of one distribution's ``entry_points.txt`` (INI: ``[group]`` then ``name = value``)."""
    try:
        with open(os.path.join(dist_info, "entry_points.txt"), encoding="utf-8") as stream:
            text = stream.read()
    except OSError:
        return []
    entries: list[tuple[str, str]] = []
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")  # as importlib.metadata reads it: `[ group ]` is no `[group]`
        elif section == group:
            name, _, value = line.partition("=")
            entries.append((name.strip(), value.strip()))
    if not entries:
        return []
    distribution = _name_and_version(dist_info)
    where = " ".join(distribution) if distribution else os.path.basename(dist_info)
    return [EntryPoint(name, value, where, distribution) for name, value in entries]


def _name_and_version(dist_info: str) -> tuple[str, str] | None:
    """``Name`` and ``Version`` from the distribution's METADATA headers (what ``Distribution.name`` reads)."""
    headers: dict[str, str] = {}
    try:
        with open(os.path.join(dist_info, "METADATA"), encoding="utf-8") as stream:
            for line in stream:
                if not line.strip():
                    break  # the headers end at the first blank line
                key, sep, value = line.partition(":")
                if sep and key in ("Name", "Version"):
                    headers.setdefault(key, value.strip())
    except OSError:
        return None
    return (headers["Name"], headers["Version"]) if len(headers) == 2 else None


def _from_metadata(group: str) -> list[EntryPoint]:
    from importlib.metadata import entry_points

    found = []
    for entry in entry_points(group=group):
        dist = entry.dist
        distribution = (dist.name, dist.version) if dist is not None else None
        found.append(
            EntryPoint(entry.name, entry.value, " ".join(distribution) if distribution else entry.value, distribution)
        )
    return found
