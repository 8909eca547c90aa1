"""The code snapshot: the project's files, frozen at submission, that every experiment of a sweep runs.

The project is the target's git work tree, else the nearest folder up with a project marker
(``pyproject.toml``, ``setup.py``, ``.mrunnerignore``, ...), else the target's folder. Files are chosen as
the working tree holds them (tracked plus untracked-not-ignored, so every .gitignore counts, nested
repositories and submodules included) or, outside git, by walking the folder with its top-level
.gitignore; ``.mrunnerignore`` and the spec's ``exclude`` patterns (gitignore syntax) remove more. A
snapshot larger than the context's ``max_snapshot_mb`` is refused before any file is read. Each file is hashed; the snapshot's digest is the hash
of the sorted (path, mode, file hash) list, so an unchanged project gives the same digest and the same
experiment identities. The manifest is kept under the data directory at once; the content is frozen in a
copy only for a backend that asks for a folder (``folder()``: the local backend, an image build). A backend
that streams the files elsewhere reads them with ``read()``, which checks each against its hash, so what
runs is what was hashed, and editing the project while a sweep is queued changes nothing.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mrunner import paths
from mrunner.errors import MrunnerError, os_error
from mrunner.layout import RESULTS_FOLDER

# Never part of a snapshot, whatever the ignore files say: these folders at any depth, and compiled Python.
# (Checked without pathspec, whose import alone costs 20 ms: most projects have no pattern of their own.)
EXCLUDED_FOLDERS = frozenset(
    {".git", "__pycache__", ".venv", "venv", ".mypy_cache", ".pytest_cache", ".neptune", RESULTS_FOLDER}
)
EXCLUDED_SUFFIX = ".pyc"
# What makes a folder a project's root outside git (the files Python's packaging tools look for, and ours).
PROJECT_MARKERS = (
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    ".mrunnerignore",
    "requirements.txt",
    "Pipfile",
    "environment.yml",
    "tox.ini",
)
COPY_CHUNK = 1 << 20  # files are hashed and copied this much at a time, never read whole
# Small files are kept in memory as they are hashed (up to this much in all), so a backend that streams
# them gets exactly the hashed bytes without reading and hashing them again.
KEPT_FILE_BYTES = 1024 * 1024
KEPT_TOTAL_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Snapshot:
    digest: str
    files: dict[str, tuple[str, int]]  # relative path -> (sha256, mode)
    size: int
    store: Path
    root: Path | None = None  # the project folder the files were read from (None: only the frozen copy)
    extra: dict[str, Path] = field(default_factory=dict)  # files from paths_to_copy, by their snapshot path
    git_commit: str | None = None
    git_dirty: bool | None = None
    kept: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)  # hashed bytes in memory

    @property
    def tree(self) -> Path:
        return self.store / "trees" / self.digest

    def folder(self) -> Path:
        """The frozen copy of the files, made on first use and shared by later sweeps of the same digest."""
        if not self.tree.is_dir():
            _materialise(self)
        return self.tree

    def copy_file(self, relative: str, destination: Path) -> None:
        """Write a file's snapshotted content to ``destination``, a chunk at a time (never read whole)
        and checked against its hash, like ``read``."""
        if relative in self.kept:
            destination.write_bytes(self.kept[relative])
            return
        source = self.extra.get(relative) or (self.root / relative if self.root is not None else None)
        if source is None or not source.exists():
            destination.write_bytes(self.read(relative))  # says what is missing
            return
        digest = hashlib.sha256()
        with open(source, "rb") as reading, open(destination, "wb") as writing:
            while chunk := reading.read(COPY_CHUNK):
                digest.update(chunk)
                writing.write(chunk)
        if digest.hexdigest() != self.files[relative][0]:
            raise MrunnerError(f"{relative} changed while mrunner was submitting it; submit again")

    def changed_since(self) -> str | None:
        """A file whose snapshotted content is no longer to be had (no frozen copy, and the project's file
        changed or is gone), if any: checked before a resume records anything, so that it can say what to do
        instead of failing half way."""
        if self.tree.is_dir() or self.root is None:
            return None
        for relative, (expected, _) in self.files.items():
            source = self.extra.get(relative) or self.root / relative
            if relative in self.kept:
                continue
            if not source.is_file():
                return relative
            digest = hashlib.sha256()
            with open(source, "rb") as reading:
                while chunk := reading.read(COPY_CHUNK):
                    digest.update(chunk)
            if digest.hexdigest() != expected:
                return relative
        return None

    def restore(self, relative: str, data: bytes) -> bool:
        """Take ``data`` as the content of ``relative`` when it is the snapshotted content (its hash), so that
        a file edited since can be read as snapshotted (a backend recorded its text: ``Backend.identify``);
        whether the snapshot can now be read whole."""
        if relative not in self.files or hashlib.sha256(data).hexdigest() != self.files[relative][0]:
            return False
        self.kept[relative] = data
        return self.changed_since() is None

    def read(self, relative: str) -> bytes:
        """A file's content as snapshotted: the bytes kept when it was hashed, else the project's file
        checked against its hash, else the frozen copy. A file edited since the snapshot is an error, never
        silently sent."""
        if relative in self.kept:
            return self.kept[relative]
        source = self.extra.get(relative) or (self.root / relative if self.root is not None else None)
        if source is not None and source.exists():
            data = source.read_bytes()
            if hashlib.sha256(data).hexdigest() == self.files[relative][0]:
                return data
        if self.tree.is_dir():
            return (self.tree / relative).read_bytes()
        if source is not None:
            raise MrunnerError(f"{relative} changed while mrunner was submitting it; submit again")
        raise MrunnerError(
            f"the content of code snapshot {self.digest[:12]} is no longer on this machine; submit the sweep again"
        )


def store_dir() -> Path:
    return paths.data_dir() / "snapshots"


def project_root(start: Path) -> Path:
    """The folder to snapshot for a target in ``start``: its git work tree; else the nearest folder up with
    a project marker; else ``start`` itself. A home folder or ``/`` is a root only when it holds a marker:
    a script lying in one is refused rather than snapshotting everything below it."""
    start = start.resolve()
    result = _git(start, "rev-parse", "--show-toplevel")
    if result:
        return Path(result.strip())
    for folder in (start, *start.parents):
        if any(os.path.lexists(folder / marker) for marker in PROJECT_MARKERS):
            return folder
    if start == Path.home().resolve() or start == Path(start.anchor):
        where = "your home folder" if start != Path(start.anchor) else "the root folder"
        raise MrunnerError(
            f"{start} is {where} and holds no project marker ({', '.join(PROJECT_MARKERS[:4])}, ...): mrunner "
            f"will not snapshot all of it; move the script into a folder of its own, or mark {start} as the "
            f"project with a .mrunnerignore listing what to leave out"
        )
    return start


def selection(root: Path, exclude: Sequence[str] = (), paths_to_copy: Sequence[str] = ()) -> set[str]:
    """The relative paths a snapshot of ``root`` would hold, found without reading any file."""
    root = root.resolve()
    sources = {relative: os.path.join(root, relative) for relative in _select(root, exclude)}
    for path in paths_to_copy:
        _add_extra({}, sources, Path(path).expanduser().resolve())
    return set(sources)


def take(
    root: Path,
    exclude: Sequence[str] = (),
    paths_to_copy: Sequence[str] = (),
    store: Path | None = None,
    max_bytes: int | None = None,
) -> Snapshot:
    """Snapshot ``root`` (plus ``paths_to_copy``, placed at the top by their base names) and keep its
    manifest in the store. Over ``max_bytes`` in all, it is refused before any file is read, naming the
    largest folders."""
    frozen = scan(root, exclude, paths_to_copy, store, max_bytes)
    manifest = frozen.store / "trees" / f"{frozen.digest}.json"
    try:
        _write_manifest(manifest, frozen.files, frozen.size)
    except OSError as error:
        raise os_error(error, "write the code snapshot's manifest", error.filename or manifest) from None
    return frozen


def scan(
    root: Path,
    exclude: Sequence[str] = (),
    paths_to_copy: Sequence[str] = (),
    store: Path | None = None,
    max_bytes: int | None = None,
) -> Snapshot:
    """What ``take`` would snapshot, hashed and checked as it does, with nothing written: a dry run shows
    what a submission would hand over without leaving a manifest behind."""
    root = root.resolve()
    selected = _select(root, exclude)
    sources = {relative: os.path.join(root, relative) for relative in selected}  # strings: 2,000 Paths cost 5 ms
    extra: dict[str, Path] = {}
    for path in paths_to_copy:
        _add_extra(extra, sources, Path(path).expanduser().resolve())
    found: list[tuple[str, str, os.stat_result]] = []
    for relative, source in sorted(sources.items()):
        try:
            info = os.stat(source)
        except FileNotFoundError:
            continue  # deleted from the work tree but still in git's index, or a dangling link
        except OSError as error:
            if error.errno == errno.ELOOP:
                continue  # a loop of symbolic links holds no content
            raise os_error(
                error, "read", source, f"fix it, or leave it out with a line in {root}/.mrunnerignore"
            ) from None
        if stat.S_ISREG(info.st_mode):
            found.append((relative, source, info))
    size = sum(info.st_size for _, _, info in found)
    if max_bytes is not None and size > max_bytes:
        raise MrunnerError(_too_large(root, found, size, max_bytes))
    files: dict[str, tuple[str, int]] = {}
    kept: dict[str, bytes] = {}
    kept_size = 0
    for relative, source, info in found:
        mode = 0o755 if info.st_mode & 0o111 else 0o644
        keep = info.st_size <= KEPT_FILE_BYTES and kept_size + info.st_size <= KEPT_TOTAL_BYTES
        try:
            if keep:
                with open(source, "rb") as stream:
                    data = stream.read()
                kept[relative] = data
                kept_size += len(data)
                files[relative] = (hashlib.sha256(data).hexdigest(), mode)
            else:
                files[relative] = (_hash_file(source), mode)
        except OSError as error:
            raise os_error(
                error, "read", source, f"make it readable, or leave it out with a line in {root}/.mrunnerignore"
            ) from None
    digest = _digest(files)
    commit, dirty = _git_state(root)
    base = store or store_dir()
    return Snapshot(
        digest, files, size, base, root, {k: v for k, v in extra.items() if k in files}, commit, dirty, kept
    )


def _too_large(root: Path, found: Sequence[tuple[str, str, os.stat_result]], size: int, limit: int) -> str:
    by_top: dict[str, int] = {}
    for relative, _, info in found:
        top, slash, _ = relative.partition("/")
        by_top[top + slash] = by_top.get(top + slash, 0) + info.st_size
    largest = sorted(by_top.items(), key=lambda item: -item[1])[:3]
    named = ", ".join(f"{name} ({_mib(bytes_)})" for name, bytes_ in largest)
    return (
        f"the code snapshot of {root} would be {_mib(size)} in {len(found)} files, more than max_snapshot_mb "
        f"({limit // 2**20} MB): the largest are {named}; list data and outputs in {root}/.mrunnerignore "
        f"(gitignore syntax), or raise max_snapshot_mb"
    )


def _mib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def load(digest: str, root: Path | None = None, store: Path | None = None) -> Snapshot:
    """A snapshot taken earlier (for `mrunner resume`; the sweep's record holds its git state). Its content
    comes from the frozen copy if a backend made one, else from the project folder ``root`` as long as the
    files there still match their hashes (a remote backend's own store usually has them anyway)."""
    base = store or store_dir()
    manifest = base / "trees" / f"{digest}.json"
    if not manifest.exists():
        raise MrunnerError(f"the code snapshot {digest[:12]} is missing from {base}; it cannot be resumed from here")
    try:
        data = json.loads(manifest.read_text())
        files = {path: (entry[0], entry[1]) for path, entry in data["files"].items()}
    except OSError as error:
        raise os_error(error, "read the code snapshot's manifest", manifest) from None
    except (ValueError, KeyError, TypeError, IndexError):
        raise MrunnerError(
            f"the code snapshot's manifest {manifest} is damaged: the sweep cannot be resumed from it; submit again"
        ) from None
    return Snapshot(digest, files, data["size"], base, root)


def _select(root: Path, exclude: Sequence[str]) -> list[str]:
    data = paths.data_dir().resolve()
    own = f"{data.relative_to(root).as_posix()}/" if root in data.parents else None  # mrunner's own records
    listed = _git_files(root)
    candidates = listed if listed is not None else _walk(root, _ignore_spec(root / ".gitignore", []), own)
    spec = _ignore_spec(root / ".mrunnerignore", exclude)
    outputs = _hydra_outputs(candidates)
    return [
        name
        for name in candidates
        if not _always_excluded(name)
        and not (own and name.startswith(own))
        and not (spec and spec.match_file(name))
        and not (outputs and _within(name, outputs))
    ]


def _hydra_outputs(names: Sequence[str]) -> set[str]:
    """Hydra's output folders among ``names`` (``a/b/``): one holding ``.hydra/`` (a run's or a job's) or, below
    the root, ``multirun.yaml`` (a sweep's). Results, not code: Hydra and mrunner's Hydra launcher write them into
    the project (``outputs/DATE/TIME/``, ``multirun/DATE/TIME/``), and snapshotted they would change the code's
    identity with every run."""
    folders = set()
    for name in names:
        if name.endswith("/multirun.yaml"):
            folders.add(name[: -len("multirun.yaml")])
        elif ".hydra/" in name:
            head, found, _ = f"/{name}".partition("/.hydra/")
            if found:
                folders.add(f"{head[1:]}/" if head else ".hydra/")
    return folders


def _within(name: str, folders: set[str]) -> bool:
    position = name.find("/")
    while position != -1:
        if name[: position + 1] in folders:
            return True
        position = name.find("/", position + 1)
    return False


def _git_files(folder: Path, prefix: str = "") -> list[str] | None:
    """What the git working tree at ``folder`` holds (tracked and untracked files that are not ignored), the
    files of nested repositories and submodules included; None outside git."""
    try:
        result = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=folder,
            capture_output=True,
            check=False,
        )
    except (FileNotFoundError, NotADirectoryError):
        return None
    if result.returncode != 0:
        return None
    names: set[str] = set()
    for raw in result.stdout.split(b"\0"):
        name = os.fsdecode(raw)  # any byte is a valid file name: undecodable ones survive as surrogates
        if not name:
            continue
        path = folder / name
        if path.is_symlink() and path.is_dir():  # a link to a folder: its files, under the link's name
            if not _loops(str(path), str(folder)):
                names.update(f"{prefix}{name}/{n}" for n in _walk(path, None))
        elif name.endswith("/") or path.is_dir():  # a nested repository or submodule
            inner = name.rstrip("/")
            nested = _git_files(path, f"{prefix}{inner}/") if (path / ".git").exists() else None
            names.update(nested if nested is not None else (f"{prefix}{inner}/{n}" for n in _walk(path, None)))
        else:
            names.add(prefix + name)
    return sorted(names)


def _always_excluded(name: str) -> bool:
    parts = name.split("/")
    return any(part.endswith(EXCLUDED_SUFFIX) for part in parts) or not EXCLUDED_FOLDERS.isdisjoint(parts[:-1])


def _ignore_spec(file: Path, extra: Sequence[str]):  # -> pathspec.GitIgnoreSpec | None
    """The patterns of ``file`` (if it exists) and ``extra``; None when there are none."""
    lines = list(extra)
    if file.is_file():
        lines += file.read_text(errors="replace").splitlines()
    if not any(line.strip() and not line.startswith("#") for line in lines):
        return None
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(lines)


def _walk(root: Path, ignored, skipped: str | None = None) -> list[str]:
    """The files under ``root``, but for excluded folders, what ``ignored`` matches, and the folder ``skipped``
    (``a/b/``: mrunner's own data folder when it lies inside the project, never walked into)."""
    found = []

    def unreadable(error: OSError) -> None:
        raise os_error(error, "read", error.filename, f"make it readable, or leave it out in {root}/.mrunnerignore")

    # Links to folders are followed, as links to files are (an experiment reads ``data/`` whether it is a
    # folder or a link to one), but never into a folder the walk is already inside of (``up -> ..``).
    for directory, subdirs, names in os.walk(root, onerror=unreadable, followlinks=True):
        relative_dir = os.path.relpath(directory, root)
        prefix = "" if relative_dir == "." else relative_dir.replace(os.sep, "/") + "/"
        subdirs[:] = [
            d
            for d in subdirs
            if d not in EXCLUDED_FOLDERS
            and prefix + d + "/" != skipped
            and not (ignored and ignored.match_file(prefix + d + "/"))
            and not (os.path.islink(os.path.join(directory, d)) and _loops(os.path.join(directory, d), directory))
        ]
        found += [prefix + name for name in names if not (ignored and ignored.match_file(prefix + name))]
    return sorted(found)


def _loops(link: str, directory: str) -> bool:
    """Whether the folder ``link`` (in ``directory``) leads back into a folder on the way to it: following it
    would walk the same files for ever (``up -> ..``, or two folders linking to each other)."""
    target = os.path.realpath(link)
    on_the_way = directory
    while True:
        real = os.path.realpath(on_the_way)
        if real == target or real.startswith(target.rstrip(os.sep) + os.sep):
            return True
        parent = os.path.dirname(on_the_way)
        if parent == on_the_way:
            return False
        on_the_way = parent


def _add_extra(extra_files: dict[str, Path], sources: dict[str, str], extra: Path) -> None:
    if not extra.exists():
        raise MrunnerError(f"paths_to_copy: {extra} does not exist")
    if extra.is_file():
        items = [(extra.name, extra)]
    else:
        items = [(f"{extra.name}/{p.relative_to(extra).as_posix()}", p) for p in extra.rglob("*") if p.is_file()]
    for relative, source in items:
        if relative in sources:
            raise MrunnerError(f"paths_to_copy: {extra} would overwrite the project's own {relative}")
        sources[relative] = str(source)
        extra_files[relative] = source


def _hash_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _digest(files: dict[str, tuple[str, int]]) -> str:
    digest = hashlib.sha256()
    for relative, (sha, mode) in sorted(files.items()):
        digest.update(os.fsencode(relative) + f"\0{mode:o}\0{sha}\n".encode())
    return digest.hexdigest()


def _write_manifest(path: Path, files: dict[str, tuple[str, int]], size: int) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as stream:
        json.dump({"files": {k: list(v) for k, v in files.items()}, "size": size}, stream)
    os.replace(temporary, path)


def _materialise(snapshot: Snapshot) -> None:
    """Copy the files to ``trees/DIGEST``. The copy is built aside and renamed into place, so an
    interrupted copy never leaves a tree that a later sweep would trust."""
    trees = snapshot.tree.parent
    try:
        _build_tree(snapshot, trees)
    except OSError as error:
        raise os_error(error, "copy the code snapshot to", snapshot.tree) from None


def _build_tree(snapshot: Snapshot, trees: Path) -> None:
    building = Path(tempfile.mkdtemp(prefix=f".{snapshot.digest[:12]}-", dir=trees))
    try:
        for relative, (_, mode) in snapshot.files.items():
            destination = building / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            snapshot.copy_file(relative, destination)
            os.chmod(destination, mode & ~0o222)  # experiments share the tree: read-only where modes count
        for folder in sorted({p for relative in snapshot.files for p in Path(relative).parents}, reverse=True):
            os.chmod(building / folder, 0o555)
        try:
            building.rename(snapshot.tree)
        except OSError:
            if not snapshot.tree.is_dir():  # another mrunner finished the same snapshot first: use theirs
                raise
    finally:
        if building.exists():
            for left, _, _ in os.walk(building):
                os.chmod(left, 0o755)
            shutil.rmtree(building, ignore_errors=True)


def _git_state(root: Path) -> tuple[str | None, bool | None]:
    status = _git(root, "status", "--porcelain=v2", "--branch")
    if status is None:
        return None, None
    commit = None
    dirty = False
    for line in status.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split()[-1]
            commit = None if oid == "(initial)" else oid
        elif not line.startswith("#"):
            dirty = True
    return commit, dirty


def _git(cwd: Path, *args: str) -> str | None:
    """git's output, or None outside a work tree (or without git)."""
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return result.stdout if result.returncode == 0 else None
