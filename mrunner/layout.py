"""The experiment contract: where an experiment's files are and what it finds in its environment, the same
on every backend. A backend decides where the storage root is on its platform (a local folder, a cluster's
file system, a volume claim), never what lies below it.

Below ``STORAGE_DIR`` (posix paths, the same on every backend)::

    PROJECT/SWEEP/                       the sweep folder (MRUNNER_SWEEP_DIR)
        INDEX-NAME/                      the experiment's own folder (MRUNNER_EXPERIMENT_DIR) and its working
                                         directory: the project's files appear in it as links into the code
                                         snapshot, and every relative write lands in it
            mrunner-metrics.jsonl        what ``mrunner.report`` recorded, a line of JSON per call, every
                                         attempt appending (``mrunner results`` brings back only these)
        checkpoints/INDEX-NAME/          MRUNNER_CHECKPOINT_DIR: the same for every attempt of the experiment
        views/INDEX-NAME/                the work folder of an attempt's copy-on-write view of the code
                                         (``mrunner.codeview``), where a backend mounts one; removed after it
        set-aside/INDEX-NAME/ATTEMPT/    project files an earlier attempt changed under its view, set aside when
                                         this attempt runs other code (``resume --current-code``)
        config/INDEX.json                MRUNNER_CONFIG: parameters and metadata (JSON, which is YAML too)
        logs/INDEX.ATTEMPT.log           what one attempt printed
        status/INDEX.ATTEMPT             one attempt's exit code, written when its command returns by itself
                                         (not after a stopping signal): proof of how it ended

Why links instead of running in the snapshot: experiments of one sweep share one snapshot, so a script that
writes ``out.txt`` or ``checkpoints/`` by a relative path would overwrite its neighbours' files there, and a
later sweep of the same code would find them (and resume from another run's checkpoint). Copying the tree
per experiment would cost files x experiments on a cluster's quota'd file system. A link per top-level entry
keeps relative reads (``data/...``, configs) and imports working at a cost that does not grow with the
project's size. Folders that hold only placeholders (``outputs/.gitkeep``) are made real, since scripts
write into them; so are the folders on the way to the directory mrunner was started in.

Links let a script that deletes ``data/x``, creates ``data/new`` or appends to ``conf/a.yaml`` reach the shared
snapshot where file modes do not stop it (root). The local backend therefore lays a copy-on-write view of the
snapshot over the experiment's folder instead of links, where it may mount one (``mrunner.codeview``: the
attempt's wrapper makes no links then, only the real folders); where it may not, it mirrors the project's
folders (``mirror``: real folders, a link per file, so deletes and creates stay in the experiment's folder)
and watches the snapshot for writes through the links (``mrunner.treeguard``).

This module is part of the experiment side that backends ship where experiments run (see
``mrunner.runtime``): it imports only the standard library.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

# The config file is read on the experiment side by mrunner.configfile (lean imports); named here with the contract.
from mrunner.configfile import CONFIG as CONFIG
from mrunner.configfile import experiment_info as experiment_info

EXPERIMENT_DIR = "MRUNNER_EXPERIMENT_DIR"
CHECKPOINT_DIR = "MRUNNER_CHECKPOINT_DIR"
ATTEMPT = "MRUNNER_ATTEMPT"
SWEEP_DIR = "MRUNNER_SWEEP_DIR"
STORAGE_DIR = "STORAGE_DIR"
#: ``mrunner.report``'s file in the experiment's own folder (the name mrunner.metrics writes to).
METRICS_FILE = "mrunner-metrics.jsonl"
#: Where `mrunner pull` puts results by default (``./mrunner-results/SWEEP``): never snapshotted (``mrunner.snapshot``), so that
#: pulled results neither grow later snapshots nor change the code's identity (and so de-duplication).
RESULTS_FOLDER = "mrunner-results"
#: The variables every experiment gets, on every backend.
VARIABLES = (CONFIG, EXPERIMENT_DIR, CHECKPOINT_DIR, ATTEMPT, SWEEP_DIR, STORAGE_DIR)

#: File names that only keep an otherwise empty folder in version control: a folder holding nothing else is
#: an output folder, created real in each experiment's own folder instead of linked to the snapshot's.
PLACEHOLDERS = frozenset({".gitkeep", ".keep", ".gitignore", ".placeholder", ".empty"})

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def metrics_file_holds(mark: bytes) -> bool:
    """Whether this experiment's metrics file holds ``mark``: how a tracker's forwarding (``mrunner.mlflow_run``,
    ``mrunner.wandb_run``) learns that a process of the experiment (this one, another rank, an earlier attempt)
    noted it stopped forwarding (``mrunner.metrics.untracked``). False outside an experiment, or before its
    first report."""
    folder = os.environ.get(EXPERIMENT_DIR)
    if not folder:
        return False
    try:
        with open(os.path.join(folder, METRICS_FILE), "rb") as stream:
            return mark in stream.read()
    except FileNotFoundError:
        return False


def safe_name(text: str) -> str:
    """``text`` as one path component that every file system and shell accepts."""
    return _UNSAFE.sub("_", text).strip(".") or "_"


@dataclass(frozen=True)
class Layout:
    """Where one experiment's files are, below a backend's storage root. A frozen dataclass: backends outside
    this repository make another attempt's layout with ``dataclasses.replace(layout, attempt=...)``, as
    ``examples/backend`` does, so it stays one (``dataclasses`` is imported once per wrapper interpreter, and
    the local fork server's wrappers inherit it)."""

    storage: str
    project: str
    sweep: str
    index: int
    name: str
    attempt: int = 0

    @property
    def sweep_dir(self) -> str:
        return f"{self.storage.rstrip('/')}/{safe_name(self.project)}/{self.sweep}"

    @property
    def folder_name(self) -> str:
        return f"{self.index}-{safe_name(self.name)}"

    @property
    def experiment_dir(self) -> str:
        return f"{self.sweep_dir}/{self.folder_name}"

    @property
    def metrics_file(self) -> str:
        return f"{self.experiment_dir}/{METRICS_FILE}"

    @property
    def checkpoint_dir(self) -> str:
        return f"{self.sweep_dir}/checkpoints/{self.folder_name}"

    @property
    def view_work_dir(self) -> str:
        return f"{self.sweep_dir}/views/{self.folder_name}"

    @property
    def set_aside_dir(self) -> str:
        return f"{self.sweep_dir}/set-aside/{self.folder_name}/{self.attempt}"

    @property
    def config_file(self) -> str:
        return f"{self.sweep_dir}/config/{self.index}.json"

    def log_file(self, attempt: int | None = None) -> str:
        return f"{self.sweep_dir}/logs/{self.index}.{self.attempt if attempt is None else attempt}.log"

    def exit_code_file(self, attempt: int | None = None) -> str:
        return f"{self.sweep_dir}/status/{self.index}.{self.attempt if attempt is None else attempt}"

    def environment(self) -> dict[str, str]:
        """The contract's variables for this attempt (a backend adds the experiment's own ``env``)."""
        return {
            CONFIG: self.config_file,
            EXPERIMENT_DIR: self.experiment_dir,
            CHECKPOINT_DIR: self.checkpoint_dir,
            ATTEMPT: str(self.attempt),
            SWEEP_DIR: self.sweep_dir,
            STORAGE_DIR: self.storage,
        }

    def folders(self) -> list[str]:
        """The folders an attempt needs before it starts."""
        sweep = self.sweep_dir
        return [self.experiment_dir, self.checkpoint_dir, f"{sweep}/config", f"{sweep}/logs", f"{sweep}/status"]


def of_run(storage: str, sweep, run) -> Layout:  # sweep, run: mrunner.records.Sweep and Run (duck-typed)
    """The layout of a recorded experiment at its current attempt."""
    return Layout(storage, sweep.project, sweep.id, run.index, run.name, run.attempt)


def experiment_dirs(storage: str, sweep, runs) -> dict[int, str]:  # mrunner.records.Sweep, Runs (duck-typed)
    """Each run's ``experiment_dir`` by index, as ``of_run`` gives it, derived once per distinct name from the
    layout of index 0: `status --json` asks this for every run of a sweep of any size, and a layout per run
    made the sweep's folder (a regular expression) again for each."""
    parts: dict[str, tuple[str, str]] = {}  # by name: the folder the experiments' are in, what follows the index
    dirs = {}
    for run in runs:
        if run.name not in parts:
            parent, _, folder = Layout(storage, sweep.project, sweep.id, 0, run.name).experiment_dir.rpartition("/")
            parts[run.name] = (parent, folder[len("0") :])
        parent, rest = parts[run.name]
        dirs[run.index] = f"{parent}/{run.index}{rest}"
    return dirs


# -- the working directory -----------------------------------------------------------------------------------


def working_entries(files: Iterable[str], workdir: str = ".", mirror: bool = False) -> list[str]:
    """How an experiment's folder mirrors the code snapshot, from the snapshot's file list: ``"d PATH"`` for a
    folder made real, ``"l PATH"`` for a link to the snapshot's entry at ``PATH``, and with ``mirror``
    ``"m PATH"`` for a folder mirrored when the attempt is prepared (real folders, a link per file) instead of
    a link to it. Computed once per sweep; its length depends on the project's top-level entries and output
    folders, not on its number of files. ``mirror`` keeps deletes and creates below the project's folders in
    the experiment's folder at the cost of a link per file per experiment: the local backend's choice where
    it cannot mount a copy-on-write view (``mrunner.codeview``).
    """
    children: dict[str, set[str]] = {"": set()}
    folders: set[str] = {""}
    only_placeholders: dict[str, bool] = {"": True}
    for path in files:
        parts = path.split("/")
        parent = ""
        for depth, part in enumerate(parts):
            child = f"{parent}/{part}" if parent else part
            children.setdefault(parent, set()).add(child)
            if depth < len(parts) - 1:
                folders.add(child)
                only_placeholders.setdefault(child, True)
            parent = child
        if parts[-1] not in PLACEHOLDERS:  # a real file: none of its folders is an output folder
            for depth in range(len(parts)):
                only_placeholders["/".join(parts[:depth])] = False
    real = {""}
    start = os.path.normpath(workdir)
    if start not in (".", ""):
        parts = start.split("/")
        real.update("/".join(parts[: depth + 1]) for depth in range(len(parts)))
    for folder in folders:
        if folder and only_placeholders.get(folder):
            parts = folder.split("/")
            real.update("/".join(parts[: depth + 1]) for depth in range(len(parts)))
    entries: list[str] = []

    def visit(folder: str) -> None:
        for child in sorted(children.get(folder, ())):
            if child in real:
                entries.append(f"d {child}")
                visit(child)
            elif mirror and child in folders:
                entries.append(f"m {child}")
            elif not (child.rsplit("/", 1)[-1] in PLACEHOLDERS and only_placeholders.get(folder)):
                entries.append(f"l {child}")

    visit("")
    for folder in sorted(real - folders - {""}):  # the start directory need not exist in the snapshot
        entries.append(f"d {folder}")
    return entries


def prepare(layout: Layout, code_dir: str, entries: Iterable[str], document: str | None = None) -> str:
    """Make an attempt's folders and working directory; write its config document when given. Returns the
    working directory's root (the experiment's folder). Idempotent: a later attempt finds what an earlier
    one made, and an experiment's own files are never replaced by a link; a link an earlier attempt made
    into another snapshot is pointed at this attempt's."""
    for folder in layout.folders():
        os.makedirs(folder, exist_ok=True)
    root = layout.experiment_dir
    for entry in entries:
        kind, relative = entry.split(" ", 1)
        target = os.path.join(root, relative)
        if kind == "d":
            _folder(target)
        elif kind == "m":
            _mirror(os.path.join(code_dir, relative), target)
        else:
            _link(os.path.join(code_dir, relative), target)
    if document is not None:
        write_atomic(layout.config_file, document)
    write_atomic(layout.exit_code_file(), EXIT_CODE_ROOM)
    return root


#: What an attempt's exit-code file holds until the attempt ends (no exit code: blanks): the file's room on
#: its disk, taken before the experiment runs, so that ``write_exit_code`` can write the end into it in place
#: when the experiment has filled the disk.
EXIT_CODE_ROOM = " " * 15 + "\n"


def write_exit_code(path: str, status: int) -> None:
    """Write an attempt's exit code: atomically, or, on a disk too full for a new file, into the room
    ``prepare`` took (a write of a few bytes within the file's own block). Raises ``OSError`` when neither can."""
    try:
        write_atomic(path, f"{status}\n")
    except OSError:
        with open(path, "r+", encoding="ascii") as stream:
            stream.write(f"{status}".ljust(len(EXIT_CODE_ROOM) - 1) + "\n")


def real_folders(entries: Iterable[str]) -> list[str]:
    """Only the real folders of ``entries``: what an experiment's folder needs under a copy-on-write view of
    the snapshot, which shows the snapshot's files itself."""
    return [entry for entry in entries if entry.startswith("d ")]


def unmirrored(entries: Iterable[str]) -> list[str]:
    """``entries`` with a link per mirrored folder instead of its mirror (``working_entries`` without
    ``mirror``): a few links per experiment, where file modes stop writes through them."""
    return [f"l {entry[2:]}" if entry.startswith("m ") else entry for entry in entries]


def unlink_snapshot_links(root: str, trees: str) -> None:
    """Remove the links below ``root`` that point into a code snapshot below ``trees`` (made by an earlier
    attempt that ran with links): under a copy-on-write view they would still reach the shared snapshot."""
    prefix = trees.rstrip("/") + "/"
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.islink(path) and os.readlink(path).startswith(prefix):
                os.unlink(path)


def _folder(path: str) -> None:
    """A real folder at ``path``: a link to a snapshot's folder that an earlier attempt made is replaced, so
    that nothing this attempt creates there lands in a snapshot."""
    if os.path.islink(path):
        os.unlink(path)
    os.makedirs(path, exist_ok=True)


def _mirror(source: str, target: str) -> None:
    """Mirror the snapshot's folder ``source`` at ``target``: real folders and a link per file. Deleting or
    adding a file below it then touches only the experiment's own folder, never the snapshot that later
    experiments and sweeps share (the cost is a link per file: benchmarks/results-snapshot-guard.md)."""
    for directory, _, names in os.walk(source):
        inner = os.path.relpath(directory, source)
        folder = target if inner == "." else os.path.join(target, inner)
        _folder(folder)
        for name in names:
            _link(os.path.join(directory, name), os.path.join(folder, name))


def _link(source: str, target: str) -> None:
    """A link at ``target`` to ``source``; an experiment's own file there is never replaced."""
    if not os.path.lexists(target):
        os.symlink(source, target)
    elif os.path.islink(target) and os.readlink(target) != source:
        _relink(target, source)  # an attempt of other code (`resume --current-code`)


def _relink(path: str, source: str) -> None:
    temporary = f"{path}.{os.getpid()}.link"
    os.symlink(source, temporary)
    os.replace(temporary, path)


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old content or the new, never a part."""
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


#: Beside an attempt's exit-code file: how the experiment itself ended when it was stopped (a cancel, Ctrl-C, a
#: signal to the wrapper), its exit code or -N for a death by signal N. Such an attempt leaves no exit code, its
#: end being not its own; this says what its script did with the stop (a handler's own exit code, or none).
STOPPED_NOTE = ".stopped"


def read_stopped_code(exit_code_file: str) -> int | None:
    """The stopped experiment's own exit code (``STOPPED_NOTE``), or ``None`` when it was not stopped (or the
    wrapper could not say)."""
    return read_exit_code(exit_code_file + STOPPED_NOTE)


def read_exit_code(path: str) -> int | None:
    """The exit code an attempt left in its status file, or ``None`` when it has not ended (or left none)."""
    try:
        with open(path, encoding="ascii") as stream:
            text = stream.read().strip()
    except (OSError, ValueError):
        return None
    return int(text) if text.lstrip("-").isdigit() else None


def working_directory(layout: Layout, workdir: str) -> str:
    """Where the experiment's process starts: its folder, or the mirror of the folder mrunner ran in."""
    start = os.path.normpath(workdir)
    return layout.experiment_dir if start in (".", "") else f"{layout.experiment_dir}/{start}"
