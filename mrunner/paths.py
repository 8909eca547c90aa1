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


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/mrunner`` (else ``/tmp/mrunner-UID``): sockets of open logins, which only this user
    may reach. Created with mode 0700; one that another user owns, or others can enter, is refused."""
    from mrunner.errors import MrunnerError

    base = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(base) / "mrunner" if base else Path("/tmp") / f"mrunner-{os.getuid()}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    status = folder.lstat()
    if status.st_uid != os.getuid() or status.st_mode & 0o077 or not folder.is_dir() or folder.is_symlink():
        raise MrunnerError(
            f"{folder} must be a folder of yours that only you can use (mode 0700): remove it, or set "
            f"XDG_RUNTIME_DIR to such a folder"
        )
    return folder
