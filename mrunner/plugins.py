"""The plugin manager: built-in plugins plus every distribution's entry point in the group ``mrunner``, and
the typed facade the core calls them through.

``MRUNNER_PLUGINS`` restricts which entry points load: a comma-separated list of entry-point names
(``MRUNNER_PLUGINS=local,slurm``); empty loads none. Built-in plugins always load.

Each plugin is checked as it loads (one line naming its distribution): a hook name that does not exist is
an error instead of an implementation nobody calls; a plugin of the old backend shape (module-level
``mrunner_backends``, ``mrunner_submit``, ...) is refused with a pointer to docs/write-a-backend.md; a
backend object must be a complete ``mrunner.Backend``. The core reaches a backend as ``backend(name)``, an
object whose methods mypy checks, and the trackers through the functions below, which call the backend's
method and then every plugin's hook.

``MRUNNER_TRACE_CALLS`` names a folder where each process leaves an empty file per backend method
(``Backend.submit``) and hook (``mrunner_check``) it called: the test kit's ``--mrunner-check-called`` sets it
so that a whole test run shows which of them no test exercises, whichever process called them.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

from mrunner import entrypoints, hookspecs
from mrunner.backend import Backend
from mrunner.errors import MrunnerError

if TYPE_CHECKING:
    from mrunner.records import Run, Sweep
    from mrunner.reporter import Reporter
    from mrunner.schema import ContextKey

ENTRY_POINT_GROUP = "mrunner"
TRACE_CALLS = "MRUNNER_TRACE_CALLS"
BUILTIN_PLUGINS = ("mrunner.builtin", "mrunner.trackers.neptune", "mrunner.trackers.mlflow", "mrunner.trackers.wandb")

# Where to get the backends mrunner's own project publishes, for the "not installed" error.
KNOWN_BACKEND_PACKAGES = {"local": "mrunner-local", "slurm": "mrunner-slurm", "kubernetes": "mrunner-k8s"}

# The hooks a backend plugin implemented before a backend became one object: refused with a pointer to the docs.
OLD_BACKEND_HOOKS = frozenset(
    {
        "mrunner_backends",
        "mrunner_package",
        "mrunner_setup_resources",
        "mrunner_submit",
        "mrunner_status",
        "mrunner_cancel",
        "mrunner_logs",
        "mrunner_pull",
        "mrunner_plan",
        "mrunner_render",
        "mrunner_output_dirs",
        "mrunner_gc",
        "mrunner_login",
        "mrunner_logout",
        "mrunner_logins",
    }
)

_manager: pluggy.PluginManager | None = None
_distributions: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
_serving: dict[str, tuple[object, Backend]] = {}  # backend name -> (plugin, backend)
_called: set[str] = set()  # what this process already left a trace of
_left_out: dict[str, str] = {}  # entry-point name -> distribution, of the plugins MRUNNER_PLUGINS leaves out


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
    _left_out.clear()


def _build() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    if os.environ.get(TRACE_CALLS):
        pm.add_hookcall_monitoring(lambda name, _implementations, _arguments: _trace(name), lambda *_: None)
    for name in BUILTIN_PLUGINS:
        _register(pm, __import__(name, fromlist=["_"]), name, f"mrunner (built-in {name})")
    allowed = os.environ.get("MRUNNER_PLUGINS")
    allowed_names = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    for entry_point in entrypoints.of_group(ENTRY_POINT_GROUP):
        if allowed_names is not None and entry_point.name not in allowed_names:
            _left_out[entry_point.name] = entry_point.distribution[0] if entry_point.distribution else ""
            continue
        if pm.get_plugin(entry_point.name) is not None:
            continue  # the same distribution seen twice on sys.path
        _register(pm, _load(entry_point, entry_point.where), entry_point.name, entry_point.where)
        if entry_point.distribution is not None:
            _distributions[entry_point.name] = entry_point.distribution
    return pm


def _register(pm: pluggy.PluginManager, plugin: Any, name: str, where: str) -> None:
    implemented = {hook for hook in dir(plugin) if pm.parse_hookimpl_opts(plugin, hook) is not None}
    old = sorted(implemented & OLD_BACKEND_HOOKS)
    if old:
        raise MrunnerError(
            f"plugin {name!r} from {where} is a backend of the old shape (module-level hooks such as {old[0]}): "
            f"a backend is now one mrunner.Backend subclass registered through mrunner_register_backends "
            f"(docs/write-a-backend.md); upgrade or uninstall it, or leave it out with MRUNNER_PLUGINS"
        )
    unknown = sorted(hook for hook in implemented if not hasattr(hookspecs, hook))
    if unknown:
        raise MrunnerError(
            f"plugin {name!r} from {where} implements {unknown[0]}, which is not an mrunner hook (misspelled? "
            f"the hooks are in mrunner/hookspecs.py); fix or uninstall it, or leave it out with MRUNNER_PLUGINS"
        )
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as error:  # a hook implemented with arguments its declaration lacks
        raise MrunnerError(
            f"plugin {name!r} from {where} does not fit mrunner's hooks: {' '.join(str(error).split())}; upgrade "
            f"or uninstall it, or leave it out with MRUNNER_PLUGINS"
        ) from None
    if "mrunner_register_backends" not in implemented:
        return
    registered: list[Backend] = []
    others = [p for p in pm.get_plugins() if p is not plugin]
    try:
        pm.subset_hook_caller("mrunner_register_backends", others)(register=registered.append)
    except Exception as error:  # an abstract class cannot be instantiated: say which method it misses
        raise MrunnerError(_refused(plugin, name, where, error)) from error
    for backend in registered:
        problem = _problem(backend)
        if problem:
            raise MrunnerError(
                f"backend plugin {name!r} from {where} registers {problem}; upgrade or uninstall it, or leave it "
                f"out with MRUNNER_PLUGINS"
            )
        if os.environ.get(TRACE_CALLS):
            _trace_methods(backend)
        _serving.setdefault(backend.name, (plugin, backend))  # the first plugin to serve a name keeps it


def _trace(name: str) -> None:
    folder = os.environ.get(TRACE_CALLS)  # gone once the test run that set it has ended
    if folder and name not in _called:
        _called.add(name)
        try:
            with open(os.path.join(folder, name), "a", encoding="ascii"):
                pass
        except OSError:  # the run removed its folder: nothing is counted any more
            pass


def _trace_methods(backend: Backend) -> None:
    """Leave a trace of each call of ``backend``'s methods; the method is looked up at each call, so a test
    that patches the class still reaches its patch."""
    for method in (name for name, value in vars(Backend).items() if inspect.isfunction(value)):

        def traced(*args: Any, _method: str = method, **kwargs: Any) -> Any:
            _trace(f"Backend.{_method}")
            return getattr(type(backend), _method)(backend, *args, **kwargs)

        setattr(backend, method, traced)


def _refused(plugin: Any, name: str, where: str, error: Exception) -> str:
    incomplete = [
        value
        for value in vars(plugin).values()
        if inspect.isclass(value)
        and issubclass(value, Backend)
        and inspect.isabstract(value)
        and value.__module__ == getattr(plugin, "__name__", None)
    ]
    if incomplete and isinstance(error, TypeError):
        missing = sorted(incomplete[0].__abstractmethods__)
        return (
            f"backend plugin {name!r} from {where}: {incomplete[0].__name__} does not implement "
            f"{', '.join(missing)}, which every mrunner.Backend must; upgrade or uninstall it, or leave it out "
            f"with MRUNNER_PLUGINS"
        )
    return (
        f"backend plugin {name!r} from {where} failed to register its backends: {type(error).__name__}: {error}; "
        f"upgrade or uninstall it, or leave it out with MRUNNER_PLUGINS"
    )


def _problem(backend: object) -> str | None:
    """What is wrong with an object a plugin registered as a backend, or None."""
    if not isinstance(backend, Backend):
        return f"{backend!r}, which is not an mrunner.Backend"
    if not isinstance(getattr(backend, "name", None), str) or not backend.name:
        return f"a {type(backend).__name__} without a name (set the class attribute `name`)"
    return None


def _load(entry_point: entrypoints.EntryPoint, where: str) -> Any:
    try:
        return entry_point.load()
    except Exception as error:  # a broken plugin must not look like a bug in mrunner
        if isinstance(error.__cause__, KeyboardInterrupt):
            # a Ctrl-C landing in a `__set_name__` of the plugin's classes (Python < 3.12 wraps it in a
            # RuntimeError): the stop, which `cli.main` ends with, not a broken plugin
            raise
        raise MrunnerError(
            f"plugin {entry_point.name!r} from distribution {where} failed to import: "
            f"{type(error).__name__}: {error}; reinstall or uninstall it, or leave it out with "
            f"MRUNNER_PLUGINS"
        ) from error


def distribution_of(plugin_name: str) -> tuple[str, str]:
    """(distribution, version) of a registered plugin, for `mrunner plugins`."""
    from mrunner import __version__

    return _distributions.get(plugin_name, ("mrunner (built-in)", __version__))


def serving_distribution(backend: str) -> str:
    """``distribution version`` of the plugin serving ``backend``, for messages about it."""
    plugin = _serving[backend][0]
    name = manager().get_name(plugin) or "?"
    return " ".join(distribution_of(name))


def backends() -> dict[str, Backend]:
    """Every installed backend by name."""
    manager()
    return {name: backend for name, (_, backend) in _serving.items()}


def backends_of(plugin: object) -> list[Backend]:
    """The backends ``plugin`` registered, for `mrunner plugins`."""
    manager()
    return [backend for owner, backend in _serving.values() if owner is plugin]


def backend(name: str) -> Backend:
    """The installed backend ``name``, or an error that names the package to install."""
    served = backends()
    if name in served:
        return served[name]
    package = KNOWN_BACKEND_PACKAGES.get(name)
    installed = ", ".join(sorted(served)) or "none"
    left_out = [
        entry for entry, distribution in _left_out.items() if name in (entry, distribution) or package == distribution
    ]
    if left_out:  # installed: a typo in MRUNNER_PLUGINS is not fixed by installing it again
        raise MrunnerError(
            f"backend {name!r} is installed but MRUNNER_PLUGINS={os.environ.get('MRUNNER_PLUGINS', '')!r} leaves it "
            f"out: add {left_out[0]} to it, or unset it (loaded backends: {installed})"
        )
    if package:
        hint = f"install it with `pip install {package}`"
    else:
        hint = "install the package that provides it"
    raise MrunnerError(f"backend {name!r} is not installed: {hint} (installed backends: {installed})")


# -- what the core asks the backend and every tracker ---------------------------------------------------------


def context_keys(backend_name: str) -> dict[str, ContextKey]:
    """Every key a context of ``backend_name`` accepts: the core's, each tracker's, then the backend's
    (a backend's key of a core key's name overrides it)."""
    from mrunner.builtin import CoreKeys
    from mrunner.schema import keys_of, merge_keys

    chosen = backend(backend_name)
    trackers = [keys_of(declared) for declared in reversed(manager().hook.mrunner_context_keys()) if declared]
    return merge_keys([keys_of(CoreKeys), *trackers], keys_of(chosen.keys))


def warm_up(context: Mapping[str, Any]) -> None:
    """``Backend.warm_up`` of the backend the context file names (when installed), then the trackers'."""
    name = context.get("backend")
    if isinstance(name, str) and name in backends():
        backend(name).warm_up(context)
    manager().hook.mrunner_warm_up(context=context)


def check(context: Mapping[str, Any], context_name: str, dry_run: bool) -> None:
    """``Backend.check`` of the context's backend, then every plugin's ``mrunner_check``."""
    backend(context["backend"]).check(context, context_name, dry_run)
    manager().hook.mrunner_check(context=context, context_name=context_name, dry_run=dry_run)


def canonical(context: Mapping[str, Any]) -> Mapping[str, Any]:
    """``Backend.canonical`` of the context's backend: where it runs, spelled one way."""
    return backend(context["backend"]).canonical(context)


def ready(context: Mapping[str, Any], context_name: str, classes: Sequence[tuple[Mapping[str, Any], int]]) -> None:
    """``Backend.ready`` of the context's backend."""
    backend(context["backend"]).ready(context, context_name, classes)


def secrets(context: Mapping[str, Any]) -> dict[str, str]:
    """Every plugin's ``mrunner_secrets``, merged (the core's own plugin, which forwards the context's
    ``secrets`` list, last)."""
    merged: dict[str, str] = {}
    for contributed in manager().hook.mrunner_secrets(context=context):
        merged.update(contributed or {})
    return merged


def experiment_env(context: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, str]:
    """Every plugin's ``mrunner_experiment_env`` for one experiment, merged."""
    merged: dict[str, str] = {}
    for contributed in manager().hook.mrunner_experiment_env(context=context, parameters=parameters):
        merged.update(contributed or {})
    return merged


def sweep_submitted(sweep: Sweep, runs: Sequence[Run], reporter: Reporter) -> None:
    """Every plugin's ``mrunner_sweep_submitted``."""
    manager().hook.mrunner_sweep_submitted(sweep=sweep, runs=runs, reporter=reporter)
