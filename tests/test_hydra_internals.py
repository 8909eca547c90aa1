"""Only ``mrunner/hydra_internals.py`` may import what Hydra does not offer as public API.

Hydra (1.3) publishes no list of its public modules, so "public" here is what its documentation tells
apps and plugin authors to import, and what its own plugins (the joblib, submitit and Ray launchers, the
Optuna and Ax sweepers, ``examples/plugins``) import:

- apps: ``hydra`` itself (``main``, ``compose``, ``initialize*``, ``utils``, ``MissingConfigException``),
  ``hydra.main``, ``hydra.compose``, ``hydra.initialize``, ``hydra.utils``, ``hydra.types``,
  ``hydra.errors``, ``hydra.core.config_store`` (structured configs), ``hydra.core.hydra_config``
  (``HydraConfig.get()``, "Accessing the Hydra config");
- plugins: ``hydra.plugins.*`` (the base classes), ``hydra.core.plugins`` (``Plugins.instance()``),
  ``hydra.core.utils`` (``run_job``, ``setup_globals``, ``JobReturn``, ...), ``hydra.core.singleton``
  (launchers carry ``Singleton.get_state()`` to their jobs), ``hydra.core.override_parser.overrides_parser``
  and ``.types`` (sweepers parse overrides), ``hydra.test_utils.*`` (the launcher test suites).

Everything else is internal: ``hydra._internal`` (private by its name), Hydra's generated grammar
(``hydra.grammar``), the grammar's visitor, ``hydra.version`` (how ``version_base`` is applied), the
config loader's interfaces and types (``hydra.core.config_loader``, ``hydra.core.object_type``), and any
name that starts with ``_`` wherever it is imported from (``hydra.core.utils._save_config``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
ROOM = REPOSITORY / "mrunner" / "hydra_internals.py"

PUBLIC_MODULES = {
    "hydra",
    "hydra.main",
    "hydra.compose",
    "hydra.initialize",
    "hydra.utils",
    "hydra.types",
    "hydra.errors",
    "hydra.core.config_store",
    "hydra.core.hydra_config",
    "hydra.core.plugins",
    "hydra.core.utils",
    "hydra.core.singleton",
    "hydra.core.override_parser.overrides_parser",
    "hydra.core.override_parser.types",
}
PUBLIC_PACKAGES = ("hydra.plugins", "hydra.test_utils")  # and every module inside them


def is_public(module: str) -> bool:
    if any(part.startswith("_") for part in module.split(".")):
        return False
    return module in PUBLIC_MODULES or any(module == p or module.startswith(f"{p}.") for p in PUBLIC_PACKAGES)


def internal_imports(path: Path) -> list[str]:
    """``line: what`` for every import of a Hydra internal in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: {a.name}" for a in node.names if _is_hydra(a.name) and not is_public(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level and _is_hydra(node.module):
            # `from hydra.core import plugins` imports a public module; `from hydra.core.utils import run_job`
            # a public name of a public module; `from hydra.core.utils import _save_config` a private one.
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                if not is_public(target) and not (is_public(node.module) and not alias.name.startswith("_")):
                    found.append(f"{node.lineno}: {target}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # importlib.import_module("hydra._internal...") or a `_target_` naming an internal class
            if _is_hydra(node.value) and node.value.startswith(("hydra._", "hydra.grammar")):
                found.append(f"{node.lineno}: {node.value}")
    return found


def _is_hydra(module: str) -> bool:
    return module.split(".")[0] == "hydra"


def shipped_sources() -> list[Path]:
    """mrunner's modules and every plugin's package: what users install (the tests are not)."""
    files = list((REPOSITORY / "mrunner").rglob("*.py"))
    for plugin in (REPOSITORY / "plugins").iterdir():
        files += [f for f in plugin.rglob("*.py") if "tests" not in f.relative_to(plugin).parts]
    return sorted(files)


def test_only_the_hydra_room_imports_hydra_internals():
    offenders = {
        str(path.relative_to(REPOSITORY)): found
        for path in shipped_sources()
        if path != ROOM and (found := internal_imports(path))
    }
    assert offenders == {}, "move these into mrunner/hydra_internals.py"


def test_the_room_itself_is_seen_importing_internals():
    """The check finds what it looks for: the room's own imports are reported, by module and by name."""
    found = internal_imports(ROOM)
    assert any("hydra._internal.config_loader_impl" in line for line in found)
    assert any("hydra.grammar.gen" in line for line in found)
    assert any("hydra.core.override_parser.overrides_visitor" in line for line in found)


@pytest.mark.parametrize(
    "source, internal",
    [
        ("from hydra.core.utils import _save_config", True),
        ("from hydra.core.utils import run_job, JobReturn", False),
        ("import hydra._internal.utils", True),
        ("from hydra import _internal", True),
        ("from hydra import compose, initialize_config_dir", False),
        ("from hydra.core import plugins", False),
        ("from hydra.version import setbase", True),
        ("from hydra.core.object_type import ObjectType", True),
        ("from hydra.plugins.launcher import Launcher", False),
        ("importlib.import_module('hydra._internal.hydra')", True),
        ("from omegaconf import OmegaConf", False),
    ],
)
def test_what_counts_as_internal(tmp_path, source, internal):
    path = tmp_path / "module.py"
    path.write_text(source + "\n")
    assert bool(internal_imports(path)) is internal
