"""Bringing experiment folders to this machine: only what is new or changed, as one compressed stream, and
never a half-written file.

The sending side, where the files are (a cluster's login node, a pod mounting a volume claim), gets the
experiment folders first and walks them while the receiving side lists what it has (``have``: FOLDER ->
RELATIVE -> [size, mtime_ns]); then it gets ``have`` and streams each file whose size or modification time differs.
The receiver writes it aside, sets the sender's time and renames it into place. So a second pull of
unchanged results sends nothing and rewrites nothing, and a pull cut off halfway leaves whole files and a
``.mrunner-part`` that the next pull replaces (or removes, once complete, if its file is gone).

The stream is a sequence of frames, each one byte of kind, four of length (big-endian) and the payload:
``z`` frames carry pieces of one raw deflate stream (level 1: the sender must not be slower than the wire),
``r`` frames bytes as they are. Together they make one logical stream: one JSON line (how many files and
bytes follow, how many are unchanged), then per file ``PATHLEN SIZE MODE MTIME_NS\\n``, the UTF-8 path
(``FOLDER/RELATIVE``), SIZE bytes; then ``end\\n``. A request that asks to ``summarise`` gets, per file, a
summary of its first SIZE bytes instead of them (``PATHLEN SIZE MODE MTIME_NS LENGTH\\n``, the path, LENGTH
bytes of summary): the sender is then this module with ``mrunner.metrics`` ahead of it
(``mrunner.summaries``), whose ``summarised`` makes them. A megabyte of a file that a sample shows does not
compress (a checkpoint, an image, an archive) goes as an ``r`` frame: deflating it would cost the sender's
CPU for nothing, while headers and text go deflated. Not tar: tar has no way to say "these are
unchanged", and its headers cost more than the small files they describe.

Links are never sent: an experiment folder's links point into the code snapshot (the project's files, not
results), and whatever else a link points to lives elsewhere.

This module is standard library only: a backend runs it where the files are, as ``python -c LAUNCHER``
with the compressed source, the request and ``have`` on stdin (``source``, ``request_bytes``, ``have_bytes``).
"""

from __future__ import annotations

import json
import os
import stat
import struct
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

MYPY = False  # mypy's own name for TYPE_CHECKING, which mrunner.metrics (one module with this one) defines
if MYPY:  # the annotations only: the sender, started on every pull and `results`, skips importing typing
    from typing import IO, Any

PART = ".mrunner-part"
CHUNK = 1 << 20
END = b"end\n"
FRAME = struct.Struct(">cI")  # a frame's kind and length
Z, R = b"z", b"r"  # a piece of the deflate stream; bytes as they are
SAMPLED = 1 << 16  # a file's read of at least this many bytes is sampled: sent undeflated if it does not compress
SAMPLE = 1 << 13
#: The sender frames and writes out what it has once it holds this much: the receiver writes (and a
#: ``results`` parses) the first files while the sender still reads the last ones. A thousand small metrics
#: files deflate to less than a ``CHUNK``, which would otherwise all arrive at the stream's end.
SEND = 1 << 15
#: Runs this module from stdin: the length of the compressed source, the source, then the request and ``have``.
LAUNCHER = (
    "import sys,zlib;b=sys.stdin.buffer;n=int(b.readline());"
    "exec(compile(zlib.decompress(b.read(n)),'mrunner-transfer','exec'))"
)


def included(relative: str, include: Sequence[str]) -> bool:
    import fnmatch  # here: the sender starts on every pull, and most pulls give no pattern

    return not include or any(fnmatch.fnmatchcase(relative, pattern) for pattern in include)


def _files(
    root: str, include: Sequence[str], parts: list[str] | None = None
) -> Iterator[tuple[str, str, os.stat_result]]:
    """(relative path, path, stat) of every regular file below ``root``, links left out; with ``parts``, the
    ``.mrunner-part`` files found are added to it (else skipped)."""
    stack = [("", root)]
    while stack:
        relative, folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        prefix = f"{relative}/" if relative else ""
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append((prefix + entry.name, entry.path))
            elif not entry.is_file(follow_symlinks=False):
                continue  # a link or something that is not a file
            elif entry.name.endswith(PART):
                if parts is not None:
                    parts.append(entry.path)
            elif not include or included(prefix + entry.name, include):
                yield prefix + entry.name, entry.path, entry.stat(follow_symlinks=False)


class Local:
    """What this machine has of some experiment folders: ``have`` (FOLDER -> RELATIVE -> [size, mtime_ns]),
    and the ``parts`` an interrupted pull left aside."""

    def __init__(self, destination: str, folders: Iterable[str]) -> None:
        self.have: dict[str, dict[str, list[int]]] = {}
        self.parts: list[str] = []
        try:  # one listing, not a failed look into each folder this machine has none of (a first pull)
            present = set(os.listdir(destination))
        except (FileNotFoundError, NotADirectoryError):
            present = set()
        for folder in folders:
            if folder.split("/", 1)[0] not in present:
                continue
            files = {
                relative: [info.st_size, info.st_mtime_ns]
                for relative, _, info in _files(os.path.join(destination, folder), (), self.parts)
            }
            if files:
                self.have[folder] = files

    def remove_parts(self) -> None:
        """Once a pull is complete: the parts found before it that it did not complete itself (their file is
        gone on the other side, or was left out by ``include``)."""
        for part in self.parts:
            try:
                os.unlink(part)
            except FileNotFoundError:  # completed and renamed by this pull
                pass


# -- the sending side ----------------------------------------------------------------------------------------


def walk(request: Mapping[str, Any]) -> list[tuple[str, str, str, os.stat_result]]:
    """(FOLDER, RELATIVE, path here, stat) of every file the request names. ``request``: ``folders``
    (FOLDER -> the experiment folder here), ``include`` (globs)."""
    include = request.get("include") or ()
    found: list[tuple[str, str, str, os.stat_result]] = []
    if include and not any(c in pattern for pattern in include for c in "*?[/"):
        # only files named at the folder's top (`results` asks for the metrics file): one lstat each, no walk
        # of folders that may hold thousands of other files
        for folder, root in request["folders"].items():
            for name in dict.fromkeys(include):
                path = os.path.join(os.path.expanduser(root), name)
                try:
                    info = os.lstat(path)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if stat.S_ISREG(info.st_mode) and not name.endswith(PART):
                    found.append((folder, name, path, info))
        return found
    for folder, root in request["folders"].items():
        found += ((folder, relative, path, info) for relative, path, info in _files(os.path.expanduser(root), include))
    return found


def send(
    found: Iterable[tuple[str, str, str, os.stat_result]],
    have: Mapping[str, Mapping[str, list[int]]],
    out: IO[bytes],
    summarise: Callable[[bytes], bytes] | None = None,
) -> None:
    """Stream the files of ``found`` (see ``walk``) that the receiver lacks: ``have`` is its ``Local.have``;
    with ``summarise``, what it makes of each file's content instead of the file."""
    chosen, unchanged, total = [], 0, 0
    nothing: dict[str, list[int]] = {}
    for folder, relative, path, info in found:
        if have.get(folder, nothing).get(relative) == [info.st_size, info.st_mtime_ns]:
            unchanged += 1
            continue
        chosen.append((f"{folder}/{relative}", path, info))
        total += info.st_size
    frames = _Frames(out)
    frames.write(json.dumps({"files": len(chosen), "bytes": total, "unchanged": unchanged}).encode() + b"\n")
    if summarise is not None:
        for entries in _summaries(chosen, summarise):
            frames.write(entries)
        chosen = []
    for name, path, info in chosen:
        encoded = name.encode("utf-8", "surrogateescape")
        try:
            stream = open(path, "rb")
        except OSError:  # removed since the walk (a running experiment): sent empty, fetched again next time
            frames.write(b"%d 0 %o 0\n%s" % (len(encoded), info.st_mode & 0o777, encoded))
            continue
        with stream:
            left, mtime = info.st_size, info.st_mtime_ns
            frames.write(b"%d %d %o %d\n%s" % (len(encoded), left, info.st_mode & 0o777, mtime, encoded))
            while left:
                data = stream.read(min(left, CHUNK))
                if not data:  # shrank while read: padded, and a zero time makes the next pull fetch it again
                    data = bytes(min(left, CHUNK))
                left -= len(data)
                if len(data) >= SAMPLED and _incompressible(data):
                    frames.raw(data)
                else:
                    frames.write(data)
    frames.write(END)
    frames.close()


#: A sender of summaries parses in up to this many processes (the cluster's cores), each given at least
#: ``SHARE`` files: parsing a thousand metrics files is most of what it does.
WORKERS = 4
SHARE = 100


def _summaries(
    chosen: Sequence[tuple[str, str, os.stat_result]], summarise: Callable[[bytes], bytes]
) -> Iterator[bytes]:
    """The stream's entries of the summaries of ``chosen`` files, in their order: the first share made here
    while forked processes make the others, each handing its entries back whole through a pipe (one that
    fails is made here instead)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    count = max(1, min(WORKERS, cores, len(chosen) // SHARE))
    size = -(-len(chosen) // count) or 1
    shares = [chosen[k : k + size] for k in range(0, len(chosen), size)]
    forked: list[tuple[int, int] | None] = []
    for share in shares[1:]:
        try:
            reading, writing = os.pipe()
            pid = os.fork()
        except OSError:
            forked.append(None)
            continue
        if pid == 0:  # a worker: its entries to the pipe, then gone without the sender's exit handling
            code = 1
            try:
                os.close(reading)
                view = memoryview(b"".join(_summary_entry(*one, summarise) for one in share))
                while view:
                    view = view[os.write(writing, view) :]
                code = 0
            finally:
                os._exit(code)
        os.close(writing)
        forked.append((pid, reading))
    if shares:
        yield b"".join(_summary_entry(*one, summarise) for one in shares[0])
    for share, worker in zip(shares[1:], forked):
        data = b""
        if worker is not None:
            pid, reading = worker
            pieces = []
            while piece := os.read(reading, 1 << 16):
                pieces.append(piece)
            os.close(reading)
            if os.waitpid(pid, 0)[1] == 0:
                data = b"".join(pieces)
        yield data or b"".join(_summary_entry(*one, summarise) for one in share)


def _summary_entry(name: str, path: str, info: os.stat_result, summarise: Callable[[bytes], bytes]) -> bytes:
    """A file's summary in its place: of the bytes its size says (a file that grows while it is read is
    summarised as it was listed, the size the receiver then has); one removed or shrunk since the walk is sent
    with a zero time, so that the next pull asks for it again."""
    encoded = name.encode("utf-8", "surrogateescape")
    size, mtime = info.st_size, info.st_mtime_ns
    try:
        with open(path, "rb") as stream:
            data = stream.read(size)
    except OSError:
        data = b""
    if len(data) != size:
        size, mtime = len(data), 0
    summary = summarise(data)
    return b"%d %d %o %d %d\n%s%s" % (len(encoded), size, info.st_mode & 0o777, mtime, len(summary), encoded, summary)


def _incompressible(data: bytes) -> bool:
    """Whether deflate would save less than a tenth of ``data``, judged from a sample at its start."""
    sample = data[:SAMPLE]
    return len(zlib.compress(sample, 1)) > 0.9 * len(sample)


class _Frames:
    """The sending side's frames (see the module's docstring), written to ``out`` as they fill (``SEND``)."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.deflate = zlib.compressobj(1, zlib.DEFLATED, -15)
        self.deflated = bytearray()  # the deflate stream's output not yet framed
        self.fed = False  # whether the deflate stream took bytes since its last flush
        self.pending: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> None:
        self.fed = True
        self.deflated += self.deflate.compress(data)
        if len(self.deflated) >= SEND:
            self._frame(Z, self.deflated)

    def raw(self, data: bytes) -> None:
        """Send ``data`` undeflated, after everything deflated so far (a sync flush ends its deflate block)."""
        if self.fed:
            self.deflated += self.deflate.flush(zlib.Z_SYNC_FLUSH)
            self.fed = False
            self._frame(Z, self.deflated)
        self._frame(R, data)

    def close(self) -> None:
        self.deflated += self.deflate.flush()
        self._frame(Z, self.deflated)
        self._send()
        self.out.flush()

    def _frame(self, kind: bytes, data: bytes | bytearray) -> None:
        if not data:
            return
        self.pending += (FRAME.pack(kind, len(data)), bytes(data))
        self.size += len(data)
        if isinstance(data, bytearray):
            data.clear()
        if self.size >= SEND:
            self._send()

    def _send(self) -> None:
        for part in self.pending:  # a megabyte of raw bytes is written as it is, not copied into a join
            self.out.write(part)
        self.out.flush()  # on its way now, not when the output's buffer fills
        self.pending.clear()
        self.size = 0


def source() -> bytes:
    """What ``LAUNCHER`` reads on stdin ahead of the request: this module, compressed."""
    with open(__file__, "rb") as stream:
        blob = zlib.compress(stream.read(), 9)
    return str(len(blob)).encode() + b"\n" + blob


def request_bytes(
    folders: Mapping[str, str], include: Sequence[str], summarise: bool = False, settle: Sequence[str] = ()
) -> bytes:
    """What ``main`` reads after the source: the folders to walk (FOLDER -> the experiment folder where the
    files are), the ``include`` globs, whether to send summaries (``mrunner.summaries``) and the experiment
    folders to settle before the walk (``settle``: a sender with ``mrunner.settling`` ahead of this module,
    ``settling.sender_source``), as compressed JSON. Sent before the receiver lists its own files, so that
    both sides walk at once."""
    document = {"folders": dict(folders), "include": list(include), "summarise": summarise}
    if settle:
        document["settle"] = list(settle)
    return _document(document)


def have_bytes(have: Mapping[str, Mapping[str, list[int]]]) -> bytes:
    """What ``main`` reads after the request: the receiver's ``Local.have`` (a long one shrinks ~10x)."""
    return _document(have)


def _document(document: Any) -> bytes:
    blob = zlib.compress(json.dumps(document).encode(), 1)
    return str(len(blob)).encode() + b"\n" + blob


def _read(stream: IO[bytes]) -> Any:
    length = int(stream.readline())
    return json.loads(zlib.decompress(stream.read(length)))


def main() -> None:
    stdin = sys.stdin.buffer
    request = _read(stdin)
    if request.get("settle"):  # mrunner.settling's, ahead of this module in a pull's sender that settles
        globals()["settle_folders"](request["settle"])
    found = walk(request)
    # the summariser: mrunner.metrics', ahead of this module in the sender of summaries (mrunner.summaries)
    summarise = globals()["summarised"] if request.get("summarise") else None
    send(found, _read(stdin), sys.stdout.buffer, summarise)


# -- the receiving side --------------------------------------------------------------------------------------


class Receiver:
    """Writes a stream from ``send`` below ``destination``, each file aside then renamed into place.

    ``on_plan(files, bytes)`` is called once the header says what follows, ``on_file()`` after each file."""

    def __init__(
        self,
        destination: str,
        on_plan: Callable[[int, int], None] = lambda files, size: None,
        on_file: Callable[[], None] = lambda: None,
    ) -> None:
        self.destination = destination
        self.on_plan, self.on_file = on_plan, on_file
        self.files = self.bytes = self.unchanged = 0
        self.ended = False
        self._inflate = zlib.decompressobj(-15)
        self._buffer = bytearray()  # the logical stream, not yet parsed
        self._head = bytearray()  # a frame's header, while it arrives
        self._kind, self._frame_left = Z, 0
        self.plan: dict[str, int] | None = None  # the stream's header, once read
        self._current: tuple[IO[bytes], str, str, int, int] | None = None  # stream, part, final, mode, mtime
        self._left = 0
        self._folders: set[str] = set()
        #: what a stream of summaries brought: FOLDER/RELATIVE -> (size, mtime_ns, summary)
        self.summaries: dict[str, tuple[int, int, bytes]] = {}

    def feed(self, chunk: bytes) -> None:
        view, position = memoryview(chunk), 0
        while position < len(view):
            if not self._frame_left:
                taken = view[position : position + FRAME.size - len(self._head)]
                self._head += taken
                position += len(taken)
                if len(self._head) < FRAME.size:
                    break
                self._kind, self._frame_left = FRAME.unpack(self._head)
                self._head.clear()
                if self._kind not in (Z, R):
                    raise ValueError(f"not a stream of files (a frame of kind {self._kind!r})")
                continue
            piece = view[position : position + self._frame_left]
            position += len(piece)
            self._frame_left -= len(piece)
            if self._kind == Z:
                self._buffer += self._inflate.decompress(piece)
                continue
            if self._current is not None and not self._buffer:  # a file's raw bytes: straight to the file
                direct = piece[: self._left]
                self._current[0].write(direct)
                self._left -= len(direct)
                piece = piece[len(direct) :]
                if not self._left:
                    self._finish()
            self._buffer += piece
        self._parse()

    def close(self) -> None:
        """Check that the stream was whole; a cut-off one leaves its current file aside, never in place."""
        self._buffer += self._inflate.flush()
        self._parse()
        if not self.ended or self._frame_left or self._head:
            self._abandon()
            raise EOFError("the stream of files ended early")

    def _parse(self) -> None:
        buffer = self._buffer
        position = 0
        while not self.ended:
            if self._current is not None:
                take = min(self._left, len(buffer) - position)
                if take:
                    self._current[0].write(buffer[position : position + take])
                    position += take
                    self._left -= take
                if self._left:
                    break
                self._finish()
                continue
            newline = buffer.find(b"\n", position)
            if newline < 0:
                break
            line = bytes(buffer[position:newline])
            if self.plan is None:
                self.plan = json.loads(line)
                self.unchanged = self.plan["unchanged"]
                self.on_plan(self.plan["files"], self.plan["bytes"])
                position = newline + 1
                continue
            if line == END.strip():
                self.ended = True
                position = newline + 1
                break
            length, size, mode, mtime, *summarised = (
                int(field, 8 if k == 2 else 10) for k, field in enumerate(line.split())
            )
            ahead = length + sum(summarised)
            if len(buffer) < newline + 1 + ahead:
                break
            name = bytes(buffer[newline + 1 : newline + 1 + length]).decode("utf-8", "surrogateescape")
            position = newline + 1 + ahead
            if summarised:
                self.summaries[name] = (size, mtime, bytes(buffer[newline + 1 + length : position]))
                self.files += 1
                self.bytes += size
                self.on_file()
                continue
            self._start(name, size, mode, mtime)
        del buffer[:position]

    def _start(self, name: str, size: int, mode: int, mtime: int) -> None:
        parts = name.split("/")
        if any(part in ("", ".", "..") for part in parts) or len(parts) < 2:
            raise ValueError(f"refusing the unsafe path {name!r} in the stream")
        final = os.path.join(self.destination, *parts)
        folder = os.path.dirname(final)
        if folder not in self._folders:
            try:  # the usual case, a folder below one there: one call, not a look at each parent first
                os.mkdir(folder)
            except FileExistsError:
                pass
            except FileNotFoundError:
                os.makedirs(folder, exist_ok=True)
            self._folders.add(folder)
        part = os.path.join(folder, f".{parts[-1]}{PART}")
        self._current = (open(part, "wb"), part, final, mode, mtime)
        self._left = size
        self.bytes += size

    def _finish(self) -> None:
        assert self._current is not None
        stream, part, final, mode, mtime = self._current
        stream.close()
        os.chmod(part, mode | 0o600)
        os.utime(part, ns=(mtime, mtime))
        os.replace(part, final)
        self._current = None
        self.files += 1
        self.on_file()

    def _abandon(self) -> None:
        if self._current is not None:
            self._current[0].close()
            self._current = None


def receive(chunks: Iterable[bytes], destination: str, progress: Callable[[int, str], Any], label: str) -> Receiver:
    """Write the stream ``chunks`` below ``destination``; an interruption leaves only whole files in place.
    ``progress(total, label)`` is a context manager giving an object with ``advance()`` (``Reporter.progress``),
    entered once the stream says how many files follow."""
    receiver = Receiver(destination)
    stream = iter(chunks)
    try:
        for chunk in stream:
            receiver.feed(chunk)
            if receiver.plan is not None:
                break
        total = receiver.plan["files"] if receiver.plan else 0
        with progress(total, label) as bar:
            receiver.on_file = bar.advance
            for chunk in stream:
                receiver.feed(chunk)
            receiver.close()
    except BaseException:
        receiver._abandon()
        raise
    return receiver


def copy_folders(
    folders: Mapping[str, str], destination: str, include: Sequence[str], on_file: Callable[[], None] = lambda: None
) -> tuple[int, int, int]:
    """For a backend whose files are on this machine: the same quick check, then a hard link into place (a copy
    across file systems, or where links are refused). Returns (files, bytes, unchanged)."""
    files = size = unchanged = 0
    for folder, root in folders.items():
        for relative, source_path, info in _files(root, include):
            final = os.path.join(destination, folder, relative)
            try:
                here = os.stat(final)
                if (here.st_size, here.st_mtime_ns) == (info.st_size, info.st_mtime_ns):
                    unchanged += 1
                    continue
            except FileNotFoundError:
                pass
            os.makedirs(os.path.dirname(final), exist_ok=True)
            part = os.path.join(os.path.dirname(final), f".{os.path.basename(final)}{PART}")
            try:
                os.unlink(part)
            except FileNotFoundError:
                pass
            try:
                os.link(source_path, part)
            except OSError:
                import shutil  # here: the sender runs this module and never copies

                shutil.copy2(source_path, part)
            os.replace(part, final)
            files += 1
            size += info.st_size
            on_file()
    return files, size, unchanged


if __name__ == "__main__" and sys.argv[:1] == ["-c"]:  # run by LAUNCHER, not imported
    main()
    sys.stdout.flush()
    os._exit(0)
