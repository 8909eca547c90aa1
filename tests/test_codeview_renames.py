"""Renaming a folder of the code snapshot inside the copy-on-write view (``mrunner.codeview``), on real
overlay mounts: ``os.rename`` works (``redirect_dir=on``), the experiment sees the whole folder, and once its
view is settled the experiment's folder holds every file of each renamed folder as a plain tree, which a
later view shows again; the snapshot is never changed. Each view is a process of its own, as the attempt's
wrapper is (its mount namespace goes with it)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mrunner import codeview

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0, reason="mounting the view needs root on Linux"
)

#: Run in a process that mounts the view over the experiment's folder (argv: code, folder, work, settle,
#: the experiment's Python statements): what the experiment saw after its statements, as JSON on stdout.
VIEW = """
import json, os, sys
from mrunner import codeview

code, folder, work, settle, statements = sys.argv[1:]
codeview.mount(code, folder, work)
os.chdir(folder)
exec(statements)
seen = {}
for top, _, names in os.walk("."):
    for name in names:
        path = os.path.join(top, name)[2:]
        seen[path] = open(path).read()
os.chdir("/")
if settle == "settle":
    codeview.unmount(folder)
    codeview.settle(folder)
elif settle == "finish":  # the attempt's wrapper: left mounted when nothing was renamed
    made = codeview.finish(folder)
    with open(os.path.join(os.path.dirname(folder), "finished.json"), "w") as stream:
        json.dump({"made": made, "mounted": os.path.ismount(folder)}, stream)
print(json.dumps(seen))
"""


@pytest.fixture
def code(tmp_path: Path) -> Path:
    """A snapshot: folders with files and subfolders, as a project's data and configs."""
    tree = tmp_path / "code"
    for relative, text in {
        "data/x": "x",
        "data/y": "y",
        "data/sub/s": "s",
        "data/sub/deep/d": "d",
        "conf/a.yaml": "a: 1\n",
        "conf/b.yaml": "b: 1\n",
        "exp.py": "print()\n",
    }.items():
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        (tree / relative).write_text(text)
    return tree


def digest(tree: Path) -> str:
    """Every path, mode, owner, time and content of ``tree``: what must never change."""
    found = hashlib.sha256()
    for path in sorted(tree.rglob("*")):
        info = path.lstat()
        found.update(f"{path.relative_to(tree)} {info.st_mode} {info.st_uid} {info.st_mtime_ns}\n".encode())
        if path.is_file():
            found.update(path.read_bytes())
    return found.hexdigest()


def view(code: Path, folder: Path, statements: str, settle: bool | str = True) -> dict[str, str]:
    """What an experiment whose ``statements`` ran in the view over ``folder`` saw (path: content). ``settle``:
    True (unmount, then ``settle``), False (killed before either) or ``"finish"`` (``codeview.finish``, as the
    attempt's wrapper ends it: what it did goes to ``finished.json`` beside ``folder``)."""
    folder.mkdir(exist_ok=True)
    work = folder.parent / f"work-{folder.name}"
    end = settle if isinstance(settle, str) else "settle" if settle else "killed"
    ran = subprocess.run(
        [sys.executable, "-c", VIEW, str(code), str(folder), str(work), end, statements],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    return json.loads(ran.stdout)


def plain(folder: Path, below: str) -> dict[str, str]:
    """The regular files of ``folder/below`` as a reader of the bare folder (``pull``) sees them."""
    root = folder / below
    return {
        f"{below}/{path.relative_to(root)}": path.read_text()
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink()
    }


def seen_below(seen: dict[str, str], below: str) -> dict[str, str]:
    return {path: text for path, text in seen.items() if path.startswith(below + "/")}


def overlay_attributes(folder: Path) -> list[str]:
    """The redirects and the ``settle`` mark left in the folder: none once it is settled."""
    left = []
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            names = os.listxattr(path, follow_symlinks=False)
            left += [f"{path}: {name}" for name in names if name in (codeview.REDIRECT, codeview.UNSETTLED)]
    return left


CASES = {
    "a top-level folder": ("os.rename('data', 'data2')", ["data2"]),
    "a nested folder": ("os.rename('data/sub', 'data/sub2')", ["data/sub2"]),
    "renamed, then files changed and deleted inside": (
        "os.rename('data', 'data2'); open('data2/x', 'a').write('z'); os.remove('data2/y');"
        " os.remove('data2/sub/deep/d'); os.rmdir('data2/sub/deep'); open('data2/sub/new', 'w').write('n')",
        ["data2"],
    ),
    "renamed back": ("os.rename('data', 'data2'); open('data2/x', 'a').write('z'); os.rename('data2', 'data')", []),
    "moved into another folder of the code": ("os.rename('data', 'conf/data')", ["conf/data"]),
    "renamed twice, nested inside, then moved into a new folder": (
        "os.rename('data', 'data2'); os.rename('data2/sub', 'data2/sub3'); os.mkdir('new');"
        " os.rename('data2', 'new/d')",
        ["new/d"],
    ),
    "a folder the experiment made": (
        "os.mkdir('mine'); open('mine/f', 'w').write('m'); os.rename('mine', 'mine2')",
        [],
    ),
    "a renamed folder renamed onto an emptied one": (
        "os.remove('conf/a.yaml'); os.remove('conf/b.yaml'); os.rename('data', 'conf')",
        ["conf"],
    ),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("end", ["settled", "finished", "killed before settling"])
def test_a_renamed_folder_of_the_code_is_whole_in_the_experiments_folder(tmp_path, code, case, end):
    statements, renamed = CASES[case]
    before = digest(code)
    folder = tmp_path / "experiment"
    seen = view(code, folder, statements, settle="finish" if end == "finished" else end == "settled")
    if end == "finished":  # as the wrapper ends an attempt: the view taken off only to settle renamed folders
        finished = json.loads((tmp_path / "finished.json").read_text())
        assert set(renamed) <= set(finished["made"]) and not (renamed and finished["mounted"])
    if end == "killed before settling":  # the wrapper killed outright: the next attempt or a pull settles it
        assert os.getxattr(folder, codeview.UNSETTLED) == os.fsencode(code)
        codeview.settle(folder)
    for below in renamed:  # what `pull` reads: the whole folder as the experiment saw it, plain files
        assert plain(folder, below) == seen_below(seen, below) != {}
    assert overlay_attributes(folder) == []
    assert view(code, folder, "pass") == seen  # a later attempt's view shows what the experiment left
    assert digest(code) == before


def test_os_rename_of_a_folder_of_the_code_works_and_the_snapshot_stays(tmp_path, code):
    before = digest(code)
    seen = view(code, tmp_path / "experiment", "os.rename('data', 'data2'); os.rename('conf', 'data2/conf')")
    assert sorted(seen) == ["data2/conf/a.yaml", "data2/conf/b.yaml", "data2/sub/deep/d", "data2/sub/s", "data2/x"] + [
        "data2/y",
        "exp.py",
    ]
    assert digest(code) == before


def test_a_settle_cut_off_is_finished_by_the_next(tmp_path, code):
    """A settle stopped halfway (a copy under its temporary name, the mark still there) is done again in
    full by the next one, the temporary copy gone."""
    folder = tmp_path / "experiment"
    seen = view(code, folder, "os.rename('data', 'data2')", settle=False)
    (folder / "data2" / f".x{codeview.PART}").write_text("half")
    codeview.settle(folder)
    assert plain(folder, "data2") == seen_below(seen, "data2")


def test_with_the_snapshot_collected_the_redirects_go_and_what_was_changed_stays(tmp_path, code):
    folder = tmp_path / "experiment"
    view(code, folder, "os.rename('data', 'data2'); open('data2/x', 'a').write('z')", settle=False)
    gone = tmp_path / "gone"
    os.setxattr(folder, codeview.UNSETTLED, os.fsencode(gone))
    assert codeview.settle(folder) == []
    assert plain(folder, "data2") == {"data2/x": "xz"} and overlay_attributes(folder) == []


@pytest.mark.parametrize(
    "statements",
    [
        "pass",
        "open('data/x', 'a').write('z'); os.remove('data/y'); os.mkdir('out'); open('out/f', 'w').write('f')",
        "os.mkdir('mine'); os.rename('mine', 'mine2')",
    ],
)
def test_an_experiment_that_renamed_no_folder_of_the_code_ends_without_an_unmount(tmp_path, code, statements):
    """``finish`` leaves the view mounted (the namespace's end takes it off, after the exit code) when
    nothing of the code was renamed, and takes the mark off: the folder is what the experiment left."""
    folder = tmp_path / "experiment"
    seen = view(code, folder, statements, settle="finish")
    assert json.loads((tmp_path / "finished.json").read_text()) == {"made": [], "mounted": True}
    assert overlay_attributes(folder) == []
    assert view(code, folder, "pass") == seen


def test_a_folder_never_viewed_with_redirects_is_left_alone(tmp_path):
    folder = tmp_path / "experiment"
    (folder / "out").mkdir(parents=True)
    assert codeview.settle(str(folder)) == []


def test_two_settles_of_one_folder_take_turns(tmp_path, code):
    """A ``pull`` may settle a folder while the wrapper of a cancelled attempt still does: the second waits
    for the first and finds the folder settled."""
    import fcntl
    import time

    folder = tmp_path / "experiment"
    seen = view(code, folder, "os.rename('data', 'data2')", settle=False)
    held = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a settle under way holds it
        other = subprocess.Popen(
            [sys.executable, "-c", f"from mrunner import codeview; print(codeview.settle({str(folder)!r}))"],
            stdout=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while f"-> FLOCK  ADVISORY  WRITE {other.pid} " not in Path("/proc/locks").read_text():
            assert other.poll() is None and time.monotonic() < deadline, "the second settle did not wait"
        made: list[str] = []  # the first settle's work, under its lock
        codeview._settle(str(folder), "", "", str(code), made)
        os.removexattr(folder, codeview.UNSETTLED)
    finally:
        os.close(held)
    assert other.communicate(timeout=30)[0].strip() == "[]" and made == ["data2"]
    assert plain(folder, "data2") == seen_below(seen, "data2")


#: A view whose kernel refuses ``redirect_dir`` (EINVAL, as one built without it does): the mount as before.
WITHOUT_REDIRECTS = """
import ctypes, errno, os, sys
from mrunner import codeview

real = codeview._LIBC

class Refusing:
    def __getattr__(self, name):
        return getattr(real, name)

    def mount(self, source, target, kind, flags, data):
        if data and b"redirect_dir" in data:
            ctypes.set_errno(errno.EINVAL)
            return -1
        return real.mount(source, target, kind, flags, data)

codeview._LIBC = Refusing()
code, folder, work = sys.argv[1:]
codeview.mount(code, folder, work)
try:
    os.rename(os.path.join(folder, "data"), os.path.join(folder, "data2"))
    print("renamed")
except OSError as error:
    print(errno.errorcode[error.errno], os.listxattr(folder).count(codeview.UNSETTLED))
"""


def test_where_the_kernel_refuses_redirects_the_view_is_mounted_as_before(tmp_path, code):
    folder = tmp_path / "experiment"
    folder.mkdir()
    ran = subprocess.run(
        [sys.executable, "-c", WITHOUT_REDIRECTS, str(code), str(folder), str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["EXDEV", "0"]  # as before redirects: no mark, nothing to settle
