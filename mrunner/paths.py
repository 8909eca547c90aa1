"""Where mrunner keeps its files, following the XDG base directory conventions."""

from __future__ import annotations

import os
from pathlib import Path


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/mrunner`` (default ``~/.config/mrunner``): config.yaml and context/*.yaml."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "mrunner"


def data_dir() -> Path:
    """``$XDG_DATA_HOME/mrunner`` (default ``~/.local/share/mrunner``): records, snapshots, local runs."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "mrunner"


def shipped_conf_dir() -> Path:
    """The Hydra configs shipped with mrunner: inside the wheel, or the repository's top-level ``conf/``."""
    here = Path(__file__).resolve().parent
    packaged = here / "conf"
    return packaged if packaged.is_dir() else here.parent / "conf"
