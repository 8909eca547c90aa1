"""Who may import whom inside the ``mrunner`` package (docs/architecture.md says why).

The graph has an edge for every import of a module of mrunner, read from the source (ast): at the top of
a module, inside a function (a lazy import is still a dependency; it only moves the cost) or under
``TYPE_CHECKING``, and a module named in a string (``importlib.import_module(f"mrunner.commands.{name}")``,
a table of lazy names), which is how the CLI reaches its commands. Two rules hold over it:

- no circle: no module reaches itself through imports;
- layers: every module belongs to one layer of ``LAYERS`` and imports only modules of its own layer or of
  layers listed before it. A new module must be placed here, where its imports say it belongs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mrunner

PACKAGE = Path(mrunner.__file__).parent

#: Lowest first: (layer, its modules). A name covers the module and, for a package, everything in it.
LAYERS: tuple[tuple[str, str], ...] = (
    # the records' vocabulary and small tools of one noun, each standing nearly alone
    (
        "words",
        "errors paths process naming records states reporter table interrupts configfile layout runtime transfer "
        "hydra_app hydra_job hydra_internals schema experiment grid codeview settling treeguard ledger",
    ),
    # one step's machinery each: compose a context, read a spec, snapshot code, keep the records, run an attempt
    ("parts", "config spec resources checks app_config snapshot store recorder attempt gc_lock comparison plot"),
    # what plugins implement and how they are found; the trackers built in
    (
        "contracts",
        "hookspecs backend builtin entrypoints plugins trackers tracking metrics summaries sender mlflow_run wandb_run",
    ),
    # the flow's first rooms: a request made concrete; what follows a hand-over
    ("planning and following", "planning following uploads neptune_uploads mlflow_ends"),
    # what records a sweep and hands it over; what removes what sweeps left
    ("submission", "submission cleanup"),
    # built on a submission
    ("dry run and resume", "dry_run resuming"),
    # the entrances: the commands, the Python API; then the command line that routes to commands
    ("commands", "commands client helpers keys_doc"),
    ("command line", "cli __main__"),
    # the test kit, which runs the command line (its warm launcher imports every module above)
    ("test kit", "testing"),
)
#: The package itself: its ``__init__`` is the experiment's API (``get_configuration``) and names the rest
#: lazily (its edges are in the circle check), and every module imports it first, so it sits in no layer.
UNLAYERED = frozenset({"mrunner"})


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ["mrunner", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _owner(name: str, known: dict[str, Path]) -> str | None:
    """The module of mrunner that ``name`` (a module, or an attribute of one) is, if any."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of mrunner that module ``name`` imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(filter(None, (_owner(alias.name, known) for alias in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                owner = _owner(f"{base}.{alias.name}", known)
                if owner is not None:
                    found.add(owner)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value:
            if node.value in known:
                found.add(node.value)  # a module named in a string: a lazy table, importlib
        elif isinstance(node, ast.JoinedStr) and node.values:
            first = node.values[0]
            if isinstance(first, ast.Constant) and str(first.value).startswith("mrunner.") and first.value[-1] == ".":
                found.update(other for other in known if other.startswith(first.value))  # f"mrunner.commands.{x}"
    # Every module imports its package first whatever it names, so an edge to the package says nothing; the
    # package's own imports (its lazy table) are edges like any other.
    return found - {name, "mrunner"}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle (the strongly connected components of more than one module, Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(edges[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def layer_of(name: str) -> int | None:
    relative = name.removeprefix("mrunner.")
    for level, (_, members) in enumerate(LAYERS):
        if any(relative == member or relative.startswith(member + ".") for member in members.split()):
            return level
    return None


def test_the_graph_sees_lazy_and_dynamic_imports():
    """The checks below are only as good as the graph: it must see what an import at the top alone misses."""
    edges = graph()
    assert "mrunner.following" in edges["mrunner.cleanup"]  # a plain import
    assert "mrunner.snapshot" in edges["mrunner.submission"]  # inside a function
    assert "mrunner.commands.sweeps" in edges["mrunner.cli"]  # importlib.import_module(f"mrunner.commands.{name}")
    assert "mrunner.helpers.specification_helper" in edges["mrunner"]  # the package's table of lazy names


def test_no_module_of_mrunner_imports_itself_through_others():
    assert circles(graph()) == []


def test_a_circle_is_found():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_is_in_a_layer():
    unplaced = sorted(name for name in modules() if name not in UNLAYERED and layer_of(name) is None)
    assert unplaced == [], f"place these in a layer of LAYERS in {__file__} (docs/architecture.md): {unplaced}"


def test_modules_import_only_their_own_layer_or_lower_ones():
    upward = []
    for name, imported in sorted(graph().items()):
        level = layer_of(name)
        if level is None:
            continue
        for other in sorted(imported - UNLAYERED):
            other_level = layer_of(other)
            if other_level is not None and other_level > level:
                upward.append(f"{name} ({LAYERS[level][0]}) imports {other} ({LAYERS[other_level][0]})")
    assert upward == []
