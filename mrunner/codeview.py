"""A copy-on-write view of the code snapshot in each experiment's folder: what keeps an experiment, root's
included, from changing the snapshot that the next experiment and every later sweep of the same code run,
while its own writes to the project's files succeed.

Why copy-on-write, and why this way. An experiment's folder shows the project's files; experiments of a sweep
and later sweeps of the same code share one frozen copy of them (``mrunner.snapshot``). File modes keep an
ordinary user from writing to it, not root (most containers and cloud images). Sealing the copy (the immutable
flag) stops root too, but then a script that legitimately writes to a file the project holds fails with EPERM:
a Hydra job appending to the ``hydra-task.log`` an earlier run left in the project, a script that rewrites a
config or a cache it ships with. A link per file cannot be made copy-on-write either: a plain ``open(path,
"a")`` through a link reaches the shared file, and no user-space rule (copy what looks like an output: logs,
top-level files) knows which files a script writes. Copying the tree per experiment would cost its size per
experiment. An overlay mount gives each experiment exactly the semantics wanted, at the cost of one mount:

    the experiment's folder  =  overlay(lower = the snapshot's folder, upper = the experiment's folder itself)

mounted at the experiment's folder, in a mount namespace of the attempt's own (``unshare``). Reads see the
snapshot's files; the first write to one copies it into the experiment's folder (the file only, not the tree);
a created file lands there; a delete leaves a whiteout there (a character device 0/0, which transfers skip).
The snapshot is never written, and the experiment sees its own writes. The namespace belongs to the attempt's
wrapper and its experiment: the mount is seen by no other process, and it goes when they end, a crash or a
kill included, so nothing is left mounted and nothing for ``gc`` but the overlay's empty work folder in
the sweep's folder (``Layout.view_work_dir``), removed with it.

Renaming a folder of the snapshot (``os.rename('data', 'data2')``, a subfolder, a folder moved into another
one) works as on any file system: the overlay is mounted with ``redirect_dir=on`` where the kernel takes it
(root's trusted attributes, which this view uses; an unprivileged ``userxattr`` overlay could not, and a
kernel without redirects still gives ``EXDEV``, as before). Overlayfs moves only the folder then, and records
in the experiment's folder where its files still are (in the snapshot), so the experiment's folder alone would
miss them. ``settle`` makes it whole: once the experiment ended, the wrapper (``finish``) unmounts the view
where a folder was renamed and copies each renamed folder's files from the snapshot into it, before the exit
code says the attempt ended; where none was, it only takes the mark off and leaves the unmount to the end of
its mount namespace, as before. A wrapper
killed outright leaves the folder marked (``UNSETTLED``); the next attempt settles it before it lays its view,
and the local backend's ``pull`` before it reads the folder of an experiment that is not running (``settle``
says the details). The cost is a read of each folder's attributes in the experiment's folder per attempt,
and the copy of what was renamed (benchmarks/results-snapshot-guard.md).

It needs the right to mount (root with CAP_SYS_ADMIN) and a storage file system that overlayfs accepts as its
upper layer (ext4, xfs, btrfs, tmpfs; not NFS). ``available`` finds out once per sweep by mounting a small
overlay in a child process; where it cannot, the local backend falls back to links per file and a watched
snapshot (``mrunner.treeguard``): the write succeeds, and the changed tree is found, restored and named before
it is used again.

This module is part of the experiment side that backends ship where experiments run (``mrunner.runtime``):
standard library only.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal
import stat
import sys
from collections.abc import Iterable

from mrunner.interrupts import SIGNALS
from mrunner.layout import PLACEHOLDERS
from mrunner.settling import OPAQUE, REDIRECT, UNSETTLED, _attribute, _settle, settle
from mrunner.settling import SETTLING_PART as PART

__all__ = ["OPAQUE", "PART", "REDIRECT", "UNSETTLED", "_settle", "settle"]  # settle's, named here as before

#: Set only by tests (and the benchmark): behave as where mounting is impossible (an ordinary user, a container
#: without CAP_SYS_ADMIN, a storage file system overlayfs cannot write to).
FAKE_NO_MOUNT = "MRUNNER_FAKE_NO_OVERLAY"

# Loaded when imported, before the local backend forks a wrapper from a process with other threads.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_CLONE_NEWNS = 0x00020000
_MS_REC = 0x4000
_MS_SLAVE = 1 << 19
#: On an experiment's folder (the upper layer): the code folder its view was last laid over (``reconcile``).
CODE_MARK = "trusted.mrunner.code"
_MNT_DETACH = 2


class ViewError(OSError):
    """The view could not be mounted; its message says which step failed."""


def mount(code_dir: str, folder: str, work_dir: str) -> None:
    """Lay the snapshot ``code_dir`` copy-on-write over ``folder`` (the experiment's folder, which keeps what
    the experiment writes), for this process and the processes it starts. ``work_dir``: an empty folder on the
    same file system as ``folder`` that overlayfs needs, of this experiment alone. Call it in a process of
    one thread (the attempt's wrapper before it starts the experiment); ``settle`` once the experiment ended."""
    libc = _LIBC
    if libc is None:
        raise ViewError(0, "cannot mount a copy-on-write view of the code: not on Linux")
    os.setxattr(folder, CODE_MARK, os.fsencode(code_dir))  # root's right, as the mount's
    if libc.unshare(_CLONE_NEWNS) != 0:
        _fail("make a mount namespace of its own", ctypes.get_errno())
    # Mounts made here never propagate out; those made outside later still reach the experiment.
    if libc.mount(b"none", b"/", None, _MS_REC | _MS_SLAVE, None) != 0:
        _fail("keep its mounts to itself", ctypes.get_errno())
    lay(code_dir, folder, work_dir)


def lay(code_dir: str, folder: str, work_dir: str) -> None:
    """The overlay of ``mount``, in the mount namespace this process has of its own already (``mount`` made
    it; a next attempt the wrapper runs itself lays the view again after ``settle``). With ``redirect_dir=on``
    where the kernel takes it, so that a folder of the snapshot renames; ``UNSETTLED`` on ``folder`` says
    until ``settle`` that it may hold renamed folders that are not whole."""
    libc = _LIBC
    if libc is None:
        raise ViewError(0, "cannot mount a copy-on-write view of the code: not on Linux")
    os.makedirs(work_dir, exist_ok=True)
    options = f"lowerdir={_escape(code_dir)},upperdir={_escape(folder)},workdir={_escape(work_dir)}"
    os.setxattr(folder, UNSETTLED, os.fsencode(code_dir))  # before the first rename can happen
    _cover(folder)
    if libc.mount(b"overlay", os.fsencode(folder), b"overlay", 0, os.fsencode(options + ",redirect_dir=on")) == 0:
        return
    number = ctypes.get_errno()
    os.removexattr(folder, UNSETTLED)
    if number != errno.EINVAL:  # EINVAL: a kernel without redirects (renaming a snapshot folder gives EXDEV)
        _fail("mount the copy-on-write view of the code", number)
    if libc.mount(b"overlay", os.fsencode(folder), b"overlay", 0, os.fsencode(options)) != 0:
        _fail("mount the copy-on-write view of the code", ctypes.get_errno())


def unmount(folder: str) -> None:
    """Take the view off ``folder`` in this process's namespace (detached: a process of the experiment that
    the wrapper's kill has not reaped yet cannot keep it), so that ``folder`` is the upper layer again."""
    libc = _LIBC
    if libc is not None and libc.umount2(os.fsencode(folder), _MNT_DETACH) != 0:
        _fail("unmount the copy-on-write view of the code", ctypes.get_errno())


#: The experiments' folders this process laid a view over, each as a descriptor opened before the mount: the
#: upper layer itself, which ``finish`` reads while the view still covers the path.
_covered: dict[str, int] = {}
#: The folders ``finish`` left under their view (nothing was renamed): the namespace's end takes it off.
_left: set[str] = set()


def _cover(folder: str) -> None:
    previous = _covered.pop(folder, None)
    if previous is not None:
        os.close(previous)
    _covered[folder] = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def finish(folder: str) -> list[str]:
    """Once the experiment ended, in the process that laid the view (the attempt's wrapper): ``settle`` the
    folder, unmounting the view first, when the experiment renamed a folder of the code; when it renamed
    none (almost every experiment), only the mark goes and the view stays mounted. Returns the folders made
    whole.

    Why. Unmounting an overlay syncs its upper file system (overlayfs's ``sync_fs``: the whole storage file
    system, every other process's writes included), milliseconds that the attempt's end would wait for
    before its exit code; left mounted, the view goes with the wrapper's mount namespace when it exits,
    after its end was told, as before views renamed. Whether anything was renamed is read from the upper
    layer through the descriptor ``lay`` opened before the mount (the path shows the view): a folder with
    ``trusted.overlay.redirect``, looked for in the folders only, as ``settle`` does; without one, ``settle``
    would change nothing but the mark."""
    upper = _covered.pop(folder, None)
    if upper is not None:
        try:
            if _nothing_renamed(upper):
                _left.add(folder)
                return []
        except OSError:
            pass  # the usual way, below
        finally:
            os.close(upper)
    unmount(folder)
    return settle(folder)


def _nothing_renamed(upper: int) -> bool:
    """With the open upper layer ``upper``: True, its mark taken off, when it holds no redirect."""
    if _attribute(upper, UNSETTLED) is None:
        return True  # mounted without redirects (a kernel that refuses them): nothing to settle
    if _redirected_below(upper):
        return False
    fcntl.flock(upper, fcntl.LOCK_EX)  # as ``settle``: one at a time with a `pull`'s
    if _attribute(upper, UNSETTLED) is not None:
        os.removexattr(upper, UNSETTLED)
    return True


def _redirected_below(directory: int) -> bool:
    """Whether a folder below the open folder ``directory`` (an upper layer) holds a redirect."""
    with os.scandir(directory) as entries:
        folders = [entry.name for entry in entries if entry.is_dir(follow_symlinks=False)]
    for name in folders:
        try:
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
        except OSError:
            continue  # gone meanwhile: a process of the experiment still about
        try:
            if _attribute(inner, REDIRECT) is not None or _redirected_below(inner):
                return True
        finally:
            os.close(inner)
    return False


def unmount_left(folder: str) -> None:
    """Take off the view ``finish`` left on ``folder`` in this process (before a next attempt lays its own)."""
    if folder in _left:
        _left.discard(folder)
        unmount(folder)


def reconcile(code_dir: str, folder: str, aside: str) -> list[str]:
    """Before ``mount``, when the experiment's ``folder`` was last laid over another code folder than
    ``code_dir`` (``mrunner resume --current-code``): what an earlier attempt did to the earlier code's files
    gives way to the new code, as a researcher who resumes with the current code expects, while what the
    experiment made itself stays. A whiteout (an earlier delete) of a path the new code holds goes, so its
    file shows; a file at such a path that was a file of the earlier code too (a copy the earlier attempt
    changed: a config it appended to, the script) moves to ``aside`` (kept, not shown). A file at a path the
    earlier code did not hold is the experiment's own and stays; where the earlier code folder is gone
    (collected), every file at a path of the new code counts as changed code. Returns the paths that gave
    way, for the attempt's log."""
    try:
        earlier = os.fsdecode(os.getxattr(folder, CODE_MARK))
    except OSError:
        return []  # never laid over any code, or the attribute cannot be read: nothing to tell apart
    if earlier == code_dir:
        return []
    known = os.path.isdir(earlier)
    gave_way = []
    for directory, _, names in os.walk(folder):
        inner = os.path.relpath(directory, folder)
        for name in names:
            relative = name if inner == "." else f"{inner}/{name}"
            if not os.path.lexists(os.path.join(code_dir, relative)):
                continue
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:  # a whiteout
                os.unlink(path)
            elif known and not os.path.lexists(os.path.join(earlier, relative)):
                continue
            else:
                target = os.path.join(aside, relative)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.replace(path, target)
            gave_way.append(relative)
    return sorted(gave_way)


def hide_placeholders(code_dir: str, folder: str, entries: Iterable[str]) -> None:
    """Keep the output folders of ``entries`` (``"d PATH"`` folders of the snapshot holding only placeholders
    such as ``outputs/.gitkeep``) empty under the view, as they are with links: each is marked opaque in
    ``folder``, the upper layer, so the snapshot's placeholders do not show through. Before ``mount``."""
    for entry in entries:
        kind, relative = entry.split(" ", 1)
        lower = os.path.join(code_dir, relative)
        if kind == "d" and os.path.isdir(lower) and _only_placeholders(lower):
            os.setxattr(os.path.join(folder, relative), "trusted.overlay.opaque", b"y")


def _only_placeholders(folder: str) -> bool:
    for _, _, names in os.walk(folder):
        if any(name not in PLACEHOLDERS for name in names):
            return False
    return True


def available(code_dir: str, storage: str) -> bool:
    """Whether ``mount`` works for the snapshot ``code_dir`` and experiments whose folders lie below
    ``storage`` (an existing folder): tried in a child process, with an upper layer there, checking that a
    file created in the view lands in the upper layer only."""
    if os.environ.get(FAKE_NO_MOUNT) or _LIBC is None:
        return False
    import shutil
    import tempfile  # here, not at the top: the local fork server loads this module, and ``tempfile``'s
    # ``random`` would add its at-fork hook to every attempt wrapper's fork (benchmarks/results-core.md);
    # ``shutil`` (``bz2``, ``lzma``) would only add to what every fork copies

    try:
        probe = tempfile.mkdtemp(prefix=".mrunner-view-probe-", dir=storage)
    except OSError:
        return False
    # Ctrl-C's SIGINT (and the other stops) held until the probe is over: one that came while the fork ran the
    # interpreter's at-fork handlers would be raised inside one of them, where Python prints it and drops it,
    # and the interrupted `mrunner` would go on. The probe takes milliseconds; the stop is taken after it.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        pid = os.fork()  # a child of this process: a new interpreter would cost ten times as much
        if pid == 0:
            code = 1
            try:
                code = _probe(code_dir, probe)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) == 0
    except OSError:
        return False
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        shutil.rmtree(probe, ignore_errors=True)


def _probe(code_dir: str, folder: str) -> int:
    """In a child process: 0 when a view of ``code_dir`` mounted below ``folder`` keeps a new file to itself."""
    upper, work = os.path.join(folder, "upper"), os.path.join(folder, "work")
    os.mkdir(upper)
    try:
        os.setxattr(upper, "trusted.overlay.probe", b"y")  # what hide_placeholders needs
        mount(code_dir, upper, work)
        with open(os.path.join(upper, ".mrunner-view-probe"), "w") as stream:
            stream.write("upper")
    except OSError:
        return 1
    return 1 if os.path.lexists(os.path.join(code_dir, ".mrunner-view-probe")) else 0


def _escape(path: str) -> str:
    """A path as overlayfs's options take it: its separators (``,`` and ``:``) and backslashes escaped."""
    return path.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


def _fail(what: str, number: int) -> None:
    raise ViewError(number, f"cannot {what}: {os.strerror(number)}")
