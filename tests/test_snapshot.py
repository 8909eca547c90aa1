"""The code snapshot: what goes in, its digest, its isolation from later edits."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mrunner import snapshot
from mrunner.errors import MrunnerError


def make_project(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "train.py").write_text("print('train')\n")
    (root / "pkg" / "model.py").write_text("X = 1\n")
    (root / "data").mkdir()
    (root / "data" / "big.bin").write_bytes(b"\0" * 100)
    (root / "notes.tmp").write_text("scratch")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.pyc").write_bytes(b"junk")
    (root / ".gitignore").write_text("data/\n")
    (root / ".mrunnerignore").write_text("*.tmp\n")
    return root


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def test_outside_git_the_ignore_files_and_defaults_apply(tmp_path):
    root = make_project(tmp_path / "project")
    frozen = snapshot.take(root, exclude=["pkg/"], store=tmp_path / "store")
    assert sorted(frozen.files) == [".gitignore", ".mrunnerignore", "train.py"]
    assert frozen.git_commit is None and frozen.git_dirty is None
    assert (frozen.folder() / "train.py").read_text() == "print('train')\n"


def test_in_git_nested_gitignores_count_and_commit_and_dirtiness_are_recorded(tmp_path):
    root = make_project(tmp_path / "project")
    (root / "pkg" / ".gitignore").write_text("generated.py\n")
    (root / "pkg" / "generated.py").write_text("# generated\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    clean = snapshot.take(root, store=tmp_path / "store")
    assert sorted(clean.files) == [".gitignore", ".mrunnerignore", "pkg/.gitignore", "pkg/model.py", "train.py"]
    assert clean.git_commit == git(root, "rev-parse", "HEAD").strip()
    assert clean.git_dirty is False
    (root / "new.py").write_text("untracked but not ignored\n")
    dirty = snapshot.take(root, store=tmp_path / "store")
    assert "new.py" in dirty.files and dirty.git_dirty is True


def test_digest_is_stable_and_changes_with_content_or_mode(tmp_path):
    root = make_project(tmp_path / "project")
    first = snapshot.take(root, store=tmp_path / "store")
    assert snapshot.take(root, store=tmp_path / "store").digest == first.digest
    (root / "train.py").write_text("print('changed')\n")
    second = snapshot.take(root, store=tmp_path / "store")
    assert second.digest != first.digest
    (root / "train.py").chmod(0o755)
    third = snapshot.take(root, store=tmp_path / "store")
    assert third.digest != second.digest and third.files["train.py"][1] == 0o755


def test_editing_the_project_later_does_not_change_the_snapshot(tmp_path):
    root = make_project(tmp_path / "project")
    frozen = snapshot.take(root, store=tmp_path / "store")
    copy = frozen.folder()
    (root / "train.py").write_text("print('edited while queued')\n")
    assert (copy / "train.py").read_text() == "print('train')\n"
    assert frozen.read("train.py") == b"print('train')\n"
    assert snapshot.load(frozen.digest, store=tmp_path / "store").files == frozen.files


def test_small_files_are_served_exactly_as_hashed_even_if_edited_during_the_submission(tmp_path):
    root = make_project(tmp_path / "project")
    frozen = snapshot.take(root, store=tmp_path / "store")
    assert not frozen.tree.exists()  # nothing is copied until a backend asks for a folder
    (root / "train.py").write_text("print('edited during the submission')\n")
    assert frozen.read("train.py") == b"print('train')\n"
    assert (frozen.folder() / "train.py").read_text() == "print('train')\n"


def test_content_not_kept_in_memory_is_checked_against_its_hash(tmp_path, monkeypatch):
    monkeypatch.setattr(snapshot, "KEPT_FILE_BYTES", 0)  # as for files over the in-memory limit
    root = make_project(tmp_path / "project")
    frozen = snapshot.take(root, store=tmp_path / "store")
    assert frozen.kept == {} and frozen.read("train.py") == b"print('train')\n"
    (root / "train.py").write_text("print('edited during the submission')\n")
    with pytest.raises(MrunnerError, match="train.py changed while mrunner was submitting it"):
        frozen.read("train.py")
    with pytest.raises(MrunnerError, match="changed while"):
        frozen.folder()  # never freezes content that differs from what was hashed
    assert not frozen.tree.exists()
    loaded = snapshot.load(frozen.digest, store=tmp_path / "store")
    with pytest.raises(MrunnerError, match="no longer on this machine"):
        loaded.read("train.py")


def test_paths_to_copy_land_at_the_top(tmp_path):
    root = make_project(tmp_path / "project")
    extra = tmp_path / "shared_lib"
    extra.mkdir()
    (extra / "util.py").write_text("U = 1\n")
    frozen = snapshot.take(root, paths_to_copy=[str(extra)], store=tmp_path / "store")
    assert (frozen.folder() / "shared_lib" / "util.py").read_text() == "U = 1\n"
    with pytest.raises(MrunnerError, match="does not exist"):
        snapshot.take(root, paths_to_copy=[str(tmp_path / "missing")], store=tmp_path / "store")


def test_an_interrupted_copy_leaves_no_tree_a_later_sweep_would_trust(tmp_path, monkeypatch):
    root = make_project(tmp_path / "project")
    frozen = snapshot.take(root, store=tmp_path / "store")
    calls = {"n": 0}
    real_copy = snapshot.Snapshot.copy_file

    def failing_copy(self, relative, destination):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_copy(self, relative, destination)

    monkeypatch.setattr(snapshot.Snapshot, "copy_file", failing_copy)
    with pytest.raises(KeyboardInterrupt):
        frozen.folder()
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "store" / "trees").iterdir()] == [f"{frozen.digest}.json"]
    assert all((frozen.folder() / name).exists() for name in frozen.files)


def test_mrunner_data_inside_the_project_is_never_snapshotted(tmp_path, monkeypatch):
    root = make_project(tmp_path / "project")
    monkeypatch.setenv("XDG_DATA_HOME", str(root / "xdg"))
    (root / "xdg" / "mrunner").mkdir(parents=True)
    (root / "xdg" / "mrunner" / "records.db").write_text("db")
    frozen = snapshot.take(root, store=tmp_path / "store")
    assert not any(name.startswith("xdg/") for name in frozen.files)


def test_outside_git_the_walk_never_enters_mrunner_data_inside_the_project(tmp_path, monkeypatch):
    """Outside git the project is walked: mrunner's own data folder inside it (experiments' folders, records:
    tens of thousands of files after a few sweeps) is pruned from the walk, not listed and then left out."""
    root = make_project(tmp_path / "project")
    monkeypatch.setenv("XDG_DATA_HOME", str(root / "xdg"))
    for index in range(3):
        (root / "xdg" / "mrunner" / "experiments" / str(index)).mkdir(parents=True)
    scanned: list[str] = []
    real_scandir = os.scandir

    def recording_scandir(path):
        scanned.append(os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", recording_scandir)
    frozen = snapshot.take(root, store=tmp_path / "store")
    monkeypatch.undo()
    assert scanned and any(Path(folder) == root for folder in scanned)
    assert not [folder for folder in scanned if Path(folder).is_relative_to(root / "xdg" / "mrunner")], scanned
    assert frozen.files and not any(name.startswith("xdg/") for name in frozen.files)


def test_tool_folders_and_compiled_python_are_never_taken_at_any_depth(tmp_path, mrunner_home, monkeypatch):
    root = tmp_path / "project"
    for name in [
        "keep.py",
        "pkg/venv_tools.py",
        "pkg/.venv/lib/site.py",
        "venv/bin/activate",
        "a/b/__pycache__/m.py",
        "a/b/m.pyc",
        ".neptune/run/data",
        "sub/.git/config",
        "a/b/kept.txt",
    ]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(root / "records"))  # mrunner's own data inside the project
    (root / "records" / "mrunner").mkdir(parents=True)
    (root / "records" / "mrunner" / "records.db").write_text("")
    expected = ["a/b/kept.txt", "keep.py", "pkg/venv_tools.py"]
    assert sorted(snapshot.take(root, store=tmp_path / "store").files) == expected
    git(root, "init", "-q")
    assert sorted(snapshot.take(root, store=tmp_path / "store").files) == expected


def test_outside_git_the_root_is_the_nearest_folder_with_a_project_marker(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    project = tmp_path / "home" / "work" / "project"
    (project / "src").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    assert snapshot.project_root(project / "src") == project
    loose = tmp_path / "home" / "work" / "loose"
    loose.mkdir()
    assert snapshot.project_root(loose) == loose  # no marker up to the home folder: the target's own folder
    with pytest.raises(MrunnerError, match=r"is your home folder and holds no project marker.*\.mrunnerignore"):
        snapshot.project_root(tmp_path / "home")
    (tmp_path / "home" / ".mrunnerignore").write_text("work/\n")
    assert snapshot.project_root(tmp_path / "home") == tmp_path / "home"  # a marker of its own: then it is one


def test_running_from_a_parent_folder_snapshots_only_the_project(mrunner, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "setup.py").write_text("")
    (project / "train.py").write_text("print('ran')\n")
    (tmp_path / "big-neighbour.bin").write_bytes(b"x" * 1000)
    result = mrunner("project/train.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "snapshot" in result.stderr and "2 files" in result.stderr  # setup.py and train.py


def test_a_snapshot_over_the_limit_is_refused_before_reading_naming_the_largest_folders(tmp_path, monkeypatch):
    root = make_project(tmp_path / "project")
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "model.pt").write_bytes(b"\0" * 3 * 2**20)
    (root / "logs").mkdir()
    (root / "logs" / "run.log").write_bytes(b"\0" * 2**20)
    monkeypatch.setattr(snapshot, "_hash_file", lambda path: pytest.fail(f"{path} was read"))
    with pytest.raises(MrunnerError) as error:
        snapshot.take(root, store=tmp_path / "store", max_bytes=2 * 2**20)
    message = str(error.value)
    assert "would be 4.0 MiB in 6 files, more than max_snapshot_mb (2 MB)" in message
    assert "the largest are checkpoints/ (3.0 MiB), logs/ (1.0 MiB)" in message
    assert f"{root}/.mrunnerignore" in message and not (tmp_path / "store").exists()


def test_large_files_are_hashed_and_copied_in_chunks(tmp_path, monkeypatch):
    root = make_project(tmp_path / "project")
    (root / "weights.bin").write_bytes(bytes(range(256)) * 4 * 2**12)  # 4 MiB, over the in-memory limit
    reads: list[int] = []

    class Spy:
        def __init__(self, stream):
            self.stream = stream

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.stream.close()

        def read(self, size=-1):
            reads.append(size)
            return self.stream.read(size)

        def write(self, data):
            return self.stream.write(data)

    monkeypatch.setattr(snapshot, "open", lambda *a, **k: Spy(open(*a, **k)), raising=False)
    frozen = snapshot.take(root, store=tmp_path / "store")
    copy = frozen.folder()
    assert (copy / "weights.bin").read_bytes() == (root / "weights.bin").read_bytes()
    assert reads and all(0 < size <= snapshot.COPY_CHUNK for size in reads if size != -1)
    assert -1 not in reads[-10:]  # the large file's reads are all chunked


def test_in_git_the_snapshot_holds_what_the_working_tree_holds(tmp_path):
    root = make_project(tmp_path / "project")
    git(root, "init", "-q")
    nested = root / "vendor" / "lib"
    nested.mkdir(parents=True)
    (nested / "lib.py").write_text("L = 1\n")
    (nested / ".gitignore").write_text("*.log\n")
    (nested / "debug.log").write_text("ignored by the nested repository\n")
    git(nested, "init", "-q")
    git(nested, "add", "-A")
    git(nested, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "lib")
    odd = [os.fsdecode(b"caf\xe9.txt"), "line\nbreak.txt", "spaces and 'quotes' $x.txt"]
    for name in odd:
        (root / name).write_bytes(os.fsencode(name))
    os.symlink("loop", root / "loop")  # a link to itself
    os.symlink("missing-target", root / "dangling")
    frozen = snapshot.take(root, store=tmp_path / "store")
    assert {"vendor/lib/lib.py", "vendor/lib/.gitignore", *odd} <= set(frozen.files)
    assert "vendor/lib/debug.log" not in frozen.files and "loop" not in frozen.files
    copy = frozen.folder()
    assert all((copy / name).read_bytes() == os.fsencode(name) for name in odd)
    assert snapshot.load(frozen.digest, store=tmp_path / "store").files == frozen.files


@pytest.mark.parametrize("in_git", [False, True])
def test_a_link_to_a_folder_brings_its_files_and_a_link_back_up_is_not_followed(tmp_path, in_git):
    """An experiment reads ``inputs/y`` whether ``inputs`` is a folder or a link to one (it was left out, so the
    experiment met ENOENT with no word); a link into a folder the walk is inside of (``up -> ..``, two folders
    linking to each other) is not followed, or the walk would never end."""
    root = tmp_path / "project"
    (root / "shared").mkdir(parents=True)
    (root / "shared" / "y").write_text("y")
    (root / "train.py").write_text("print(open('inputs/y').read())\n")
    os.symlink("shared", root / "inputs")
    os.symlink("..", root / "shared" / "up")
    (root / "a").mkdir()
    (root / "b").mkdir()
    (root / "b" / "q").write_text("q")
    os.symlink("../b", root / "a" / "to-b")
    os.symlink("../a", root / "b" / "to-a")
    if in_git:
        git(root, "init", "-q")
    frozen = snapshot.take(root, store=tmp_path / "store")
    assert set(frozen.files) == {"train.py", "shared/y", "inputs/y", "b/q", "a/to-b/q"}
    assert (frozen.folder() / "inputs" / "y").read_text() == "y"


@pytest.mark.parametrize("in_git", [False, True])
def test_hydra_output_folders_are_never_snapshotted(tmp_path, in_git):
    """`python app.py -m hydra/launcher=mrunner` writes each job's `.hydra/` and log into Hydra's sweep folder
    (`multirun/DATE/TIME/`, beside `multirun.yaml`) in the project, as a run writes `outputs/DATE/TIME/.hydra/`:
    the next submission snapshotted them, so the code's identity changed (de-duplication never matched) and
    snapshots grew with every run. A project's own `outputs/.gitkeep` stays."""
    root = tmp_path / "project"
    (root / "conf").mkdir(parents=True)
    (root / "app.py").write_text("print('app')\n")
    (root / "conf" / "config.yaml").write_text("lr: 0.1\n")
    (root / "outputs").mkdir()
    (root / "outputs" / ".gitkeep").write_text("")
    for job in ("multirun/2026-12-07/09-46-26/0", "multirun/2026-12-07/09-46-26/1", "outputs/2026-12-07/10-00-00"):
        (root / job / ".hydra").mkdir(parents=True)
        (root / job / ".hydra" / "config.yaml").write_text("lr: 0.1\n")
        (root / job / "app.log").write_text("ran\n")
    (root / "multirun" / "2026-12-07" / "09-46-26" / "multirun.yaml").write_text("hydra: {}\n")
    (root / "multirun" / "2026-12-07" / "09-46-26" / ".mrunner").mkdir()
    (root / "multirun" / "2026-12-07" / "09-46-26" / ".mrunner" / "job.pkl").write_bytes(b"x")
    if in_git:
        git(root, "init", "-q")
    assert sorted(snapshot.selection(root)) == ["app.py", "conf/config.yaml", "outputs/.gitkeep"]


def test_a_recorded_text_restores_an_edited_file_only_when_it_is_the_snapshotted_content(tmp_path):
    """`resume` of a sweep whose backend recorded a file's text (the requirements, ``Backend.identify``): the
    snapshot is whole again with it, and only with exactly that content and no other file edited."""
    root = make_project(tmp_path / "project")
    digest = snapshot.take(root, store=tmp_path / "store").digest
    (root / "train.py").write_text("print('edited')\n")
    loaded = snapshot.load(digest, root=root, store=tmp_path / "store")
    assert loaded.changed_since() == "train.py"
    assert not loaded.restore("train.py", b"print('something else')\n") and loaded.changed_since() == "train.py"
    assert loaded.restore("train.py", b"print('train')\n") and loaded.changed_since() is None
    assert loaded.read("train.py") == b"print('train')\n"
    (root / "pkg" / "model.py").write_text("X = 2\n")
    again = snapshot.load(digest, root=root, store=tmp_path / "store")
    assert not again.restore("train.py", b"print('train')\n")  # another file changed too: still not whole
    assert not again.restore("no-such-file", b"")
