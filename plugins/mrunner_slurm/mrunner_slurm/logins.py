"""`mrunner login CONTEXT`: one OpenSSH master connection per cluster, opened in a terminal (where the cluster
asks for a passphrase or a one-time code) and reused by every later mrunner command in any shell.

The master's socket lives in mrunner's runtime folder (``paths.runtime_dir()/ssh``, mode 0700: only this user
can reach the connection; ``/tmp/mrunner-UID/ssh`` where ``$XDG_RUNTIME_DIR`` is too long for a socket), named by
a hash of the user, host, port and jump host ``ssh -G`` resolves ``slurm_url`` to (as OpenSSH's ``%C``), next to
a small JSON note of which context opened it and when (for `mrunner login` without a context). It stays up
``login_persist`` after its last use (OpenSSH's ControlPersist). Where the user's own ssh config already keeps a
master for the host and it is up, mrunner uses theirs and opens none.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shlex
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mrunner.backend import Login
from mrunner.errors import MrunnerError
from mrunner_slurm.transport import NeedsLogin

_COUNTER = itertools.count()
#: The longest socket path below the runtime folder: ``/ssh/``, a name (``command_socket_path``: 16 hex digits,
#: a pid, a count) and the suffix ssh adds to the temporary socket it renames (``.`` and 16 characters).
_ROOM = len("/ssh/") + 16 + len("-4194304-99999") + 17


def folder() -> Path:
    from mrunner import paths

    sockets = paths.runtime_dir(room=_ROOM) / "ssh"
    sockets.mkdir(mode=0o700, exist_ok=True)
    return sockets


def _name(found: Mapping[str, str]) -> str:
    """The master's name from where ``ssh -G`` says the connection goes (user, host, port, jump host), as
    OpenSSH's own ``%C`` token: every spelling of one cluster (an alias, ``user@alias``, its HostName, an
    explicit port) shares one login, and two clusters never do."""
    place = "\0".join(found.get(key, "") for key in ("user", "hostname", "port", "proxyjump"))
    return hashlib.sha256(place.encode()).hexdigest()[:16]  # short: a socket path has ~100 bytes


def socket_path(found: Mapping[str, str]) -> str:
    """Where the login master of this cluster listens (``found``: what ``ssh -G`` says of the destination)."""
    return str(folder() / _name(found))


def command_socket_path(found: Mapping[str, str]) -> str:
    """A fresh socket for a master this command opens for itself (and closes at its end)."""
    return str(folder() / f"{_name(found)}-{os.getpid()}-{next(_COUNTER)}")


def _require_openssh(context: Mapping[str, Any], context_name: str) -> None:
    from mrunner_slurm import transport

    if transport.chosen(context) != "openssh":
        raise MrunnerError(
            f"context {context_name}: `mrunner login` keeps an OpenSSH connection, and this context uses paramiko "
            f"(ssh: paramiko), which asks for a code once per command instead; set ssh: openssh to log in"
        )


def login(context: Mapping[str, Any], context_name: str) -> str:
    """Open the cluster's login master (prompting in the terminal as ssh does) unless one is up already."""
    from mrunner_slurm import openssh, terminal

    _require_openssh(context, context_name)
    url, config = str(context["slurm_url"]), context.get("ssh_config")
    where = openssh.destination(url, config)
    found = openssh.settings(where)
    target = openssh.target_of(where, found)
    theirs = found.get("controlpath")
    if theirs and openssh.masters.check(where, theirs):
        return f"{target.alias}: your own ssh master connection ({theirs}) is up; mrunner uses it"
    path = socket_path(found)
    persist = str(context["login_persist"])
    note_file = Path(path + ".json")
    if openssh.masters.check(where, path):
        kept = _read_note(note_file)
        if kept is not None:  # its note says since when: a second login changes nothing
            return (
                f"already logged in to {target.alias} ({kept.get('where')}) since "
                f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(kept['opened_at']))}, kept {kept.get('persist')} "
                f"after its last use; `mrunner logout {context_name}` closes it"
            )
    else:
        try:
            openssh.masters.open(where, target, path, persist, interactive=terminal.available(), found=found)
        except NeedsLogin as error:  # no terminal to ask in
            raise NeedsLogin(
                f"context {context_name}: {target.alias} ({target.user}@{target.host}:{target.port}) needs an "
                f"interactive login ({error.reason}) and `mrunner login` has no terminal to ask in: run "
                f"`mrunner login {context_name}` in a terminal"
            ) from None
    note = {
        "context": context_name,
        "url": url,
        "ssh_config": config,
        "opened_at": time.time(),
        "persist": persist,
        "where": f"{target.user}@{target.host}:{target.port}",
    }
    note_file.write_text(json.dumps(note))
    return (
        f"logged in to {target.alias} ({note['where']}): mrunner commands in any shell reuse this connection "
        f"until {persist} after its last use, or `mrunner logout {context_name}`"
    )


def _read_note(note_file: Path) -> dict[str, Any] | None:
    try:
        note = json.loads(note_file.read_text())
        float(note["opened_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return note if isinstance(note, dict) else None


def logout(context: Mapping[str, Any], context_name: str) -> str:
    """Close the cluster's login master; the user's own master is theirs to close."""
    from mrunner_slurm import openssh

    _require_openssh(context, context_name)
    url, config = str(context["slurm_url"]), context.get("ssh_config")
    where = openssh.destination(url, config)
    found = openssh.settings(where)
    path = socket_path(found)
    Path(path + ".json").unlink(missing_ok=True)
    if openssh.masters.check(where, path):
        openssh.masters.close(where, path)
        return f"logged out of {where.destination} (context {context_name})"
    theirs = found.get("controlpath")
    if theirs and openssh.masters.check(where, theirs):
        return (
            f"{where.destination}: the connection is your own ssh master ({theirs}), not mrunner's; close it "
            f"with `{shlex.join(where.argv('-O', 'exit'))}`"
        )
    return f"context {context_name}: no login is open for {where.destination}"


def logins() -> list[Login]:
    """The login masters that are up; notes of ones that ended are removed."""
    from mrunner_slurm import openssh

    open_ones = []
    for note_file in sorted(folder().glob("*.json")):
        try:
            note = json.loads(note_file.read_text())
            where = openssh.destination(note["url"], note.get("ssh_config"))
        except (OSError, ValueError, KeyError, MrunnerError):
            note_file.unlink(missing_ok=True)
            continue
        if openssh.masters.check(where, str(note_file.with_suffix(""))):
            open_ones.append(
                Login(note["context"], f"{where.destination} ({note['where']})", note["opened_at"], note["persist"])
            )
        else:
            note_file.unlink(missing_ok=True)
    return open_ones
