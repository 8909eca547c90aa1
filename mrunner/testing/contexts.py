"""Contexts a test writes into its own mrunner home (the ``mrunner_home`` fixture)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_context(home: Path, name: str, keys: Mapping[str, Any] | str) -> str:
    """Write context ``name`` into the mrunner home ``home`` (``mrunner_home``), as a user's
    ``~/.config/mrunner/context/NAME.yaml``; ``keys`` is the context's keys, or the file's text as it is (for a
    test of a malformed file). Returns the name, for ``+context=NAME``."""
    folder = home / "config" / "mrunner" / "context"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(keys if isinstance(keys, str) else json.dumps(dict(keys)))  # JSON is YAML
    return name
