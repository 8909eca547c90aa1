"""The guard of a frozen code tree: what keeps an experiment from changing the snapshot that the next
experiment and every later sweep of the same code run.

File modes stop an ordinary user but not root (most containers and cloud images), and a script can write
through its folder's links (``open("conf/a.yaml", "a")``) or by its resolved path. Two layers:

- *sealed*: every file and folder of the tree gets the immutable flag (``FS_IMMUTABLE_FL``, what ``chattr +i``
  sets), so writes, deletes and creates fail with EPERM for root too. It needs a file system that keeps the
  flag (ext4, xfs, btrfs, tmpfs) and the CAP_LINUX_IMMUTABLE capability, which containers often lack.
- *watched*, where sealing is impossible: the stat of every entry (size, mtimes, inode, mode) is recorded at
  freeze with a pristine copy of the files beside the tree (never reachable through an experiment's links);
  before each experiment the tree is compared with the record, and a changed tree is restored from the copy,
  naming the sweep that last used it.

The guard's files live in ``STORE/guards/DIGEST/`` (``stat.json``, ``pristine/``, ``lock``). Collecting a tree
(``mrunner gc``) calls ``unseal`` first, then removes the guard folder too. Standard library only.
"""

from __future__ import annotations

import array
import errno
import fcntl
import json
import os
import shutil
import stat
from pathlib import Path

_GETFLAGS = 0x80086601  # FS_IOC_GETFLAGS (linux/fs.h, a long on 64-bit)
_SETFLAGS = 0x40086602  # FS_IOC_SETFLAGS
_IMMUTABLE = 0x00000010  # FS_IMMUTABLE_FL
#: Set only by tests: behave as on a file system (or in a container) where the immutable flag cannot be set.
FAKE_NO_FLAG = "MRUNNER_FAKE_NO_IMMUTABLE"
_UNSUPPORTED = (errno.ENOTTY, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES, errno.EINVAL, errno.ENOSYS)


def guard_dir(tree: Path) -> Path:
    """``STORE/guards/DIGEST`` for the tree ``STORE/trees/DIGEST``."""
    return tree.parent.parent / "guards" / tree.name


def protect(tree: Path) -> bool:
    """Guard a freshly frozen tree: seal it, else record its stat and keep a pristine copy. Returns whether
    it is sealed."""
    guard = guard_dir(tree)
    guard.mkdir(parents=True, exist_ok=True)
    sealed = _seal(tree)
    if not sealed:
        pristine = guard / "pristine"
        shutil.rmtree(pristine, ignore_errors=True)
        shutil.copytree(tree, pristine)
    _write(guard / "stat.json", {"sealed": sealed, "entries": _stats(tree), "last": None})
    return sealed


def check(tree: Path, sweep: str) -> str | None:
    """Before an experiment of ``sweep`` runs from ``tree``: restore whatever changed since the tree was
    frozen and say so in one line (None when nothing changed). A sealed tree costs one flag read."""
    guard = guard_dir(tree)
    record_file = guard / "stat.json"
    if not record_file.is_file():
        return None  # frozen by an earlier mrunner, or the freezing mrunner has not finished guarding it
    if _flag(tree) is True:
        return None  # sealed and still sealed: nothing below can have changed
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
            by = f"sweep {record['last']}" if record["last"] else "an experiment"
            what = _summary(changed, missing, added)
            pristine = guard / "pristine"
            if not pristine.is_dir():  # sealed once, then unsealed on purpose: nothing to restore from
                return (
                    f"the code snapshot {tree.name[:12]} was unsealed and changed after {by} used it ({what}); "
                    f"it cannot be restored here: submit with --force to run from a fresh snapshot"
                )
            _restore(tree, pristine, expected, changed + missing, added)
            record["entries"] = _stats(tree)
            message = (
                f"the code snapshot {tree.name[:12]} was changed after {by} used it ({what}): "
                f"restored before this experiment"
            )
        if record["last"] != sweep or message:
            record["last"] = sweep
            _write(record_file, record)
        return message


def unseal(tree: Path) -> None:
    """Clear the immutable flag below ``tree`` so that it can be deleted (``mrunner gc``)."""
    if _flag(tree) is None:
        return
    _set(tree, False)
    for directory, folders, names in os.walk(tree):
        for name in folders + names:
            _set(Path(directory) / name, False)


def _seal(tree: Path) -> bool:
    if os.environ.get(FAKE_NO_FLAG):
        return False
    entries: list[Path] = []
    for directory, folders, names in os.walk(tree):
        entries += [Path(directory) / name for name in folders + names]
    try:
        for path in [*entries, tree]:  # the top last: until then the tree can still be given up
            if not _set(path, True):
                raise OSError(errno.EOPNOTSUPP, "no immutable flag")
    except OSError:
        unseal(tree)
        return False
    return True


def _flag(path: Path) -> bool | None:
    """Whether ``path`` has the immutable flag; None where flags cannot be read."""
    if os.environ.get(FAKE_NO_FLAG):
        return None
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        flags = array.array("l", [0])
        fcntl.ioctl(descriptor, _GETFLAGS, flags, True)
        return bool(flags[0] & _IMMUTABLE)
    except OSError:
        return None
    finally:
        os.close(descriptor)


def _set(path: Path, on: bool) -> bool:
    """Set or clear the immutable flag of ``path`` (a file or folder, never a link); False where unsupported."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        flags = array.array("l", [0])
        fcntl.ioctl(descriptor, _GETFLAGS, flags, True)
        flags[0] = flags[0] | _IMMUTABLE if on else flags[0] & ~_IMMUTABLE
        fcntl.ioctl(descriptor, _SETFLAGS, flags)
        return True
    except OSError as error:
        if error.errno in _UNSUPPORTED:
            return False
        raise
    finally:
        os.close(descriptor)


def _stats(tree: Path) -> dict[str, list[int]]:
    """Every entry below ``tree`` by its relative path: size, mtime, ctime, inode and mode (a folder: its
    mode only, since its entries are listed themselves)."""
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
                path.mkdir()
            continue
        _remove(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pristine / relative, path)
        os.chmod(path, expected[relative][4] & 0o7777)
    for relative, info in expected.items():
        if relative.endswith("/"):
            os.chmod(tree / relative, info[0] & 0o7777)
    os.chmod(tree, top)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _summary(changed: list[str], missing: list[str], added: list[str]) -> str:
    parts = []
    for verb, paths in (("changed", changed), ("deleted", missing), ("added", added)):
        if paths:
            shown = ", ".join(p.rstrip("/") for p in paths[:3]) + (
                f" and {len(paths) - 3} more" if len(paths) > 3 else ""
            )
            parts.append(f"{verb} {shown}")
    return "; ".join(parts)


def _write(path: Path, document: dict) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(document))
    os.replace(temporary, path)
