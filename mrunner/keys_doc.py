"""docs/context-keys.md, generated from the declarations (``python -m mrunner.keys_doc``): the core's keys,
the trackers' and each installed backend's. A module of its own, above the plugins, because it asks them
for their declarations, while ``mrunner.schema`` (which it formats) must stay below everything that declares
keys."""

from __future__ import annotations

from collections.abc import Iterable

from mrunner import plugins
from mrunner.builtin import CoreKeys
from mrunner.schema import ContextKey, keys_of, merge_keys


def markdown() -> str:
    """docs/context-keys.md: the core's keys, the trackers' and each installed backend's, from their
    declarations."""
    core = keys_of(CoreKeys)
    lines = [
        "# Context keys",
        "",
        "<!-- Generated from the declarations by `python -m mrunner.keys_doc > docs/context-keys.md`;"
        " tests/test_schema.py checks it is current. -->",
        "",
        "Every key a context may set, as the core, the trackers and each backend declare it (a dataclass: see",
        "`mrunner/schema.py`). `mrunner context show NAME --keys` lists the keys of one context's backend.",
        "A key marked *per point* is a resource each grid point may ask for differently",
        "(`-m context.mem=8G,32G`, or a spec's `create_experiments(..., resources={...})`): each distinct set is",
        "submitted as its own class (a Slurm job array each). See [per-point resources](resources.md).",
        "",
        "## Every context",
        "",
        *_table(core.values()),
    ]
    for impl in sorted(plugins.manager().hook.mrunner_context_keys.get_hookimpls(), key=lambda i: i.plugin_name):
        declared = impl.function()
        if isinstance(declared, type):
            lines += ["", f"## Tracker `{impl.plugin_name}`", "", *_table(keys_of(declared).values())]
    for name, backend in sorted(plugins.backends().items()):
        keys = merge_keys([core], keys_of(backend.keys))
        own = [keys[key] for key in keys_of(backend.keys)]
        lines += ["", f"## Backend `{name}`", "", backend.description + ".", "", *_table(own)]
    return "\n".join(lines) + "\n"


def _table(keys: Iterable[ContextKey]) -> list[str]:
    rows = ["| key | type | default | option | meaning |", "|---|---|---|---|---|"]
    for declared in keys:
        default = f"`{declared.default_text()}`" if declared.default_text() else ""
        core = declared.core_default_text()
        if core is not None:
            default = f"{default or 'none'} (the core's: `{core}`)"
        meaning = declared.help + (" *(per point)*" if declared.per_point else "")
        cells = [f"`{declared.name}`", declared.kind(), default, declared.option or "", meaning]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return rows


if __name__ == "__main__":
    import sys

    if sys.argv[1:]:
        sys.exit("usage: python -m mrunner.keys_doc > docs/context-keys.md")
    sys.stdout.write(markdown())
