"""mrunner.transfer, both sides in this process: what a pull sends, writes and leaves behind, whatever the backend."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mrunner import transfer


def _progress(total: int, label: str):
    class Bar:
        def advance(self) -> None:
            pass

    return contextlib.nullcontext(Bar())


def pull(source: Path, destination: Path, include: tuple[str, ...] = (), cut_at: int | None = None):
    """One pull of every folder below ``source`` as the backends run it: the sender walks, the receiver lists,
    the sender streams what the receiver lacks. ``cut_at``: the stream ends after that many bytes."""
    folders = {folder.name: str(folder) for folder in source.iterdir()}
    local = transfer.Local(str(destination), folders)
    stream = io.BytesIO()
    transfer.send(transfer.walk({"folders": folders, "include": list(include)}), local.have, stream)
    data = stream.getvalue()[:cut_at]
    received = transfer.receive(
        [data[k : k + 4096] for k in range(0, len(data), 4096)], str(destination), _progress, "t"
    )
    local.remove_parts()
    return received


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "cluster"
    for index in range(2):
        folder = root / f"{index}-run"
        (folder / "outputs" / "deep").mkdir(parents=True)
        (folder / "metrics.json").write_text(f'{{"loss": {index}}}')
        (folder / "outputs" / "deep" / "model.bin").write_bytes(os.urandom(300_000))
        (folder / "outputs" / "script").write_text("#!/bin/sh\n")
        (folder / "outputs" / "script").chmod(0o755)
        (folder / "code").symlink_to(tmp_path)  # an experiment folder's link into the code snapshot
    return root


def tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        path.relative_to(folder).as_posix(): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def test_a_pull_mirrors_files_without_links_then_a_second_sends_nothing(source, tmp_path):
    destination = tmp_path / "here"
    first = pull(source, destination)
    assert (first.files, first.unchanged) == (6, 0)
    assert tree(destination) == tree(source)  # contents and modification times
    assert not any(path.is_symlink() for path in destination.rglob("*"))
    assert (destination / "0-run" / "outputs" / "script").stat().st_mode & 0o777 == 0o755
    inodes = {path: path.stat().st_ino for path in destination.rglob("*")}
    second = pull(source, destination)
    assert (second.files, second.bytes, second.unchanged) == (0, 0, 6)
    assert {path: path.stat().st_ino for path in destination.rglob("*")} == inodes  # nothing rewritten


def test_a_changed_file_is_sent_again_and_include_limits_what_is_sent(source, tmp_path):
    destination = tmp_path / "here"
    only = pull(source, destination, include=("*.bin",))
    assert sorted(tree(destination)) == ["0-run/outputs/deep/model.bin", "1-run/outputs/deep/model.bin"]
    assert only.files == 2
    (source / "1-run" / "metrics.json").write_text('{"loss": 0.5}')
    again = pull(source, destination)
    assert (again.files, again.unchanged) == (4, 2)
    (source / "1-run" / "metrics.json").write_text('{"loss": 0.25}')  # same size, a later time
    changed = pull(source, destination)
    assert changed.files == 1 and tree(destination) == tree(source)


def test_a_cut_off_pull_leaves_only_whole_files_and_the_next_completes_it(source, tmp_path):
    destination = tmp_path / "here"
    with pytest.raises(EOFError):
        pull(source, destination, cut_at=400_000)  # within the second model.bin
    whole = {name: file for name, file in tree(destination).items() if not name.endswith(transfer.PART)}
    assert whole and all(whole[name] == tree(source)[name] for name in whole)
    parts = list(destination.rglob(f"*{transfer.PART}"))
    assert len(parts) == 1, parts
    pull(source, destination)
    assert tree(destination) == tree(source) and not list(destination.rglob(f"*{transfer.PART}"))


def test_a_part_whose_file_is_gone_on_the_other_side_is_removed_by_a_complete_pull(source, tmp_path):
    destination = tmp_path / "here"
    stale = destination / "0-run" / "outputs" / f".gone.txt{transfer.PART}"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half of a file the experiment later removed")
    pull(source, destination)
    assert not stale.exists() and tree(destination) == tree(source)


def test_a_file_named_at_the_folders_top_is_found_without_a_walk(source, tmp_path):
    """`results` asks for one file at each folder's top: each is looked up directly (a folder's other files,
    however many, are never listed), and a link or a part of that name is not sent."""
    (source / "0-run" / "outputs" / "metrics.json").write_text("{}")  # the same name deeper: not asked for
    (source / "1-run" / "metrics.json").unlink()
    (source / "1-run" / "metrics.json").symlink_to(source / "0-run" / "metrics.json")
    listed = []
    real = os.scandir
    try:
        os.scandir = lambda *a: listed.append(a) or real(*a)  # type: ignore[assignment]
        found = transfer.walk({"folders": {f.name: str(f) for f in source.iterdir()}, "include": ["metrics.json"]})
    finally:
        os.scandir = real  # type: ignore[assignment]
    assert listed == []
    assert [(folder, relative) for folder, relative, _, _ in found] == [("0-run", "metrics.json")]
    received = pull(source, tmp_path / "here", include=("metrics.json",))
    assert received.files == 1 and tree(tmp_path / "here") == {"0-run/metrics.json": tree(source)["0-run/metrics.json"]}


def test_the_sender_puts_out_the_first_files_while_it_still_reads_the_last(tmp_path, monkeypatch):
    """A sweep's thousand metrics files deflate to less than a megabyte: the sender writes out what it has as it
    goes, so that the receiver (and `results`' parse) starts on the first files while the sender reads on,
    instead of getting the whole stream at its end."""
    root = tmp_path / "cluster"
    for index in range(400):
        folder = root / f"{index}-run"
        folder.mkdir(parents=True)
        lines = "".join(
            f'{{"attempt": 0, "step": {s}, "metrics": {{"loss": {1 / (1 + s + index)}}}}}\n' for s in range(100)
        )
        (folder / "mrunner-metrics.jsonl").write_text(lines)

    class Out(io.BytesIO):
        """Records how many bytes the sender had put out at each flush, and how many files it had opened."""

        def __init__(self) -> None:
            super().__init__()
            self.flushes: list[tuple[int, int]] = []

        def flush(self) -> None:
            self.flushes.append((len(self.getvalue()), opened[0]))

    opened = [0]

    def counted(path: str, mode: str):
        opened[0] += 1
        return open(path, mode)

    monkeypatch.setattr(transfer, "open", counted, raising=False)
    found = transfer.walk({"folders": {f.name: str(f) for f in root.iterdir()}, "include": ["mrunner-metrics.jsonl"]})
    out = Out()
    transfer.send(found, {}, out)
    size, files_read = out.flushes[0]
    assert files_read < len(found) / 2 and size < len(out.getvalue()) / 2
    receiver = transfer.Receiver(str(tmp_path / "here"))
    receiver.feed(out.getvalue()[:size])
    assert receiver.files > 0  # whole files from the first piece alone


def _metrics_files(root: Path, count: int) -> dict[str, str]:
    """``count`` experiment folders, each with a metrics file of its own (one with a torn last line, one with a
    second attempt going back two steps, one with a report without a step): FOLDER -> its path."""
    folders = {}
    for index in range(count):
        folder = root / f"{index}-run"
        folder.mkdir(parents=True)
        lines = [
            json.dumps({"attempt": 0, "step": s, "time": 1.5, "metrics": {"loss": 1 / (1 + s + index), "n": s}})
            for s in range(20)
        ]
        if index % 7 == 1:
            lines.append('{"attempt": 0, "step": 20, "ti')
        if index % 7 == 2:
            lines += [json.dumps({"attempt": 1, "step": s, "time": 2.0, "metrics": {"loss": -s}}) for s in (18, 19)]
        if index % 7 == 3:
            lines.append(json.dumps({"attempt": 0, "step": None, "time": 2.0, "metrics": {"acc": 0.5}}))
        (folder / "mrunner-metrics.jsonl").write_text("\n".join(lines) + ("\n" if index % 7 != 1 else ""))
        folders[folder.name] = str(folder)
    return folders


def _summarising_pull(folders: dict[str, str], have: dict) -> transfer.Receiver:
    """The sender of summaries run as a backend runs it: ``python -S -c LAUNCHER`` with ``mrunner.summaries``'
    source (``mrunner.metrics`` ahead of ``mrunner.transfer``), the request and ``have`` on stdin."""
    from mrunner import summaries

    request = transfer.request_bytes(folders, ["mrunner-metrics.jsonl"], summarise=True) + transfer.have_bytes(have)
    done = subprocess.run(
        [sys.executable, "-S", "-c", transfer.LAUNCHER],
        input=summaries.source() + request,
        capture_output=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "")},
    )
    assert done.returncode == 0, done.stderr.decode()
    return transfer.receive([done.stdout], "", _progress, "t")


def test_a_summarising_pull_sends_each_files_summary_and_only_for_what_changed(tmp_path):
    """`results`' table from a Slurm sweep: the sender reads each metrics file the receiver lacks and sends
    ``metrics.summary`` of it instead (in forked processes for a long list, in the experiments' order), with
    the file's size and time, so that the next pull sends nothing for it until it changes; no file is
    written here."""
    from mrunner import metrics, summaries

    folders = _metrics_files(tmp_path / "cluster", 2 * transfer.SHARE + 3)  # three processes where cores allow
    received = _summarising_pull(folders, {})
    assert list(received.summaries) == [f"{name}/mrunner-metrics.jsonl" for name in folders]
    kept = summaries.decoded(received.summaries)
    for name, path in folders.items():
        data = Path(path, "mrunner-metrics.jsonl").read_bytes()
        info = os.stat(Path(path, "mrunner-metrics.jsonl"))
        assert kept[name] == (info.st_size, info.st_mtime_ns, json.loads(json.dumps(metrics.summary(data))))
    assert not list(tmp_path.glob("*.mrunner-part")) and not (Path.cwd() / "0-run").exists()
    have = {name: {"mrunner-metrics.jsonl": list(found[:2])} for name, found in kept.items()}
    assert _summarising_pull(folders, have).summaries == {}
    grown = Path(folders["5-run"], "mrunner-metrics.jsonl")
    with open(grown, "a") as stream:
        stream.write(json.dumps({"attempt": 0, "step": 99, "time": 3.0, "metrics": {"loss": 7.0, "n": 99}}) + "\n")
    again = summaries.decoded(_summarising_pull(folders, have).summaries)
    assert list(again) == ["5-run"] and again["5-run"][2]["loss"][0] == 7.0 and again["5-run"][2]["n"][4] == 99


def test_the_sender_of_summaries_is_one_module_whose_parts_share_no_name():
    """``mrunner.summaries.sender_source`` runs ``mrunner.metrics`` and ``mrunner.transfer`` as one module: a
    name both define would make one of them call the other's."""
    import ast

    from mrunner import metrics

    def defined(path: str) -> set[str]:
        tree = ast.parse(Path(path).read_text())
        names = set()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
        return names

    assert defined(metrics.__file__) & defined(transfer.__file__) == set()
