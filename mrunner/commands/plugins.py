"""`mrunner plugins`: what is installed, from which distribution, serving which backends (and the
``Backend`` methods each implements), implementing which hooks.

A plugin that is neither a backend nor a tracker (Hydra's ``mrunner`` launcher) may list the options it
reads as ``OPTIONS``: (option, default, meaning) tuples, shown here.
"""

from __future__ import annotations

import argparse
import inspect
import json
from typing import Any

from mrunner import plugins, table
from mrunner.backend import Backend


def plugins_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "The installed plugins (backends and trackers), their versions and hooks."
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def plugins_command(options: argparse.Namespace) -> int:
    pm = plugins.manager()
    listing = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        distribution, version = plugins.distribution_of(name)
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        served = plugins.backends_of(plugin)
        entry: dict[str, Any] = {
            "name": name,
            "distribution": distribution,
            "version": version,
            "backends": [b.name for b in served],
            "methods": sorted({method for backend in served for method in _implemented(backend)}),
            "hooks": hooks,
        }
        described = getattr(plugin, "OPTIONS", None)
        if described:
            entry["options"] = [{"option": o, "default": d, "help": h} for o, d, h in described]
        listing.append(entry)
    if options.json:
        print(json.dumps(listing, indent=1))
        return 0
    rows = [
        (
            p["name"],
            p["distribution"],
            p["version"],
            ", ".join(p["backends"]) or "-",
            ", ".join([*(h.removeprefix("mrunner_") for h in p["hooks"]), *(f"Backend.{m}" for m in p["methods"])]),
        )
        for p in listing
    ]
    print(table.render(("PLUGIN", "DISTRIBUTION", "VERSION", "BACKENDS", "HOOKS AND METHODS"), rows, max_width=100))
    for plugin in listing:
        if plugin.get("options"):
            print(f"\noptions of {plugin['name']}:")
            described = [(o["option"], json.dumps(o["default"]), o["help"]) for o in plugin["options"]]
            print(table.render(("OPTION", "DEFAULT", "MEANING"), described, max_width=120))
    return 0


def _implemented(backend: Backend) -> list[str]:
    """The ``Backend`` methods ``backend``'s class defines itself (the others keep their defaults)."""
    return [
        name
        for name, value in vars(Backend).items()
        if inspect.isfunction(value) and not name.startswith("_") and getattr(type(backend), name) is not value
    ]
