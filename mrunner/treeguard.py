"""The watch over a frozen code tree where experiments cannot be given a copy-on-write view of it
(``mrunner.codeview``: no right to mount, or a storage file system overlayfs cannot write to).

There an experiment's folder links to the tree's files (real folders, a link per file: ``mrunner.layout``'s
mirror), so a script that deletes or creates a file in a project folder changes only its own folder, but a
write through a link (``open("conf/a.yaml", "a")``, a Hydra job appending to a log the project holds) reaches
the shared tree where file modes do not stop it (root). Refusing that write (the immutable flag) breaks
scripts that legitimately write there, so the write succeeds, and the tree is checked before it is used
again: the stat of every entry (size, modification and change times, inode, mode) is recorded with a
pristine copy of the files beside the tree (never reachable through an experiment's links); before each
experiment, a later sweep's first included, the tree is compared with the record, and a changed tree is
restored from the copy and the change named with the sweep that last used it.

The guard's files live in ``STORE/guards/DIGEST/`` (``stat.json``, ``pristine/``, ``lock``), made once per
code digest by the first sweep that needs them; ``mrunner gc`` removes them with the tree.

On a Slurm cluster the roles are turned round (``watch_copy``): the snapshot's code folder is made of hard
links into a content store every sweep shares, so experiments must not reach it at all. Where a job cannot
mount the view, its wrapper (``mrunner.attempt --watch``) links to a copy of the code folder made once per
code digest (``STORE/watched/DIGEST``), and the code folder itself is the pristine copy it is restored from.

This module is part of the experiment side that backends ship where experiments run (``mrunner.runtime``):
standard library only.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

RECORD = "stat.json"


def guard_dir(tree: Path) -> Path:
    """``STORE/guards/DIGEST`` for the tree ``STORE/trees/DIGEST``."""
    return tree.parent.parent / "guards" / tree.name


@contextmanager
def _unguarded(guard: Path) -> Iterator[bool]:
    """Whether the guard's record is still to be made, asked under the guard's lock (held for the block) so
    that sweeps or jobs starting at once make it once; a made guard is seen without the lock."""
    if (guard / RECORD).is_file():
        yield False
        return
    guard.mkdir(parents=True, exist_ok=True)
    with open(guard / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield not (guard / RECORD).is_file()  # another sweep or job may have made it meanwhile


def watch(tree: Path, files: Mapping[str, tuple[str, int]], fetch: Callable[[str, Path], None]) -> None:
    """Make the guard of ``tree`` unless it has one: a pristine copy checked against the snapshot's
    manifest ``files`` (relative path -> (sha256, mode)), and the stat record. A file of the tree that no
    longer matches its hash (changed by an experiment before the tree was watched) is fetched again with
    ``fetch(relative, destination)`` (the snapshot's ``copy_file``) and restored in the tree."""
    guard = guard_dir(tree)
    with _unguarded(guard) as to_make:
        if not to_make:
            return
        pristine = guard / "pristine"
        _remove(pristine)
        shutil.copytree(tree, pristine, symlinks=True)
        stale = [relative for relative, (digest, _) in files.items() if _hash(pristine / relative) != digest]
        for relative in stale:
            target = pristine / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(target.parent, 0o755)
            _remove(target)
            fetch(relative, target)
        found = _stats(tree)
        folders = {
            f"{relative.rsplit('/', depth)[0]}/" for relative in files for depth in range(1, relative.count("/") + 1)
        }
        added = [relative for relative in found if relative not in files and relative not in folders]
        if stale or added:
            expected = {relative: info for relative, info in found.items() if relative.endswith("/")}
            expected.update({relative: [files[relative][1] & ~0o222] for relative in stale})
            _restore(tree, pristine, expected, stale, added)
            for relative in sorted(added, key=len, reverse=True):
                _remove(pristine / relative.rstrip("/"))
        _write(guard / RECORD, {"entries": _stats(tree), "last": None})


def watch_copy(tree: Path, pristine: Path) -> None:
    """Make ``tree``, a copy of the frozen folder ``pristine`` (its modes kept: read-only), and its guard,
    unless they exist: what experiments link to where they cannot be given a view of ``pristine``, which
    they then never reach, so that it stays what ``check`` restores from. Made aside and renamed into
    place, under the guard's lock: jobs of a sweep starting at once on several nodes make it once."""
    guard = guard_dir(tree)
    with _unguarded(guard) as to_make:
        if not to_make:
            return
        tree.parent.mkdir(parents=True, exist_ok=True)
        building = tree.with_name(f".tmp-{tree.name}-{os.getpid()}")
        _remove(building)
        _remove(tree)  # a copy left by a job killed before it was watched is not trusted
        shutil.copytree(pristine, building, symlinks=True)
        os.rename(building, tree)
        _write(guard / RECORD, {"entries": _stats(tree), "last": None, "pristine": str(pristine)})


def check(tree: Path, sweep: str, before: str = "this experiment") -> str | None:
    """Before an experiment of ``sweep`` runs from ``tree`` (or ``before`` another use of it): restore whatever
    changed since the tree was watched and say so in one line naming the sweep that last used it (None when
    nothing changed)."""
    guard = guard_dir(tree)
    record_file = guard / RECORD
    if not record_file.is_file():
        return None  # not watched: its experiments run under a copy-on-write view
    record = json.loads(record_file.read_text())  # replaced whole, never written in place: read without the lock
    if record["last"] == sweep and record["entries"] == _stats(tree):
        return None  # the common case, without the lock: a sweep's jobs starting at once check side by side
    with open(guard / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = json.loads(record_file.read_text())
        expected: dict[str, list[int]] = record["entries"]
        found = _stats(tree)
        changed = sorted(p for p in expected.keys() & found.keys() if expected[p] != found[p])
        missing = sorted(expected.keys() - found.keys())
        added = sorted(found.keys() - expected.keys())
        message = None
        if changed or missing or added:
            # the sweep first: a status table cuts a long detail
            by = f"sweep {record['last']}, the last to use it," if record["last"] else "an experiment"
            pristine = Path(record.get("pristine") or guard / "pristine")
            _restore(tree, pristine, expected, changed + missing, added)
            record["entries"] = _stats(tree)
            message = (
                f"{by} changed code snapshot {tree.name[:12]} ({_summary(changed, missing, added)}): "
                f"restored before {before}"
            )
        if record["last"] != sweep or message:
            record["last"] = sweep
            _write(record_file, record)
        return message


def _hash(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _stats(tree: Path) -> dict[str, list[int]]:
    """Every entry below ``tree`` by its relative path: size, mtime, ctime, inode and mode (a folder: its
    mode only, with a trailing ``/``, since its entries are listed themselves)."""
    found: dict[str, list[int]] = {}
    root = str(tree)
    for directory, folders, names in os.walk(root):
        prefix = os.path.relpath(directory, root)
        for name in folders + names:
            relative = name if prefix == "." else f"{prefix}/{name}"
            info = os.lstat(os.path.join(directory, name))
            if stat.S_ISDIR(info.st_mode):
                found[relative + "/"] = [info.st_mode]
            else:
                found[relative] = [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_mode]
    return found


def _restore(tree: Path, pristine: Path, expected: dict[str, list[int]], damaged: list[str], added: list[str]) -> None:
    """Put ``damaged`` (changed or missing) entries back from ``pristine`` and remove the ``added`` ones;
    the frozen tree's read-only folder modes are kept."""
    top = os.lstat(tree).st_mode & 0o7777
    for folder, _, _ in os.walk(tree):
        os.chmod(folder, 0o755)  # frozen folders are read-only; put back below
    for relative in sorted(added, key=len, reverse=True):
        _remove(tree / relative.rstrip("/"))
    for relative in sorted(damaged, key=len):
        path = tree / relative.rstrip("/")
        if relative.endswith("/"):
            if not path.is_dir() or path.is_symlink():
                _remove(path)
                path.mkdir(parents=True)
            continue
        _remove(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pristine / relative, path)
        os.chmod(path, expected[relative][-1] & 0o7777)
    for relative, info in expected.items():
        if relative.endswith("/") and (tree / relative).is_dir():
            os.chmod(tree / relative, info[0] & 0o7777)
    os.chmod(tree, top)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for folder, _, _ in os.walk(path):
            os.chmod(folder, 0o755)
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _summary(changed: list[str], missing: list[str], added: list[str]) -> str:
    parts = []
    for verb, paths in (("changed", changed), ("deleted", missing), ("added", added)):
        if paths:
            shown = ", ".join(p.rstrip("/") for p in paths[:3])
            parts.append(f"{verb} {shown}" + (f" and {len(paths) - 3} more" if len(paths) > 3 else ""))
    return "; ".join(parts)


def _write(path: Path, document: dict) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(document))
    os.replace(temporary, path)
