"""Where mrunner keeps its files, following the XDG base directory conventions."""

from __future__ import annotations

import os
import stat
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


#: The longest path of a unix socket (``sun_path``: 108 bytes on Linux, 104 on macOS and the BSDs, with its NUL).
SOCKET_PATH_MAX = 103


#: Where systemd-logind makes a user's runtime folder, which ``$XDG_RUNTIME_DIR`` names in their sessions.
SESSION_RUNTIME = "/run/user/{uid}"


def _session_runtime() -> str | None:
    """The user's logind runtime folder, if there is one of theirs that only they can use. cron (and other
    daemons) start commands without ``$XDG_RUNTIME_DIR``; they must find the logins a terminal opened."""
    path = SESSION_RUNTIME.format(uid=os.getuid())
    try:
        status = os.lstat(path)
    except OSError:
        return None
    return (
        path if stat.S_ISDIR(status.st_mode) and status.st_uid == os.getuid() and not status.st_mode & 0o077 else None
    )


def runtime_dir(room: int = 0) -> Path:
    """``$XDG_RUNTIME_DIR/mrunner`` (else ``/run/user/UID/mrunner`` where logind made that folder, else
    ``/tmp/mrunner-UID``): sockets of open logins, which only this user may reach. Created with mode 0700; one that another user owns, or others can enter, is refused. ``room``:
    how long the paths below it get; where ``$XDG_RUNTIME_DIR`` is too long to leave that much of a socket's
    path, ``/tmp/mrunner-UID`` instead (ssh cannot listen on a longer path)."""
    from mrunner.errors import MrunnerError

    base = os.environ.get("XDG_RUNTIME_DIR") or _session_runtime()
    folder = Path(base) / "mrunner" if base else None
    if folder is None or len(os.fsencode(folder)) + room > SOCKET_PATH_MAX:
        folder = Path("/tmp") / f"mrunner-{os.getuid()}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    status = folder.lstat()
    if status.st_uid != os.getuid() or status.st_mode & 0o077 or not folder.is_dir() or folder.is_symlink():
        raise MrunnerError(
            f"{folder} must be a folder of yours that only you can use (mode 0700): remove it, or set "
            f"XDG_RUNTIME_DIR to such a folder"
        )
    return folder


def writable_folder(path: Path, option: str) -> Path:
    """``path`` made absolute and created, a folder mrunner can write into; else one line naming ``option``
    (the flag or context key that gave it), before anything is fetched or recorded."""
    from mrunner.errors import MrunnerError

    path = path.expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise MrunnerError(f"{option} {path} is a file, not a folder: name a folder (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise MrunnerError(
            f"{option} {path}: cannot create it ({error.strerror}): name a folder you can write"
        ) from None
    try:  # a probe, not ``os.access``: root passes every mode check, not a read-only or virtual file system
        os.close(os.open(path / f".mrunner-probe-{os.getpid()}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        os.unlink(path / f".mrunner-probe-{os.getpid()}")
    except OSError as error:
        raise MrunnerError(f"{option} {path}: cannot write into it ({error.strerror}): name another folder") from None
    return path


def writable_file(path: Path, option: str) -> Path:
    """``path`` as a file mrunner can write (its folder exists and takes it; an existing file is replaced);
    else one line naming ``option``, before anything is fetched."""
    from mrunner.errors import MrunnerError

    path = path.expanduser()
    if path.is_dir():
        raise MrunnerError(f"{option} {path} is a folder: name a file in it")
    folder = path.absolute().parent
    if not folder.is_dir():
        raise MrunnerError(f"{option} {path}: there is no folder {folder}: create it, or name a file elsewhere")
    try:  # opened as the command will open it (a new file is removed again): mode bits do not stop root
        if path.exists():
            os.close(os.open(path, os.O_WRONLY))
        else:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            os.unlink(path)
    except OSError as error:
        raise MrunnerError(f"{option} {path}: cannot write it ({error.strerror}): name another file") from None
    return path
