"""An ssh config file as OpenSSH reads it, flattened for paramiko: ``Include`` lines are followed.

paramiko's ``SSHConfig`` handles ``Host``, ``Match`` (host, originalhost, user, localuser, exec, canonical,
final, all) and token expansion, but not ``Include``, so an alias defined in ``~/.ssh/config.d/cluster``
works for ``ssh`` and would be "cannot resolve" here. OpenSSH's rules (ssh_config(5)): an ``Include``
takes one or more paths with globs and ``~``, a relative path is relative to ``~/.ssh`` (for the system
file ``/etc/ssh``), files matching a glob are read in lexical order, a missing file is no error, and the
included lines apply where the ``Include`` stands (inside a ``Host``/``Match`` block only when it applies).
The included text is put in place of the line and the block that was open is opened again after it, which
is exactly that, except for one case paramiko cannot express: an included file with blocks of its own
inside a ``Host``/``Match`` block. That is refused in one line naming the file, as is a cycle.
"""

from __future__ import annotations

import glob
import os
import re
import shlex

MAX_DEPTH = 16  # OpenSSH's READCONF_MAX_DEPTH
#: The ``Match`` criteria paramiko evaluates; it would silently skip others (localnetwork, tagged, ...).
MATCH_CRITERIA = {
    "all": 0,
    "canonical": 0,
    "final": 0,
    "exec": 1,
    "host": 1,
    "originalhost": 1,
    "user": 1,
    "localuser": 1,
}
_KEYWORD = re.compile(r"^\s*(\w+)(?:\s*=\s*|\s+)(.*)$")


class ConfigError(ValueError):
    """The file uses something this reader cannot follow; the message names the file and line."""


def flattened(path: str) -> str:
    """The text of the ssh config at ``path`` with every ``Include`` replaced by what it includes."""
    base = "/etc/ssh" if os.path.abspath(path).startswith("/etc/ssh/") else os.path.expanduser("~/.ssh")
    return "\n".join(_lines(os.path.expanduser(path), base, header=None, depth=0, seen=())) + "\n"


def _lines(path: str, base: str, header: str | None, depth: int, seen: tuple[str, ...]) -> list[str]:
    real = os.path.realpath(path)
    if real in seen or depth > MAX_DEPTH:
        raise ConfigError(f"{path}: Include nested too deeply (a file including itself?)")
    with open(path, encoding="utf-8", errors="replace") as stream:
        text = stream.read().splitlines()
    out: list[str] = []
    block = header  # the Host/Match line whose block is open, None at the top of the file
    for number, line in enumerate(text, 1):
        match = None if line.lstrip().startswith("#") else _KEYWORD.match(line)
        keyword = match[1].lower() if match else ""
        if match and keyword in ("host", "match"):
            if header is not None:
                raise ConfigError(
                    f"{path}:{number}: a file included inside a Host/Match block has a {match[1]} block "
                    f"of its own, which mrunner cannot follow: move its Include to the top of the config"
                )
            if keyword == "match":
                _check_match(match[2], f"{path}:{number}")
            block = line
            out.append(line)
        elif match and keyword == "include":
            for included in _included(match[2], base):
                inner = _lines(included, base, block, depth + 1, (*seen, real))
                out += inner
                # back where the Include stood: in its block, or (after included blocks) in no block
                out.append(block if block is not None else "Host *")
        else:
            out.append(line)
    return out


def _included(value: str, base: str) -> list[str]:
    try:
        patterns = shlex.split(value)
    except ValueError:
        patterns = value.split()
    files: list[str] = []
    for pattern in patterns:
        pattern = os.path.expanduser(pattern)
        if not os.path.isabs(pattern):
            pattern = os.path.join(base, pattern)
        files += sorted(found for found in glob.glob(pattern) if os.path.isfile(found))
    return files


def _check_match(value: str, where: str) -> None:
    try:
        words = shlex.split(value)
    except ValueError:
        words = value.split()
    position = 0
    while position < len(words):
        criterion = words[position].lower().lstrip("!")
        if criterion not in MATCH_CRITERIA:
            raise ConfigError(
                f"{where}: Match {criterion} is not supported (mrunner follows Match "
                f"{', '.join(MATCH_CRITERIA)}): give slurm_url as user@host:port, or point ssh_config at a file without it"
            )
        position += 1 + MATCH_CRITERIA[criterion]
