"""The folders an experiment renamed under its copy-on-write view (``mrunner.codeview``) made whole in its
folder: ``settle``, after the view is off.

Why a module of its own. The attempt's wrapper settles through ``mrunner.codeview``; a backend whose
experiments' folders lie where this machine cannot read them settles them there before it brings them back
(``mrunner pull`` on Slurm runs this module, then ``mrunner.transfer``, as one module on the login node:
``sender_source``). That sender is run from its source with ``python -S``, no mrunner there, so this module
imports the standard library only and defines no name ``mrunner.transfer`` defines.
"""

from __future__ import annotations

import fcntl
import os
import stat
import sys

#: On an experiment's folder: the code folder a view that may rename its folders was laid over, until
#: ``settle`` made the renamed folders whole in the experiment's folder.
UNSETTLED = "trusted.mrunner.unsettled"
REDIRECT, OPAQUE = "trusted.overlay.redirect", "trusted.overlay.opaque"
ORIGIN = "trusted.overlay.origin"
#: A copy into a renamed folder is made under this suffix and renamed into place: never a half-copied file.
SETTLING_PART = ".mrunner-settling"


def settle(folder: str) -> list[str]:
    """Make the experiment's ``folder`` (the view's upper layer, mounted nowhere any more) a plain tree equal
    to what the experiment saw, when a view with redirects was laid over it (``UNSETTLED``); the renamed
    folders it made whole (their paths), for the attempt's log. A no-op costing one attribute read otherwise.

    Why. Renaming a folder of the snapshot in the view (``os.rename('data', 'data2')``) moves only the
    folder: the upper layer gets ``data2`` with ``trusted.overlay.redirect`` naming ``data`` (the origin in
    the snapshot, which still holds its unchanged files) and a whiteout at ``data``. The experiment sees the
    whole folder, but the experiment's folder, which ``pull`` reads and a later attempt lays its view over,
    would hold only the files changed in it. So each folder whose origin in the snapshot is another path than
    its own gets a copy of the snapshot's entries it shows there (not those it deleted, its whiteouts; not
    below a folder it emptied, an opaque one; recursing into the folders it holds of its own, which may be
    renamed again, ``/``-absolute or relative to their parent's origin, as overlayfs resolves them), and is
    then marked opaque (it holds all it shows: idempotent if this is cut off, and exact for a later view
    whose snapshot holds a folder at that path) with its redirect, its origin and its whiteouts removed.
    Files are copied, never linked: a later attempt's write through its view would reach a linked file.

    Who calls it. The attempt's wrapper (``finish``), after the experiment ended and it unmounted the view
    (``unmount``), before it writes the exit code, so whoever reads the exit code finds the folder whole. A wrapper killed
    outright leaves ``UNSETTLED``: the next attempt's wrapper settles it before it lays its view (and before
    ``codeview.reconcile``: the origins are paths of the code the mark names), and ``pull`` (the local
    backend's, and Slurm's on the login node: ``settle_folders``) settles the folder of every experiment that
    is not running. Until then a view with ``redirect_dir=on``
    (this kernel's overlay follows redirects) still shows the whole folder; only a reader of the bare folder
    would miss the renamed folders' unchanged files. Where the code the mark names is gone (collected), the
    redirects are dropped: the renamed folders keep what the experiment changed in them."""
    if _attribute(folder, UNSETTLED) is None:
        return []  # not laid over with redirects, settled already, or the attribute cannot be read
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # one at a time: a `pull` may come while a cancelled wrapper settles
        mark = _attribute(folder, UNSETTLED)
        if mark is None:
            return []  # the other one did it
        code_dir = os.fsdecode(mark)
        made: list[str] = []
        _settle(folder, "", "", code_dir if os.path.isdir(code_dir) else None, made)
        os.removexattr(folder, UNSETTLED)
        return made
    finally:
        os.close(descriptor)


def _settle(upper: str, relative: str, origin: str | None, code_dir: str | None, made: list[str]) -> None:
    """``settle`` of the upper folder ``upper`` (``relative`` in the view), which shows the snapshot's folder
    ``origin`` (None: nothing of the snapshot) below its own entries."""
    moved = origin is not None and origin != relative and code_dir is not None
    own: set[str] = set()
    whiteouts = []
    with os.scandir(upper) as entries:
        for entry in entries:
            path, inner = entry.path, f"{relative}/{entry.name}" if relative else entry.name
            if moved and entry.name.endswith(SETTLING_PART):  # a copy a settle cut off left: made again below
                _remove(path)
                continue
            own.add(entry.name)
            if entry.is_dir(follow_symlinks=False):
                redirect = _attribute(path, REDIRECT)
                if _attribute(path, OPAQUE) == b"y":
                    below = None  # emptied, or made here: nothing of the snapshot below, whatever the redirect
                elif redirect is not None and redirect.startswith(b"/"):
                    below = os.fsdecode(redirect).strip("/")  # moved across folders: from the snapshot's root
                elif origin is None:
                    below = None
                else:
                    name = os.fsdecode(redirect) if redirect is not None else entry.name  # renamed in place
                    below = f"{origin}/{name}" if origin else name
                if below is not None and code_dir is not None and not os.path.isdir(os.path.join(code_dir, below)):
                    below = None
                _settle(path, inner, below, code_dir, made)
                if redirect is not None:
                    os.removexattr(path, REDIRECT)
            elif moved and _whiteout(path):
                whiteouts.append(path)
    if not moved:
        return
    assert origin is not None and code_dir is not None
    import shutil  # here: the wrapper imports this module for every attempt, and most rename nothing

    source = os.path.join(code_dir, origin)
    for name in os.listdir(source):
        if name in own:
            continue
        part = os.path.join(upper, f".{name}{SETTLING_PART}")
        found = os.path.join(source, name)
        if os.path.isdir(found) and not os.path.islink(found):
            shutil.copytree(found, part, symlinks=True)
        else:
            shutil.copy2(found, part, follow_symlinks=False)
        os.replace(part, os.path.join(upper, name))
    os.setxattr(upper, OPAQUE, b"y")
    for path in whiteouts:
        os.unlink(path)
    try:
        os.removexattr(upper, ORIGIN)
    except OSError:
        pass  # not there
    made.append(relative)


def _remove(path: str) -> None:
    import shutil

    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _attribute(path: str | int, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name) if isinstance(path, int) else os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def _whiteout(path: str) -> bool:
    info = os.lstat(path)
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def settle_folders(folders: list[str]) -> None:
    """``settle`` each of ``folders`` (experiments' folders that are not running), in the sender of a pull
    where they are: one line on stderr and exit status 1 if one cannot be (a full disk), so that the pull
    says why rather than bringing back a folder that misses files."""
    for folder in folders:
        try:
            settle(os.path.expanduser(folder))
        except OSError as error:
            where = error.filename or folder
            sys.stderr.write(f"cannot copy the folders an experiment renamed into {where}: {error.strerror}\n")
            raise SystemExit(1) from None


def sender_source() -> bytes:
    """The source of a pull's sender that settles first: this module, then ``mrunner.transfer`` (whose
    ``main`` calls ``settle_folders`` for the folders its request names to ``settle``), as one module that
    runs as the transfer's own source does."""
    from pathlib import Path

    from mrunner import transfer

    future = b"\nfrom __future__ import annotations\n"
    sender = Path(transfer.__file__).read_bytes()
    if future not in sender:
        raise AssertionError("mrunner.transfer lost its future import: mrunner.settling.sender_source needs it")
    return Path(__file__).read_bytes() + b"\n" + sender.replace(future, b"\n", 1)
