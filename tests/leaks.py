"""Finding a secret wherever it must not be: in files (the records database and its WAL, contexts, logs,
snapshots, batch scripts), in command output, and in the command lines of running processes.

Every backend's leak test uses it the same way::

    token = fake_secret("neptune")
    with CmdlineWatch(token, witness="leak_exp.py") as watch:
        ... submit a sweep whose experiment sleeps a moment; wait for it ...
    assert watch.witnessed  # the scan really saw the experiment's process
    assert_secret_only_in(token, paths=[mrunner_home, tmp_path], outputs={"dry run": dry.stdout + dry.stderr},
                          cmdlines=watch, allowed=[home / ".neptune.yaml"])

``fake_secret`` makes letters and digits only, so the secret reads the same raw, JSON-escaped,
shell-quoted or URL-encoded, and one byte search finds every spelling of it.
"""

from __future__ import annotations

import os
import secrets as random
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def fake_secret(label: str = "token") -> str:
    """A recognisable, unique, alphanumeric fake credential, e.g. ``MRUNNERLEAKneptune3f9a...``."""
    return f"MRUNNERLEAK{''.join(c for c in label if c.isalnum())}{random.token_hex(12)}"


class CmdlineWatch:
    """Scans ``/proc/*/cmdline`` in a background thread while in the ``with`` block.

    ``hits`` holds ``(pid, command line)`` of every process whose arguments held the secret;
    ``witnessed`` tells whether some process's arguments held ``witness`` (say, the experiment script's
    name), proving the scan ran while the experiment did. ``scans`` counts full passes.
    """

    def __init__(self, secret: str, witness: str | None = None, interval: float = 0.01) -> None:
        self.secret = secret.encode()
        self.witness = witness.encode() if witness else None
        self.interval = interval
        self.hits: list[tuple[int, str]] = []
        self.witnessed = False
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> CmdlineWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.scan()
            self._stop.wait(self.interval)
        self.scan()

    def scan(self) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as stream:
                    arguments = stream.read()
            except OSError:  # the process ended meanwhile
                continue
            if self.secret in arguments:
                self.hits.append((int(entry.name), arguments.replace(b"\0", b" ").decode(errors="replace")))
            if self.witness and self.witness in arguments:
                self.witnessed = True
        self.scans += 1


def files_holding(secret: str, roots: Iterable[Path]) -> list[Path]:
    """Every file under ``roots`` (files or folders, recursively, symlinks not followed) whose bytes hold
    ``secret``. SQLite databases are searched as raw bytes, ``-wal`` and ``-journal`` files included."""
    needle = secret.encode()
    found: list[Path] = []
    for root in roots:
        root = Path(root)
        if root.is_file():
            candidates: Iterable[Path] = [root]
        elif root.is_dir():
            candidates = (path for path in root.rglob("*") if path.is_file() and not path.is_symlink())
        else:
            continue
        for path in candidates:
            try:
                if needle in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found


def secret_places(
    secret: str,
    *,
    paths: Iterable[Path] = (),
    outputs: Mapping[str, str] | None = None,
    cmdlines: CmdlineWatch | None = None,
    allowed: Iterable[Path] = (),
) -> list[str]:
    """Where ``secret`` was found, one description per place, leaving out the ``allowed`` files."""
    permitted = {Path(path).resolve() for path in allowed}
    places = [f"file {path}" for path in files_holding(secret, paths) if path.resolve() not in permitted]
    places += [f"output of {name}" for name, text in (outputs or {}).items() if secret in (text or "")]
    if cmdlines is not None:
        places += [f"arguments of process {pid}: {line[:200]}" for pid, line in cmdlines.hits]
    return places


def assert_secret_only_in(
    secret: str,
    *,
    paths: Iterable[Path] = (),
    outputs: Mapping[str, str] | None = None,
    cmdlines: CmdlineWatch | None = None,
    allowed: Iterable[Path] = (),
) -> None:
    """Fail, naming every place, if ``secret`` is anywhere among ``paths``, ``outputs`` and the watched
    command lines except the ``allowed`` files (the user's own credential file, say)."""
    places = secret_places(secret, paths=paths, outputs=outputs, cmdlines=cmdlines, allowed=allowed)
    assert not places, f"the secret leaked to {len(places)} place(s):\n  " + "\n  ".join(places)


def outputs_of(mrunner: Any, *commands: list[str]) -> dict[str, str]:
    """What the command line shows (stdout and stderr) for each of ``commands`` (``mrunner``: the fixture), by
    the command's words: the ``outputs`` a test hands to ``assert_secret_only_in``."""
    return {" ".join(args): (lambda done: done.stdout + done.stderr)(mrunner(*args)) for args in commands}
