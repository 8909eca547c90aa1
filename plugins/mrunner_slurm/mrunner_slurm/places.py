"""The cluster a context's ``slurm_url`` names, spelled one way: ``user@hostname:port`` as ssh resolves it.

Why. ``slurm_url`` may name one login node many ways: a Host alias, ``user@alias`` (the user the alias's
config gives anyway), the alias's HostName, an explicit default port, a host name in capitals or with a
space around it. They reach the same cluster and the same storage, so an experiment's identity (and with it
"already submitted"), gc's list of clusters and whatever else tells clusters apart must take them as one.
The place is read as the context's transport reads its config, so that both agree: ``ssh -G`` for OpenSSH
(its ``/etc/ssh/ssh_config`` and ``Include`` too), paramiko's ``SSHConfig`` for the paramiko transport (the
same lookup ``mrunner_slurm.ssh`` connects with). Nothing is connected to: a dry run may ask. A ``slurm_url``
that cannot be resolved (not a host, a config that cannot be read) keeps its own spelling, tidied: the
submission that uses it says what is wrong.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from typing import Any

from mrunner.errors import MrunnerError
from mrunner_slurm.transport import SLURM_URL

#: Resolved places by (slurm_url, ssh_config, transport): one ``ssh -G`` per cluster and command.
_PLACES: dict[tuple[str, Any, str], str] = {}


def place(context: Mapping[str, Any]) -> str:
    """``user@hostname:port`` (a numeric IPv6 address in brackets) of the context's ``slurm_url``."""
    from mrunner_slurm import transport

    url, config = str(context["slurm_url"]), context.get("ssh_config") or transport.DEFAULT_CONFIG
    try:
        how = transport.chosen(context)
    except MrunnerError:
        how = "openssh"
    key = (url, config, how)
    if key not in _PLACES:
        _PLACES[key] = _resolved(url, config, how)
    return _PLACES[key]


def written_port(url: str) -> int | None:
    """The port ``slurm_url`` spells (``host:PORT``, ``[::1]:PORT``), None when it names none."""
    match = SLURM_URL.match(url.strip())
    return int(match["port"]) if match and match["port"] else None


def canonical(context: Mapping[str, Any]) -> dict[str, Any]:
    """The context with ``slurm_url`` as its ``place`` and ``ssh_config`` left out (it only served to resolve
    it): what an experiment's identity and gc compare."""
    found = {key: value for key, value in context.items() if key != "ssh_config"}
    found["slurm_url"] = place(context)
    return found


def _resolved(url: str, config: str, how: str) -> str:
    try:
        if how == "openssh":
            from mrunner_slurm import openssh

            settings = openssh.settings(openssh.destination(url, config))
            user, host, port = settings.get("user", ""), settings.get("hostname", ""), settings.get("port", "22")
        else:
            from mrunner_slurm import ssh

            target = ssh.resolve(url, config)
            user, host, port = target.user, target.host, str(target.port)
    except (MrunnerError, OSError, ValueError, subprocess.SubprocessError):  # unresolvable: the spelling, tidied
        match = SLURM_URL.match(url.strip())
        if not match:
            return url.strip()
        user, host, port = match["user"] or "", match["host"], match["port"] or "22"
    return spelled(user, host, port)


def spelled(user: str, host: str, port: str | int) -> str:
    """One spelling of a place: host names compare without case, a trailing dot or surrounding space."""
    host = host.strip().rstrip(".").lower().strip("[]")
    shown = f"[{host}]" if ":" in host else host
    return f"{user.strip()}@{shown}:{int(port)}" if user.strip() else f"{shown}:{int(port)}"
