"""The plugin manager: built-in plugins plus every distribution's entry point in the group ``mrunner``.

``MRUNNER_PLUGINS`` restricts which entry points load: a comma-separated list of entry-point names
(``MRUNNER_PLUGINS=local,slurm``); empty loads none. Built-in plugins always load.

Each plugin is checked as it loads (one line naming its distribution and the hook): a hook name that does
not exist is an error instead of an implementation nobody calls, and a backend plugin must implement every
hook in ``hookspecs.BACKEND_REQUIRED``. The core calls a backend's hooks through ``backend_hooks(name)``,
which leaves out every other backend's plugin, so no implementation checks which backend a sweep is for.
"""

from __future__ import annotations

import os
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from mrunner import hookspecs
from mrunner.errors import MrunnerError

ENTRY_POINT_GROUP = "mrunner"
BUILTIN_PLUGINS = ("mrunner.builtin", "mrunner.trackers.neptune", "mrunner.trackers.mlflow", "mrunner.trackers.wandb")

# Where to get the backends mrunner's own project publishes, for the "not installed" error.
KNOWN_BACKEND_PACKAGES = {"local": "mrunner-local", "slurm": "mrunner-slurm", "kubernetes": "mrunner-k8s"}

_manager: pluggy.PluginManager | None = None
_distributions: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
_serving: dict[str, tuple[object, hookspecs.BackendInfo]] = {}  # backend name -> (plugin, info)
_backend_hooks: dict[str, BackendHooks] = {}


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
    _serving.clear()
    _backend_hooks.clear()


def _build() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    for name in BUILTIN_PLUGINS:
        _register(pm, __import__(name, fromlist=["_"]), name, f"mrunner (built-in {name})")
    allowed = os.environ.get("MRUNNER_PLUGINS")
    allowed_names = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if allowed_names is not None and entry_point.name not in allowed_names:
            continue
        if pm.get_plugin(entry_point.name) is not None:
            continue  # the same distribution seen twice on sys.path
        dist = entry_point.dist
        where = f"{dist.name} {dist.version}" if dist is not None else entry_point.value
        _register(pm, _load(entry_point, where), entry_point.name, where)
        if dist is not None:
            _distributions[entry_point.name] = (dist.name, dist.version)
    return pm


def _register(pm: pluggy.PluginManager, plugin: Any, name: str, where: str) -> None:
    pm.register(plugin, name=name)
    implemented = {caller.name for caller in pm.get_hookcallers(plugin) or []}
    unknown = sorted(hook for hook in implemented if not hasattr(hookspecs, hook))
    if unknown:
        pm.unregister(plugin)
        raise MrunnerError(
            f"plugin {name!r} from {where} implements {unknown[0]}, which is not an mrunner hook (misspelled? "
            f"the hooks are in mrunner/hookspecs.py); fix or uninstall it, or leave it out with MRUNNER_PLUGINS"
        )
    if "mrunner_backends" not in implemented:
        return
    missing = [hook for hook in hookspecs.BACKEND_REQUIRED if hook not in implemented]
    if missing:
        pm.unregister(plugin)
        raise MrunnerError(
            f"backend plugin {name!r} from {where} does not implement {missing[0]}, which every backend must; "
            f"upgrade or uninstall it, or leave it out with MRUNNER_PLUGINS"
        )
    for infos in plugin_call(pm, plugin, "mrunner_backends"):
        for info in infos or []:
            _serving.setdefault(info.name, (plugin, info))


def plugin_call(pm: pluggy.PluginManager, plugin: Any, hook: str) -> Any:
    """Call one plugin's implementation of ``hook`` alone (a list holding its result)."""
    others = [p for p in pm.get_plugins() if p is not plugin]
    return pm.subset_hook_caller(hook, others)()


def _load(entry_point: EntryPoint, where: str) -> Any:
    try:
        return entry_point.load()
    except Exception as error:  # a broken plugin must not look like a bug in mrunner
        raise MrunnerError(
            f"plugin {entry_point.name!r} from distribution {where} failed to import: "
            f"{type(error).__name__}: {error}; reinstall or uninstall it, or leave it out with "
            f"MRUNNER_PLUGINS"
        ) from error


class BackendHooks:
    """The hooks as the core calls them for one backend: its plugin's and every non-backend plugin's
    (trackers, the core's own), never another backend's."""

    def __init__(self, pm: pluggy.PluginManager, excluded: list[object]) -> None:
        self._pm = pm
        self._excluded = excluded
        self._callers: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        caller = self._callers.get(name)
        if caller is None:
            caller = self._callers[name] = self._pm.subset_hook_caller(name, self._excluded)
        return caller


def backend_hooks(backend: str) -> BackendHooks:
    """The hooks for sweeps and contexts of ``backend`` (which must be installed)."""
    require_backend(backend)
    hooks = _backend_hooks.get(backend)
    if hooks is None:
        chosen = _serving[backend][0]
        others = [plugin for plugin, _ in _serving.values() if plugin is not chosen]
        hooks = _backend_hooks[backend] = BackendHooks(manager(), others)
    return hooks


def takes(backend: str, hook: str, argument: str) -> bool:
    """Whether the plugin serving ``backend`` implements ``hook`` with ``argument`` (pluggy gives an
    implementation only the arguments it names, so a hook can grow one that older plugins do not take)."""
    require_backend(backend)
    chosen = _serving[backend][0]
    implementations = getattr(manager().hook, hook).get_hookimpls()
    return any(impl.plugin is chosen and argument in impl.argnames for impl in implementations)


def distribution_of(plugin_name: str) -> tuple[str, str]:
    """(distribution, version) of a registered plugin, for `mrunner plugins`."""
    from mrunner import __version__

    return _distributions.get(plugin_name, ("mrunner (built-in)", __version__))


def serving_distribution(backend: str) -> str:
    """``distribution version`` of the plugin serving ``backend``, for messages about it."""
    plugin = _serving[backend][0]
    name = manager().get_name(plugin) or "?"
    return " ".join(distribution_of(name))


def backends() -> dict[str, hookspecs.BackendInfo]:
    """Every installed backend by name."""
    manager()
    return {name: info for name, (_, info) in _serving.items()}


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
