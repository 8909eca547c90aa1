"""Recognising a script that is a Hydra app, and the options of its config groups (for ``glob()``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

_HYDRA_MAIN = re.compile(rb"@\s*hydra\.main\b|from\s+hydra\s+import\s+[^\n]*\bmain\b")


def is_hydra_app(script: Path) -> bool:
    """Whether the script decorates its entry point with ``hydra.main`` (read, not run)."""
    try:
        return bool(_HYDRA_MAIN.search(script.read_bytes()))
    except OSError:
        return False


def config_dir(script: Path) -> Path | None:
    """The app's ``config_path`` folder, from ``@hydra.main(config_path=...)``."""
    try:
        tree = ast.parse(script.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and is_hydra_main(node.func):
            for keyword in node.keywords:
                if keyword.arg == "config_path" and isinstance(keyword.value, ast.Constant):
                    if isinstance(keyword.value.value, str):
                        return (script.parent / keyword.value.value).resolve()
    return None


def is_hydra_main(func: ast.expr) -> bool:
    """Whether a call is ``hydra.main(...)`` or ``main(...)`` (``from hydra import main``)."""
    if isinstance(func, ast.Attribute):
        return func.attr == "main" and isinstance(func.value, ast.Name) and func.value.id == "hydra"
    return isinstance(func, ast.Name) and func.id == "main"


def group_options(script: Path, group: str) -> list[str]:
    """The option names of config group ``group`` of the app (``db/*.yaml`` -> ``["mysql", "postgres"]``)."""
    folder = config_dir(script)
    if folder is None or not (folder / group).is_dir():
        return []
    return sorted(p.stem for p in (folder / group).iterdir() if p.suffix in (".yaml", ".yml"))
