"""The plugin manager: built-in plugins plus every distribution's entry point in the group ``mrunner``.

``MRUNNER_PLUGINS`` restricts which entry points load: a comma-separated list of entry-point names
(``MRUNNER_PLUGINS=local,slurm``); empty loads none. Built-in plugins always load.
"""

from __future__ import annotations

import os
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from mrunner import hookspecs
from mrunner.errors import MrunnerError

ENTRY_POINT_GROUP = "mrunner"
BUILTIN_PLUGINS = ("mrunner.builtin", "mrunner.trackers.neptune")

# Where to get the backends mrunner's own project publishes, for the "not installed" error.
KNOWN_BACKEND_PACKAGES = {"local": "mrunner-local", "slurm": "mrunner-slurm", "kubernetes": "mrunner-k8s"}

_manager: pluggy.PluginManager | None = None
_distributions: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)


def manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use."""
    global _manager
    if _manager is None:
        _manager = _build()
    return _manager


def reset() -> None:
    """Forget the plugin manager (tests install plugins and need a fresh look)."""
    global _manager
    _manager = None


def _build() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    for name in BUILTIN_PLUGINS:
        pm.register(__import__(name, fromlist=["_"]), name=name)
    allowed = os.environ.get("MRUNNER_PLUGINS")
    allowed_names = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if allowed_names is not None and entry_point.name not in allowed_names:
            continue
        if pm.get_plugin(entry_point.name) is not None:
            continue  # the same distribution seen twice on sys.path
        pm.register(_load(entry_point), name=entry_point.name)
        if entry_point.dist is not None:
            _distributions[entry_point.name] = (entry_point.dist.name, entry_point.dist.version)
    return pm


def _load(entry_point: EntryPoint) -> Any:
    try:
        return entry_point.load()
    except Exception as error:  # a broken plugin must not look like a bug in mrunner
        dist = entry_point.dist
        where = f"{dist.name} {dist.version}" if dist is not None else entry_point.value
        raise MrunnerError(
            f"plugin {entry_point.name!r} from distribution {where} failed to import: "
            f"{type(error).__name__}: {error}; reinstall or uninstall it, or leave it out with "
            f"MRUNNER_PLUGINS"
        ) from error


def distribution_of(plugin_name: str) -> tuple[str, str]:
    """(distribution, version) of a registered plugin, for `mrunner plugins`."""
    from mrunner import __version__

    return _distributions.get(plugin_name, ("mrunner (built-in)", __version__))


def backends() -> dict[str, hookspecs.BackendInfo]:
    """Every installed backend by name."""
    served: dict[str, hookspecs.BackendInfo] = {}
    for infos in manager().hook.mrunner_backends():
        for info in infos:
            served.setdefault(info.name, info)
    return served


def require_backend(name: str) -> hookspecs.BackendInfo:
    """The installed backend ``name``, or an error that names the package to install."""
    served = backends()
    if name in served:
        return served[name]
    package = KNOWN_BACKEND_PACKAGES.get(name)
    installed = ", ".join(sorted(served)) or "none"
    if package:
        hint = f"install it with `pip install {package}`"
    else:
        hint = "install the package that provides it"
    raise MrunnerError(f"backend {name!r} is not installed: {hint} (installed backends: {installed})")
