"""The cluster side of mrunner's Slurm backend: run by the login node's python3 (standard library only).

mrunner never installs anything on the cluster to drive it: every call sends this file (compressed) ahead
of its own input on the exec channel's stdin, so the helper is always the version of the plugin that
calls it; the cluster keeps it compiled by its digest (``mrunner_slurm.shipped``). Each command is one round trip: ``begin`` (whether the code is there, which earlier trees could be a delta's base, the cluster's limits,
and, given the manifest's hashes, which objects the store lacks), ``missing`` (the same, on its own),
``receive`` (a gzip stream of the file list and the objects: the code folder assembled, the objects stored content-addressed),
``prepare`` (files, e.g. the secrets file, written atomically with their modes), ``venv``, ``submit``
(sbatch each array once, reconciled by job name), ``settle`` (stop an interrupted submission and say what it
submitted), ``status``, ``cancel`` (scancel, then the ends).

Nothing here imports mrunner (standard library only, run with ``python3 -S``).
"""

import errno
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import zlib

TEMPORARY = re.compile(r"temporar|try again|Resource temporarily unavailable|Socket timed out", re.I)
SUBMIT_RETRY_DELAYS = (1, 2, 4, 8, 15)  # seconds between sbatch tries while the queue is full
WRITERS = 4  # threads creating the files of an upload (see _in_parallel), in batches of
BATCH_FILES, BATCH_BYTES = 500, 4 * 2**20  # (what a cut-off upload loses at most)


def _store(storage):
    return os.path.join(storage, ".mrunner")


def _write_atomic(path, data, mode=0o644, made=False):
    """Write to a temporary name in the same folder, then rename: readers never see half a file."""
    folder = os.path.dirname(path)
    if not made:
        os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, ".tmp-%d-%s" % (os.getpid(), os.path.basename(path)))
    _write_file(temporary, data, mode, os.O_TRUNC)
    os.replace(temporary, path)


def _write_file(path, data, mode, flag):
    """Create ``path`` with exactly ``mode`` (whatever the umask) and write all of ``data``;
    ``flag`` is ``os.O_TRUNC`` (replace what is there) or ``os.O_EXCL`` (the file must be new)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | flag, mode)
    try:
        os.fchmod(descriptor, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
    finally:
        os.close(descriptor)


def _slurm_config():
    result = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True)
    config = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            config[key.strip()] = value.strip()
    wanted = ("MaxArraySize", "MaxJobCount", "MinJobAge", "JobCompType", "JobCompLoc", "AccountingStorageType")
    return {key: config.get(key) for key in wanted}


def begin(storage, digest, document):
    """Whether the code folder exists, which candidate trees the store holds (bases for a delta), the limits;
    given the manifest's ``hashes`` (sent when no delta is possible), also which objects are missing; given
    ``guard``, what an experiment changed in the code's watched copy (``_guard``); given ``read``, a file of
    the existing code folder, base64-encoded (None when it has no such file): `resume` reads the
    requirements uploaded with the code there once this machine's copy was edited."""
    storage = os.path.abspath(os.path.expanduser(storage))
    os.makedirs(os.path.join(_store(storage), "objects"), exist_ok=True)
    os.makedirs(os.path.join(_store(storage), "trees"), exist_ok=True)
    have_code = os.path.isdir(os.path.join(_store(storage), "code", digest))
    trees = os.path.join(_store(storage), "trees")
    known = [d for d in document["candidates"] if _touch(os.path.join(trees, d + ".json"))]
    if have_code:
        _touch(os.path.join(trees, digest + ".json"))
    answer = {"storage": storage, "have_code": have_code, "known": known, "config": _slurm_config()}
    if "hashes" in document and not have_code:
        answer.update(missing(storage, document["hashes"]))
    if have_code and "guard" in document:
        answer["guard"] = _guard(storage, digest, document["guard"])
    if have_code and document.get("read"):
        answer["read"] = _read_code_file(os.path.join(_store(storage), "code", digest), document["read"])
    return answer


def _read_code_file(code, relative):
    """A file of the code folder ``code``, base64-encoded; None when it has none (or it lies outside)."""
    import base64

    path = os.path.normpath(os.path.join(code, relative))
    if not path.startswith(code + os.sep):
        return None
    try:
        with open(path, "rb") as stream:
            return base64.b64encode(stream.read()).decode("ascii")
    except OSError:
        return None


def _guard(storage, digest, guard):
    """Before a later sweep reuses the code: restore the watched copy of the code folder that jobs which could
    not mount a view of it linked to, if an experiment changed it, and say which sweep used it last (None when
    nothing changed). The check is ``mrunner.treeguard.check``, whose source the plugin sends along, since
    this helper imports nothing of mrunner."""
    store = _store(storage)
    if not os.path.isfile(os.path.join(store, "guards", digest, "stat.json")):
        return None  # no job of this code ran without a view
    import pathlib

    module = {"__name__": "mrunner_treeguard"}
    exec(compile(guard["source"], "mrunner/treeguard.py", "exec"), module)
    try:
        return module["check"](pathlib.Path(store, "watched", digest), guard["sweep"], "sweep %s" % guard["sweep"])
    except OSError as error:
        return "cannot check the watched copy of code snapshot %s: %s" % (digest[:12], error)


def missing(storage, hashes):
    """Which of these objects the store lacks."""
    objects = os.path.join(_store(storage), "objects")
    return {"missing": [h for h in hashes if not _touch(os.path.join(objects, h))]}


def _touch(path):
    """Mark ``path`` as just used (a collection keeps what was used within its grace); whether it exists."""
    try:
        os.utime(path)
        return True
    except FileNotFoundError:
        return False
    except OSError:  # another user's file in a shared store: it exists
        return os.path.exists(path)


def _digest(manifest):
    """The snapshot digest, computed exactly as mrunner's core does, to check a manifest rebuilt from a delta."""
    digest = hashlib.sha256()
    for relative, (sha, mode) in sorted(manifest.items()):
        digest.update(("%s\0%o\0%s\n" % (relative, mode, sha)).encode())
    return digest.hexdigest()


def _frames(stream):
    """The ``(name, data)`` frames of the gzip stream ``deploy.stream`` sends: ``NAME SIZE\n`` then SIZE bytes.
    A stream that ends before its gzip trailer, or inside a frame, raises EOFError."""
    inflate = zlib.decompressobj(31)
    buffer, position = bytearray(), 0

    def more():  # drop what was read, then append the next inflated chunk; positions restart at 0
        nonlocal position
        chunk = stream.read(65536)
        if not chunk:
            raise EOFError("the stream ended early" if not inflate.eof else "the stream ended inside a frame")
        del buffer[:position]
        position = 0
        buffer.extend(inflate.decompress(chunk))

    while True:
        newline = buffer.find(b"\n", position)
        while newline < 0:
            if inflate.eof and position == len(buffer):
                return
            more()
            newline = buffer.find(b"\n", position)
        name, size = bytes(buffer[position:newline]).decode().split(" ")
        start, length = newline + 1 - position, int(size)  # relative to position, which `more` moves
        while len(buffer) < position + start + length:
            more()
        yield name, bytes(buffer[position + start : position + start + length])
        position += start + length


def receive(storage, digest, stream):
    """Assemble the code folder from a stream of the tree, then the objects the store lacks.

    The tree (``manifest.json``: all files; ``delta.json``: the changes against a tree the store has) comes
    first and must hash to ``digest``. The folder is built aside: each object, once its hash checked out,
    is written straight to its first place there and then hard-linked into the store, so the file is
    written once, and an upload cut off halfway leaves only the folder aside, never an object a later
    sweep would trust (a link appears whole). The rest of the folder is linked from the store, and the
    folder renamed into place.
    """
    frames = _frames(stream)
    first = next(frames, None)
    if first is None or first[0] not in ("manifest.json", "delta.json"):
        raise SystemExit("mrunner: the upload did not start with its file list; retry the submission")
    manifest = _tree(storage, *first)
    if _digest(manifest) != digest:
        raise SystemExit(
            "mrunner: the rebuilt file list does not match snapshot %s; retry the submission" % digest[:12]
        )
    code = os.path.join(_store(storage), "code")
    target = os.path.join(code, digest)
    building = os.path.join(code, ".tmp-%s-%d" % (digest[:12], os.getpid()))
    os.makedirs(building)
    try:
        _build(storage, building, manifest, frames)
    except BaseException:
        subprocess.run(["rm", "-rf", building])  # what arrived whole is in the store already
        raise
    try:
        os.rename(building, target)
    except OSError:
        if not os.path.isdir(target):
            raise
        subprocess.run(["rm", "-rf", building])  # another upload of the same snapshot finished first
    else:
        _protect(target, manifest)
    _write_atomic(os.path.join(_store(storage), "trees", digest + ".json"), json.dumps(manifest).encode())
    return {"code_dir": target}


def _protect(code, manifest):
    """Make the code folder read-only: its files are hard links into the store that every sweep of the same
    content shares, and experiments reach them through links in their own folders, so a write through a
    link must fail instead of changing the store (the objects are 0444 already; executables are copies)."""
    for relative, (_, mode) in manifest.items():
        if mode & 0o111:
            os.chmod(os.path.join(code, relative), mode & 0o555)
    for folder, _, _ in os.walk(code, topdown=False):
        os.chmod(folder, 0o555)


def _build(storage, building, manifest, frames):
    """Fill ``building``: the streamed objects written there and linked into the store, then the rest
    linked from the store (once every streamed object is in it)."""
    folders = _Folders(building)
    objects = os.path.join(_store(storage), "objects")
    first_place = {}  # sha256 -> where it goes first (executables get copies, so never theirs)
    for relative, (sha, mode) in manifest.items():
        if not mode & 0o111:
            first_place.setdefault(sha, relative)
    placed = set()
    batch, size = [], 0
    for name, data in frames:
        name = os.path.basename(name)
        if hashlib.sha256(data).hexdigest() != name:
            raise SystemExit("mrunner: object %s arrived corrupted; retry the submission" % name)
        relative = first_place.get(name)
        if relative is None:
            batch.append((_write_atomic, (os.path.join(objects, name), data, 0o444, True)))
        else:
            batch.append(
                (_place_object, (folders, os.path.join(building, relative), os.path.join(objects, name), data))
            )
            placed.add(relative)
        size += len(data)
        if len(batch) >= BATCH_FILES or size >= BATCH_BYTES:
            _in_parallel(batch)
            batch, size = [], 0
    _in_parallel(batch)
    _in_parallel(
        [
            (_link_from_store, (folders, os.path.join(objects, sha), building, relative, mode))
            for relative, (sha, mode) in manifest.items()
            if relative not in placed
        ]
    )


def _in_parallel(tasks):
    """Run ``(function, args)`` tasks on a few threads; raise the first failure.

    Creating files is most of what a dispatch costs on the cluster, and a file system serves several
    creations at once: where each is slow (0.5 ms on the test machine's ext4 after mass deletions; a
    parallel file system's metadata round trip) threads halve the time, on a quiet local disk they save
    ~15 %. The tasks run while this thread waits, never alongside its parsing, since threads that make
    system calls wait for the one that holds the interpreter lock.
    """
    if len(tasks) < 2 * WRITERS:
        for function, args in tasks:
            function(*args)
        return
    errors = []

    def work(part):
        try:
            for function, args in part:
                function(*args)
        except BaseException as error:  # raised again below, in the calling thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(tasks[k::WRITERS],)) for k in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _place_object(folders, destination, stored, data):
    folders.make(destination)
    _write_file(destination, data, 0o444, os.O_EXCL)
    try:
        os.link(destination, stored)
    except FileExistsError:
        pass  # a concurrent upload stored the same content first
    except OSError:  # no hard links on this file system
        _write_atomic(stored, data, 0o444, made=True)


def _link_from_store(folders, source, building, relative, mode):
    """Link (or, for an executable, copy) a file of the code folder from the store."""
    destination = os.path.join(building, relative)
    folders.make(destination)
    try:
        if not mode & 0o111:
            try:
                os.link(source, destination)
                return
            except FileNotFoundError:
                raise
            except OSError:
                pass  # no hard links here, or too many to one file (EMLINK): copy
        with open(source, "rb") as stream:
            _write_file(destination, stream.read(), mode, os.O_EXCL)
    except FileNotFoundError:
        raise SystemExit(
            "mrunner: object %s of %s is missing from the store; retry the submission"
            % (os.path.basename(source), relative)
        ) from None


def _tree(storage, name, data):
    if name == "manifest.json":
        return json.loads(data)
    delta = json.loads(data)
    with open(os.path.join(_store(storage), "trees", delta["base"] + ".json")) as base:
        manifest = json.load(base)
    for path in delta["removed"]:
        manifest.pop(path, None)
    manifest.update(delta["set"])
    return manifest


class _Folders:
    """Makes each folder of the code being built once."""

    def __init__(self, root):
        self.made = {root}

    def make(self, path):
        folder = os.path.dirname(path)
        if folder not in self.made:
            os.makedirs(folder, exist_ok=True)
            self.made.add(folder)


def prepare(document):
    """Write files (path -> [text, mode]) atomically; a secrets file gets mode 0600 before any byte."""
    for path, (text, mode) in document["files"].items():
        _write_atomic(path, text.encode("utf-8"), mode)
    for folder in document.get("dirs", []):
        os.makedirs(folder, exist_ok=True)
    return {"written": len(document["files"])}


def venv(path, python, requirements):
    """Build a virtualenv at ``path`` from ``requirements`` once; later sweeps reuse it.

    A lock serialises concurrent builders; the ``.mrunner-ready`` marker is written last, so a build that
    was interrupted is removed and redone instead of trusted.
    """
    import fcntl

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = os.path.join(path, ".mrunner-ready")
        if _touch(ready):  # when it was last used is what `gc` goes by
            return {"venv": path, "built": False}
        subprocess.run(["rm", "-rf", path])
        steps = [[python, "-m", "venv", path]]
        if requirements.strip():
            _write_atomic(path + ".requirements.txt", requirements.encode(), 0o600)  # an index URL may hold a token
            steps.append(
                [
                    os.path.join(path, "bin", "python"),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    "-r",
                    path + ".requirements.txt",
                ]
            )
        for step in steps:
            result = subprocess.run(step, capture_output=True, text=True)
            if result.returncode:
                subprocess.run(["rm", "-rf", path])
                output = "\n".join((result.stderr + "\n" + result.stdout).strip().splitlines()[-40:])
                full = _no_space(os.path.dirname(path), output)
                # the caller keeps the first line and cuts the tool's output below it (mrunner.errors.cut_output)
                raise SystemExit(
                    "mrunner: building the virtualenv failed at `%s`%s:\n%s"
                    % (" ".join(step[-3:]), " (%s)" % full if full else "", output)
                )
        _write_atomic(ready, b"")
    return {"venv": path, "built": True}


def _full(status_prefix):
    """For a failed experiment: `no space left` when the sweep's file system is full, the likely cause of a
    failure with an empty log (Python's exit 120: it could not even flush its output); else None."""
    return _no_space(os.path.dirname(os.path.dirname(status_prefix)), "", 2**20) or None


def _no_space(folder, output, least=64 * 2**20):
    """``no space left, ENOSPC: N KiB free at FOLDER`` when a failure ran out of disk: ensurepip dies with only
    ``exit status 1`` when it does, so the free space is measured (after what failed was removed) besides
    reading the output; "" otherwise."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    if free < least or "No space left" in output or "Errno 28" in output or "Disk quota" in output:
        return "no space left, ENOSPC: %d KiB free at %s" % (free // 1024, folder)
    return ""


def submit(document):
    """Write the sweep's files, then submit each array unless a job of that name exists already.

    The name carries the sweep id, the attempt and the indices, and a marker file records the job id the
    moment sbatch returns it, so a repeated submission of the same attempt (after an interruption, or a
    controller that handed the same id out again) finds its job instead of creating a second one.
    Prints one JSON line per array as soon as it is accepted.

    Each array's look, sbatch and marker happen under the sweep's submission lock (``_submission_lock``),
    and not once ``settle`` stopped this submission (its ``token``): so ``settle``, which takes the same
    lock, sees every array this submission will ever have submitted.
    """
    prepare(document)
    units = document["units"]
    folder = os.path.dirname(units[0]["marker"]) if units else ""
    stop = os.path.join(folder, ".stop-" + document["token"]) if document.get("token") else None
    names = ",".join(unit["name"] for unit in units)
    queued = {}
    listing = subprocess.run(
        ["squeue", "-h", "--states=all", "--name=" + names, "-o", "%j|%F|%r"], capture_output=True, text=True
    )
    for line in listing.stdout.splitlines():
        name, job, reason = (line.split("|") + ["", ""])[:3]
        if reason != "BadConstraints":  # a refused sbatch leaves such a record: it never was a submission
            queued[name] = job
    for unit in units:
        marker = unit["marker"]
        lock = _submission_lock(folder)
        try:
            if stop is not None and os.path.exists(stop):
                return None  # the mrunner that submits was interrupted and settled: it records what was accepted
            job = _marked(marker) or queued.get(unit["name"])
            reused = job is not None
            if job is None:
                job = _sbatch(unit["argv"])
                if job is None:
                    return None
                _write_atomic(marker, job.encode())
        finally:
            os.close(lock)
        print(json.dumps({"name": unit["name"], "job": job, "reused": reused}), flush=True)
    return None


def probe(document):
    """What sbatch says when it would refuse one of the sweep's resource classes (a partition, account or QOS
    the user may not use, a size or gres no node has): ``sbatch --test-only`` of each class's first array
    (``argvs``), all at once. Asked by ``Backend.admit`` before anything is recorded or submitted, so a sweep
    of several classes is refused whole instead of after its first arrays were accepted. ``{"refused":
    [index, message]}`` naming the first class refused, ``{"refused": None}`` when each would be accepted
    (or the answer was a passing failure, which the real sbatch retries). At most ``_PROBES_AT_ONCE`` at a
    time: a sweep of many classes does not flood the controller."""
    argvs = document["argvs"]
    for start in range(0, len(argvs), _PROBES_AT_ONCE):
        started = [
            subprocess.Popen(
                [argv[0], "--test-only", *argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for argv in argvs[start : start + _PROBES_AT_ONCE]
        ]
        refused = None
        for index, process in enumerate(started, start):
            _, stderr = process.communicate()
            message = " / ".join(stderr.strip().splitlines()[-3:]) or "exit status %d" % process.returncode
            if refused is None and process.returncode != 0 and not TEMPORARY.search(message):
                if not (_NODES_UNFIT.search(message) and _nodes_unavailable(argvs[index])):
                    refused = [index, message]
        if refused is not None:
            return {"refused": refused}
    return {"refused": None}


_PROBES_AT_ONCE = 8

#: What ``--test-only`` says of a request no node can take now: no node has it (a real sbatch refuses that
#: too), or the nodes that have it are down or drained (a real sbatch queues the job until they are back).
_NODES_UNFIT = re.compile(r"node configuration is not available|Nodes required for job are DOWN", re.I)


def _nodes_unavailable(argv):
    """Whether a node of the class's partition (the default one when none is asked) is down, drained,
    failing or not responding: then ``--test-only``'s "node configuration is not available" may be their
    state, not the request, and the real sbatch decides."""
    partition = next((a.split("=", 1)[1] for a in argv if a.startswith("--partition=")), None)
    command = ["sinfo", "-h", "-t", "down,drain,drng,fail,maint,no_respond,powered_down,reboot", "-o", "%D"]
    listing = subprocess.run(command + (["-p", partition] if partition else []), capture_output=True, text=True)
    return listing.returncode != 0 or any(n.strip() not in ("", "0") for n in listing.stdout.splitlines())


def _marked(marker):
    """The job id in an array's marker (``submitted/NAME``), or None."""
    try:
        with open(marker) as stream:
            return stream.read().strip() or None
    except OSError:
        return None


def _submission_lock(folder):
    """The sweep's submission lock (an exclusive ``flock`` on ``submitted/.lock``), held until the descriptor
    it returns is closed, or the process ends (a helper killed midway never keeps it)."""
    import fcntl

    os.makedirs(folder, exist_ok=True)
    descriptor = os.open(os.path.join(folder, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    return descriptor


def settle(document):
    """After the mrunner that ran submission ``token`` was interrupted and stopped waiting for it: stop that
    submission (no array of it is submitted from now on: ``submit`` looks for the stop file under the lock)
    once its sbatch in flight, if any, has returned and been marked, and answer which of the arrays
    ``names`` the cluster has, by name: ``{name: job}`` (a marker, or a job Slurm lists under the name)."""
    folder = document["folder"]
    lock = _submission_lock(folder)
    try:
        _write_atomic(os.path.join(folder, ".stop-" + document["token"]), b"", made=True)
        found = {}
        for name in document["names"]:
            job = _marked(os.path.join(folder, name))
            if job is not None:
                found[name] = job
        missing = [name for name in document["names"] if name not in found]
        if missing:  # a helper that died between its sbatch and its marker
            listing = subprocess.run(
                ["squeue", "-h", "--states=all", "--name=" + ",".join(missing), "-o", "%j|%F|%r"],
                capture_output=True,
                text=True,
            )
            for line in listing.stdout.splitlines():
                name, job, reason = (line.split("|") + ["", ""])[:3]
                if name in missing and reason != "BadConstraints":
                    found[name] = job
    finally:
        os.close(lock)
    return found


def _sbatch(argv):
    for delay in (*SUBMIT_RETRY_DELAYS, None):
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode == 0:
            return result.stdout.strip().split(";")[0]
        message = " / ".join(result.stderr.strip().splitlines()[-3:]) or "exit status %d" % result.returncode
        if delay is None or not TEMPORARY.search(message):
            if TEMPORARY.search(message):
                message += (
                    " (still refused after %d tries over %d s: the queue is full, e.g. MaxJobCount reached; "
                    "finished jobs leave it after MinJobAge)" % (len(SUBMIT_RETRY_DELAYS) + 1, sum(SUBMIT_RETRY_DELAYS))
                )
            print(json.dumps({"error": message}), flush=True)
            return None
        time.sleep(delay)
    return None


_STATES = {
    "PENDING": "pending",
    "CONFIGURING": "pending",
    "REQUEUED": "pending",
    "REQUEUE_FED": "pending",
    "REQUEUE_HOLD": "pending",
    "RESV_DEL_HOLD": "pending",
    "SUSPENDED": "pending",
    "STOPPED": "pending",
    "RUNNING": "running",
    "COMPLETING": "running",
    "STAGE_OUT": "running",
    "SIGNALING": "running",
    "RESIZING": "running",
    "COMPLETED": "completed",
    "FAILED": "failed",
    "NODE_FAIL": "failed",
    "BOOT_FAIL": "failed",
    "OUT_OF_MEMORY": "failed",
    "DEADLINE": "timeout",
    "TIMEOUT": "timeout",
    "CANCELLED": "cancelled",
    "REVOKED": "cancelled",
    "PREEMPTED": "preempted",
    "SPECIAL_EXIT": "failed",
}
_ENDED_BY_SLURM = {"cancelled", "timeout", "preempted"}


def _exit_of(raw):
    """A Slurm ``ExitCode=N:S`` or a raw wait status as an exit code: -S when signal S killed it (Slurm saw
    the death by signal), which the records tell from an exit code 128 + S of the experiment's own."""
    if ":" in raw:
        code, _, sig = raw.partition(":")
        return -int(sig) if int(sig or 0) and not int(code or 0) else int(code or 0)
    status = int(raw)
    return -(status & 0x7F) if status & 0x7F else status >> 8


def _exit_code(path):
    """The exit code the attempt wrapper wrote when the experiment ended by itself, else None."""
    try:
        with open(path) as stream:
            text = stream.read().strip()
    except OSError:
        return None
    return int(text) if text.lstrip("-").isdigit() else None


def _listing(jobs, fields):
    """squeue's lines for these jobs' tasks (``-r``: one line per array task)."""
    result = subprocess.run(
        ["squeue", "-h", "--states=all", "-r", "-j", ",".join(jobs), "-O", fields], capture_output=True, text=True
    )
    if result.returncode and "Invalid job id" not in result.stderr:
        raise SystemExit("mrunner: squeue failed: " + " / ".join(result.stderr.strip().splitlines()[-2:]))
    return result.stdout.splitlines()


# The name of an array mrunner submitted (mrunner_slurm.submit.Unit.name): the attempt, and `-pK` when packed.
_ARRAY_NAME = re.compile(r"-a(\d+)-\d+-\d+-\d+((?:-[a-z][a-z0-9]*)*)$")


def _array_name(name):
    """(the attempt the array was submitted at, whether its tasks are packed) from its job name
    (``mrunner-SWEEP-aN-FIRST-LAST-COUNT[-pK]``); (None, False) for a name that is not mrunner's."""
    submitted = _ARRAY_NAME.search(name.strip())
    if submitted is None:
        return None, False
    return int(submitted.group(1)), bool(re.search(r"-p\d+(-|$)", submitted.group(2)))


def _queued(jobs):
    """Each array task of these jobs that Slurm lists: (state, reason, exit code, attempt, packed, name). The
    attempt is the one the task was submitted at (in its job name) plus Slurm's restart count; packed: the
    task runs several points (``-pK`` in its name)."""
    found = {}
    for line in _listing(jobs, "JobArrayID:|,State:|,Reason:|,exit_code:|,RestartCnt:|,Name:|"):
        parts = line.split("|")
        if len(parts) >= 6:
            submitted, packed = _array_name(parts[5])
            attempt = submitted + int(parts[4].strip() or 0) if submitted is not None else None
            state = parts[1].strip().split()[0]
            found[parts[0].strip()] = (state, parts[2].strip(), parts[3].strip(), attempt, packed, parts[5].strip())
    return found


def _accounted(jobs):
    """What the site's accounting (slurmdbd) kept of these jobs' array tasks, which squeue forgets MinJobAge
    after their end: per task the same (state, reason, exit code, attempt, packed, name) as ``_queued``, from the task's
    latest record; its attempt counts the records of earlier attempts that requeues (a preemption, a time
    limit, ``scontrol requeue``) left (``sacct -D``). One sacct for all of them; None where the site keeps
    no accounting (sacct fails: "Slurm accounting storage is disabled"), so the caller reads jobcomp."""
    try:
        result = subprocess.run(
            ["sacct", "-X", "-D", "-n", "-P", "-j", ",".join(jobs), "-o", "JobID,State,ExitCode,JobName"],
            capture_output=True,
            text=True,
        )
    except OSError:  # no sacct at all
        return None
    if result.returncode:
        return None
    records = {}
    for line in result.stdout.splitlines():
        parts = line.split("|")
        if len(parts) >= 4 and "[" not in parts[0]:  # a pending rest of an array (JOB_[3-9]) squeue lists
            records.setdefault(parts[0], []).append(parts)
    found = {}
    for ref, kept in records.items():
        state, code, name = kept[-1][1], kept[-1][2], kept[-1][3]
        submitted, packed = _array_name(name)
        attempt = submitted + len(kept) - 1 if submitted is not None else None
        found[ref] = (state.split()[0], "sacct: %s" % state, code, attempt, packed, name)
    return found


def _cancel_marker(status_prefix, ref):
    """The file that cancels one point inside packed task ``ref`` (the task's attempt runner skips the point,
    or its ``--stop-file`` stops it if it runs), whatever attempt the task is at."""
    return "%s.cancel-%s" % (status_prefix, ref)


def _current_attempt(queued, recorded, log_prefix, most):
    """The task's latest attempt: Slurm's count while it lists the task, else the latest that left a log."""
    attempt = queued[3] if queued and queued[3] is not None else _latest_log(log_prefix, recorded, most)
    return max(attempt, recorded)


#: The detail of an attempt an experiment never started: its task (packed, or pending) was stopped or requeued
#: before it reached the experiment, so no log of that attempt exists.
NOT_STARTED = "never started in this attempt: its task was stopped or requeued before it reached this experiment"


def _ends(status_prefix, recorded, attempt, siblings=()):
    """How each attempt from ``recorded`` to before ``attempt`` ended: [state, exit code, detail or None, why
    the next attempt started or None]. One that left its exit code ended by itself (a failure retried within
    retry_failed, or a finished task Slurm ran again); else the note the wrapper or the batch script left
    (``timeout``), else it was ``preempted``, said ``NOT_STARTED`` when it left no log (a packed point its task
    had not reached yet). A packed point stopped or not reached because another point of its task
    (``siblings``: their exit-code prefixes by index) failed and asked for its retry was not preempted by the
    platform: its task was requeued for that retry, and its end and its next start say so."""
    ends = {}
    folder, index = os.path.split(status_prefix)
    for number in range(recorded, attempt):
        code = _exit_code("%s.%d" % (status_prefix, number))
        if code is not None:
            ends[number] = ["completed" if code == 0 else "failed", code, None, None]
            continue
        note = _note(status_prefix, number)
        log = os.path.join(os.path.dirname(folder), "logs", "%s.%d.log" % (index, number))
        detail = None if os.path.exists(log) else NOT_STARTED
        why = _retried_sibling(siblings, number) if note not in _ENDED_BY_SLURM else None
        if why is not None:
            detail = ("never started in this attempt: %s" if detail else "stopped: %s") % why
        ends[number] = [note if note in _ENDED_BY_SLURM else "preempted", None, detail, why]
    return ends


def _retried_sibling(siblings, number):
    """Why a packed task was requeued at attempt ``number``, when one of its other points failed then and
    asked for its retry (its note ``retry`` beside its exit code), else None."""
    for index, prefix in sorted(siblings):
        if _note(prefix, number) == "retry" and _exit_code("%s.%d" % (prefix, number)) is not None:
            return "its task was requeued for a retry of experiment %s" % index
    return None


def _completed_before(status_prefix, attempt):
    """The first attempt before ``attempt`` whose experiment exited 0, else None. Its end stands whatever Slurm
    did with the task later: a node lost mid-run leaves the step running while Slurm requeues the task, and
    the step may still finish and write its 0 after the requeue was seen (the next attempt then does not run
    it: the batch script checks at task start)."""
    for number in range(attempt):
        if _exit_code("%s.%d" % (status_prefix, number)) == 0:
            return number
    return None


def status(document):
    """The state of each task's latest attempt, from its exit-code file, then one squeue, then, for the tasks
    squeue forgot (MinJobAge after their end), one sacct where the site keeps accounting, else jobcomp.

    squeue speaks for the controller itself and comes first: slurmdbd learns of a submission, a start or a
    requeue a moment later, so sacct alone could call a task just submitted unknown. sacct knows the ends
    squeue forgot: the exit code, a cancel or time limit the wrapper could not note, and (``-D``) the records
    of the attempts before a requeue, which count the task's attempt where no log of it was written yet.

    The exit-code file (``mrunner.layout``'s, whose path each task brings) exists only when the experiment
    ended by itself: it is the surest end and outranks a cancel, a time limit or a preemption that came
    while the experiment was ending. Without it, Slurm's state tells the end. An exit code noted ``retry``
    is no end while Slurm still runs that attempt: the wrapper is asking Slurm for the next one.

    A task Slurm requeued (preemption, ``scontrol requeue``, the wrapper's requeue before the time limit or
    after a failure within retry_failed) is the next attempt: its attempt is the one it was submitted at (in
    its job name) plus Slurm's restart count, or, once Slurm forgot it, the latest attempt that left a log.
    A task whose run was recorded as ended (``ended``) is answered only when Slurm started it again. An
    attempt that exited 0 makes the task completed, whatever attempt Slurm is at since (a lost node).
    """
    # [index, "JOB_TASK", recorded attempt, exit-code prefix, log prefix, max_requeue, retry_failed, ended]
    tasks = document["tasks"]
    jobs = sorted({task[1].split("_")[0] for task in tasks})
    found = _queued(jobs) if jobs else {}
    forgotten = sorted({task[1].split("_")[0] for task in tasks if task[1] not in found and not task[7]})
    accounted = _accounted(forgotten) if forgotten else None  # None: no accounting, or nothing to ask it
    if accounted:
        found = {**accounted, **found}
    answer = {}
    unresolved = []
    points = {}  # the points of each task: a packed task's siblings
    for task in tasks:
        points.setdefault(task[1], []).append((task[0], task[3]))
    for index, ref, recorded, status_prefix, log_prefix, limit, retries, ended in tasks:
        queued = found.get(ref)
        siblings = [point for point in points[ref] if point[0] != index]
        attempt = _current_attempt(queued, recorded, log_prefix, limit + retries)
        finished = _completed_before(status_prefix, attempt)
        if finished is not None:  # completed, whatever Slurm did with the task afterwards
            if not ended:
                detail = "attempt %d completed (exit 0); Slurm's later start of the task did not run it again"
                at = max(recorded, finished)
                answer[index] = [
                    "completed",
                    0,
                    detail % finished,
                    True,
                    at,
                    _ends(status_prefix, recorded, at, siblings),
                ]
            continue
        packed = bool(queued and queued[4])
        if (
            packed
            and os.path.exists(_cancel_marker(status_prefix, ref))
            and _exit_code("%s.%d" % (status_prefix, attempt)) is None
        ):
            if not ended:  # cancelled inside its task: skipped or stopped there, whatever the task does since
                answer[index] = ["cancelled", None, "cancelled inside task %s" % ref, False, recorded, {}]
            continue
        if ended and attempt == recorded:
            continue  # an ended run that Slurm has not started again
        ends = _ends(status_prefix, recorded, attempt, siblings)
        code = _exit_code("%s.%d" % (status_prefix, attempt))
        note = _note(status_prefix, attempt)
        state = _STATES.get(queued[0], "running") if queued else None
        if packed and code is None and state == "running" and not os.path.exists("%s.%d.log" % (log_prefix, attempt)):
            # a point of a running task that the task has not reached yet
            # one reason for all of them, so that `--wait` sums them up (the JOB column names the task)
            answer[index] = ["pending", None, "queued in its running task", False, attempt, ends]
            continue
        if code is not None and note == "retry" and state in ("pending", "running"):
            entry = ["running", None, "attempt %d failed (exit %d): being started again" % (attempt, code), False]
        elif code is not None:  # the detail: what the watch over the code restored before it (mrunner.attempt)
            entry = ["completed" if code == 0 else "failed", code, _restored(status_prefix, attempt), True]
        elif note == "preempted":  # the batch script found max_requeue reached and did not start it
            entry = ["preempted", None, "requeued more than max_requeue=%d times" % limit, False]
        elif state in _ENDED_BY_SLURM:
            entry = [state, _exit_of(queued[2] or "0"), None if queued[1] in ("None", "") else queued[1], False]
        elif queued:
            finished = state in ("completed", "failed")
            entry = [
                state,
                _exit_of(queued[2]) if finished and queued[2] else None,
                None if queued[1] in ("None", "") else queued[1],
                False,
            ]
        else:
            unresolved.append((index, ref))
            entry = [None, None, None, False]
        answer[index] = entry + [attempt, ends]
    if unresolved:
        finished_tasks = {} if accounted is not None else _jobcomp(sorted({ref.split("_")[0] for _, ref in unresolved}))
        for index, ref in unresolved:
            if ref in finished_tasks:
                answer[index][:4] = finished_tasks[ref] + [False]
            else:
                answer[index][:4] = ["lost", None, "Slurm no longer knows job %s and it left no exit code" % ref, False]
    prefixes = {task[0]: task[3] for task in tasks}
    for index, entry in answer.items():
        full = _full(prefixes[index]) if entry[0] == "failed" else None
        if full:  # a full disk is why, whatever Slurm's reason (NonZeroExitCode) or the exit code (120) say
            entry[2] = full + ("; %s" % entry[2] if entry[2] else "")
    return answer


def _note(status_prefix, attempt):
    """How an attempt was stopped, as the wrapper or the batch script noted it (``timeout``, ``preempted``),
    or ``retry`` when the wrapper asked for the next attempt after a failure."""
    try:
        with open("%s.%d.end" % (status_prefix, attempt)) as stream:
            return stream.read().strip() or None
    except OSError:
        return None


def _restored(status_prefix, attempt):
    """What the attempt's wrapper found changed in the code's watched copy and restored before it ran, else
    None (mrunner.attempt.RESTORED_NOTE); read once per attempt, when its end is answered."""
    try:
        with open("%s.%d.restored" % (status_prefix, attempt)) as stream:
            return stream.read().strip() or None
    except OSError:
        return None


def _latest_log(log_prefix, recorded, most):
    """The latest attempt from ``recorded`` on that left a log (a requeued task Slurm no longer lists), at
    most ``most`` + 1 attempts on."""
    latest = recorded
    for attempt in range(recorded + 1, recorded + most + 2):
        if os.path.exists("%s.%d.log" % (log_prefix, attempt)):
            latest = attempt
    return latest


_ALIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "RESIZING"}


def _alive(jobs):
    """The array tasks of these jobs that are queued or still running."""
    alive = set()
    for line in _listing(jobs, "JobArrayID:|,State:|"):
        ref, _, state = line.partition("|")
        if state.strip("| ").split()[:1] and state.strip("| ").split()[0] in _ALIVE:
            alive.add(ref.strip())
    return alive


def cancel(document):
    """scancel the tasks, wait until none of them is left running (at most ``wait`` seconds: the wrapper's
    grace period, which Slurm's KillWait bounds too), then read the exit-code file of the attempt each task
    was running (Slurm may have started a later one than the records know): a task whose experiment ended
    by itself before the signal reached it keeps that end. Answers [exit code or None, attempt, ends].

    A point of a packed task is cancelled alone by a file (``_cancel_marker``): the task skips it, or its
    wrapper stops it if it runs, and the task's other points go on; the wait is for that point. A packed
    task none of whose points is left to run once these are cancelled is scancelled as a whole."""
    tasks = document["tasks"]  # [index, "JOB_TASK", recorded attempt, exit-code prefix, log prefix, most attempts]
    refs = {task[1] for task in tasks}
    jobs = sorted({ref.split("_")[0] for ref in refs})
    specs = document["specs"]
    marked = []
    before = _queued(jobs) if jobs else {}
    packed = {ref for ref in refs if before.get(ref) and before[ref][4]}
    if packed:
        cancelling = {}
        for index, ref, _, status_prefix, log_prefix, _ in tasks:
            if ref in packed:
                _write_atomic(_cancel_marker(status_prefix, ref), b"")
                cancelling.setdefault(ref, set()).add(index)
                marked.append((ref, status_prefix, log_prefix))
        folder = {ref: os.path.dirname(os.path.dirname(prefix)) for ref, prefix, _ in marked}
        tables = {}
        whole = {ref for ref in packed if _nothing_left(folder[ref], before[ref], ref, cancelling[ref], tables)}
        marked = [point for point in marked if point[0] not in whole]
        kept = {ref for ref in refs if ref not in packed or ref in whole}
        specs = [
            "%s_[%s]" % (job, ",".join(sorted(r.split("_")[1] for r in kept if r.split("_")[0] == job)))
            for job in sorted({r.split("_")[0] for r in kept})
        ]
    if specs:
        result = subprocess.run(["scancel", *specs], capture_output=True, text=True)
        if result.returncode:
            raise SystemExit("mrunner: scancel failed: " + " / ".join(result.stderr.strip().splitlines()[-2:]))
    deadline = time.monotonic() + document["wait"]
    while time.monotonic() < deadline:
        alive = _alive(jobs)
        if not (refs - {ref for ref, _, _ in marked}) & alive and not _stopping(marked, before, alive):
            break
        time.sleep(0.2)
    found = _queued(jobs)
    answer = {}
    points = {}  # the points of each task: a packed task's siblings
    for task in tasks:
        points.setdefault(task[1], []).append((task[0], task[3]))
    for index, ref, recorded, status_prefix, log_prefix, most in tasks:
        siblings = [point for point in points[ref] if point[0] != index]
        attempt = _current_attempt(found.get(ref), recorded, log_prefix, most)
        code = _exit_code("%s.%d" % (status_prefix, attempt))
        finished = _completed_before(status_prefix, attempt) if code is None else None
        if finished is not None:  # an earlier attempt had completed: the cancel stopped nothing of it
            code, attempt = 0, max(recorded, finished)
        answer[index] = [code, attempt, _ends(status_prefix, recorded, attempt, siblings)]
    return answer


def _nothing_left(folder, queued, ref, cancelling, tables):
    """Whether packed task ``ref`` has no point left to run once ``cancelling`` are cancelled: each of its
    points (its line of its array's task bundle, a list of points in JSON; the bundle's lines read once per
    array into ``tables``) is among them, completed, or cancelled before."""
    path = os.path.join(folder, "tasks", queued[5] + ".jsonl")
    if path not in tables:
        try:
            with open(path, encoding="utf-8") as stream:
                tables[path] = stream.read().splitlines()
        except (OSError, ValueError):
            tables[path] = []
    task = int(ref.split("_")[1])
    try:
        points = [int(point["index"]) for point in json.loads(tables[path][task])]
    except (IndexError, ValueError, KeyError, TypeError):
        return False
    for point in points:
        prefix = os.path.join(folder, "status", str(point))
        done = point in cancelling or os.path.exists(_cancel_marker(prefix, ref))
        if not done and _completed_before(prefix, (queued[3] or 0) + 1) is None:
            return False
    return True


def _stopping(marked, queued, alive):
    """Whether a point cancelled inside its running task is still running (started, no end written yet)."""
    for ref, status_prefix, log_prefix in marked:
        attempt = queued[ref][3] or 0
        ended = _exit_code("%s.%d" % (status_prefix, attempt)) is not None or _note(status_prefix, attempt)
        if ref in alive and os.path.exists("%s.%d.log" % (log_prefix, attempt)) and not ended:
            return True
    return False


def _jobcomp(jobs):
    """Finished tasks Slurm no longer lists, on a site without accounting: from the jobcomp text file where the
    site writes one (``JobCompType=jobcomp/filetxt``)."""
    found = {}
    config = _slurm_config()
    location = config.get("JobCompLoc")
    if config.get("JobCompType") != "jobcomp/filetxt" or not location or not os.access(location, os.R_OK):
        return found
    wanted = set(jobs)
    fields = re.compile(r"(\w+)=(\S*)")
    with open(location, errors="replace") as stream:
        for line in stream:  # the last line for a job wins (a cancelled ghost can have two)
            if "ArrayJobId=" not in line:
                continue
            values = dict(fields.findall(line))
            if values.get("ArrayJobId") in wanted:
                ref = "%s_%s" % (values["ArrayJobId"], values.get("ArrayTaskId"))
                state = _STATES.get(values.get("JobState", ""), "failed")
                found[ref] = [state, _exit_of(values.get("ExitCode", "0:0")), "jobcomp: %s" % values.get("JobState")]
    return found


_CODE_PATH = re.compile(r"/\.mrunner/(code|venvs)/([0-9a-f]{24,64})")
_CLIENT_PATH = re.compile(r"([^\s'\"=:]+/\.mrunner/client/[0-9a-f]{16,64})")


def _in_use():
    """Code folders, virtualenvs, experiment sides (``client``) and sweep folders that this user's queued or
    running jobs use, read from their batch scripts (every machine's sweeps, not only the records of the one
    collecting); a batch script lies in its sweep folder's ``slurm/``."""
    result = subprocess.run(
        ["squeue", "-h", "-u", str(os.getuid()), "-t", "PD,R,CG,CF,S,RQ,RS,RH,SE,SO,ST", "-o", "%o"],
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise SystemExit("mrunner: squeue failed, so nothing is collected: " + result.stderr.strip()[-200:])
    used = {"code": set(), "venvs": set(), "client": set(), "sweeps": set()}  # names; real paths of the last two
    for script in set(result.stdout.split()):
        used["sweeps"].add(os.path.dirname(os.path.dirname(os.path.realpath(script))))
        try:
            with open(script, errors="replace") as stream:
                text = stream.read()
        except OSError:
            continue
        for kind, name in _CODE_PATH.findall(text):
            used[kind].add(name)
        used["client"].update(_clients(text))
    return used


def _clients(text):
    """The experiment sides (``STORAGE/.mrunner/client/DIGEST``, as real paths) a batch script names: of
    this storage folder only, since every storage of one mrunner version has one of the same digest."""
    return {os.path.realpath(path) for path in _CLIENT_PATH.findall(text)}


def _named_clients(script):
    try:
        with open(script, errors="replace") as stream:
            return _clients(stream.read())
    except OSError:
        return set()


def _measure(path):
    if os.path.islink(path) or not os.path.isdir(path):
        return 1, os.lstat(path).st_size
    files = size = 0
    for folder, _, names in os.walk(path):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(folder, name)).st_size
    return files, size


def _gone(path, kind, dry_run, removed):
    files, size = _measure(path)
    if not dry_run:
        if os.path.isdir(path) and not os.path.islink(path):
            subprocess.run(["chmod", "-R", "u+w", path], capture_output=True)  # code folders are read-only
            subprocess.run(["rm", "-rf", path], check=True)
        else:
            os.unlink(path)
    removed.append([kind, path, files, size])


def gc(document):
    """Remove code folders (with their watched copies and guards), their file lists and virtualenvs nothing needs, then the objects no remaining
    file list names. Kept: what the records' live sweeps name, what queued or running jobs use, and what no
    record names unless older than ``unknown_age``; objects and builds younger than ``grace`` in any case
    (a submission of another machine may be on its way to them). Results are never looked at."""
    storage = os.path.abspath(os.path.expanduser(document["storage"]))
    store, now, dry_run = _store(storage), time.time(), document["dry_run"]
    used = _in_use()
    keep = set(document["keep_digests"]) | used["code"]
    remove = set(document["remove_digests"]) - keep
    removed = []

    def age(path):
        return now - os.lstat(path).st_mtime

    def goes(digest, path):
        if digest in keep:
            return False
        return digest in remove or age(path) > document["unknown_age"]

    code, trees = os.path.join(store, "code"), os.path.join(store, "trees")
    gone_code = set()
    for name in sorted(os.listdir(code)) if os.path.isdir(code) else []:
        path = os.path.join(code, name)
        if name.startswith(".tmp-") and age(path) > document["grace"]:  # an upload cut off
            _gone(path, "code folder", dry_run, removed)
        elif not name.startswith(".") and goes(name, path):
            _gone(path, "code folder", dry_run, removed)
            gone_code.add(name)
    for kind, folder in (("watched code copy", "watched"), ("code guard", "guards")):  # mrunner.treeguard's
        folder = os.path.join(store, folder)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            path = os.path.join(folder, name)
            digest = name[len(".tmp-") :].rsplit("-", 1)[0] if name.startswith(".tmp-") else name
            if digest in gone_code or not os.path.isdir(os.path.join(code, digest)):
                if not name.startswith(".tmp-") or age(path) > document["grace"]:
                    _gone(path, kind, dry_run, removed)
    left = set()
    for name in sorted(os.listdir(trees)) if os.path.isdir(trees) else []:
        path, digest = os.path.join(trees, name), name[: -len(".json")]
        if not name.endswith(".json"):
            continue
        has_code = digest not in gone_code and os.path.isdir(os.path.join(code, digest))
        if not has_code and goes(digest, path):
            _gone(path, "file list", dry_run, removed)
        else:
            left.add(path)
    referenced = set()
    for path in left:
        with open(path) as stream:
            referenced.update(sha for sha, _ in json.load(stream).values())
    objects = os.path.join(store, "objects")
    for entry in os.scandir(objects) if os.path.isdir(objects) else []:
        if entry.name not in referenced and now - entry.stat(follow_symlinks=False).st_mtime > document["grace"]:
            _gone(entry.path, "object", dry_run, removed)
    venvs = os.path.join(store, "venvs")
    keep_venvs = {os.path.basename(p) for p in document["keep_venvs"]} | used["venvs"]
    remove_venvs = {os.path.basename(p) for p in document["remove_venvs"]} - keep_venvs
    for name in sorted(os.listdir(venvs)) if os.path.isdir(venvs) else []:
        path = os.path.join(venvs, name)
        if not os.path.isdir(path) or name in keep_venvs:
            continue
        ready = os.path.join(path, ".mrunner-ready")
        last_use = age(ready) if os.path.exists(ready) else age(path)
        if name in remove_venvs or last_use > document["unknown_age"]:
            _collect_venv(path, dry_run, removed)
    _collect_sweep_files(storage, document, used, now, removed)
    return {"removed": removed}


_SWEEP_NAME = re.compile(r"^[a-z]+(?:-[a-z]+)*-[0-9a-f]{6}$")  # mrunner.naming.sweep_id


def _sweep_dirs(storage):
    """(sweep id, folder) of every sweep folder below ``storage`` (``PROJECT/SWEEP``, as mrunner.layout puts
    it) that mrunner's own files mark as one: any machine's sweeps, recorded or not."""
    for project in sorted(os.listdir(storage)) if os.path.isdir(storage) else []:
        folder = os.path.join(storage, project)
        if project.startswith(".") or os.path.islink(folder) or not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if _SWEEP_NAME.match(name) and not os.path.islink(path) and os.path.isdir(os.path.join(path, "submitted")):
                yield name, path


def _collect_sweep_files(storage, document, used, now, removed):
    """What a sweep's submission wrote to run it, beside its results: ``.secrets.env`` goes as soon as no
    queued or running job of the sweep can read it, whatever ``--older-than`` says (a resume writes it
    again): at once for a recorded sweep that is not kept, else once older than ``grace`` (a submission
    may be writing it now, its sbatch still to come); the task bundles, batch scripts and
    submission markers (``mrunner-SWEEP-*`` in ``tasks/``, ``slurm/``, ``submitted/``) go with the code
    folders' rule; the experiment sides (``.mrunner/client/DIGEST``) once no job or kept sweep's batch
    script names them. Results (experiment, checkpoint, config, logs, status folders, Slurm's ``.out``
    files) are never touched."""
    dry_run, grace = document["dry_run"], document["grace"]
    keep, remove = set(document.get("keep_sweeps", ())), set(document.get("remove_sweeps", ()))
    clients_named = set(used["client"])
    for sweep, folder in _sweep_dirs(storage):
        running = os.path.realpath(folder) in used["sweeps"]
        secrets = os.path.join(folder, ".secrets.env")
        if not running and os.path.lexists(secrets) and (sweep in remove or now - os.lstat(secrets).st_mtime > grace):
            _gone(secrets, "secrets file", dry_run, removed)
        own = _run_files(folder, sweep)
        newest = max((os.lstat(path).st_mtime for _, path in own), default=0)
        goes = not running and sweep not in keep and (sweep in remove or now - newest > document["unknown_age"])
        for kind, path in own:
            if goes:
                _gone(path, kind, dry_run, removed)
            elif kind == "batch script":
                clients_named |= _named_clients(path)
    clients = os.path.join(_store(storage), "client")
    for name in sorted(os.listdir(clients)) if os.path.isdir(clients) else []:
        path = os.path.join(clients, name)
        if (
            os.path.realpath(path) not in clients_named and now - _newest(path) > grace
        ):  # a submission rewrites its files
            _gone(path, "experiment side", dry_run, removed)


# task bundles: NAME.sh, or NAME.jsonl when packed
_RUN_FILES = (("tasks", "task bundle", ""), ("slurm", "batch script", ".sh"), ("submitted", "submission marker", ""))


def _run_files(folder, sweep):
    """(kind, path) of what submitting sweep ``sweep`` wrote in its folder to run its arrays (see
    mrunner_slurm.batch): files named after an array, ``mrunner-SWEEP-...``, and the stop files of its
    interrupted submissions, never Slurm's ``.out`` files (nor ``submitted/.lock``: a lock file removed
    while held would let the next submission lock another)."""
    found = []
    for sub, kind, suffix in _RUN_FILES:
        where = os.path.join(folder, sub)
        for name in sorted(os.listdir(where)) if os.path.isdir(where) else []:
            if name.startswith("mrunner-%s-" % sweep) and name.endswith(suffix):
                found.append((kind, os.path.join(where, name)))
            elif sub == "submitted" and name.startswith(".stop-"):  # an interrupted submission's (``settle``)
                found.append(("submission stop", os.path.join(where, name)))
    return found


def _newest(path):
    """The latest modification time of ``path`` and everything below it."""
    newest = os.lstat(path).st_mtime
    for folder, dirs, names in os.walk(path):
        for name in dirs + names:
            newest = max(newest, os.lstat(os.path.join(folder, name)).st_mtime)
    return newest


def _collect_venv(path, dry_run, removed):
    """A virtualenv goes only while no submission builds or reuses it (its lock is free)."""
    import fcntl

    with open(path + ".lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return
        _gone(path, "virtualenv", dry_run, removed)
        if os.path.exists(path + ".requirements.txt"):
            _gone(path + ".requirements.txt", "virtualenv requirements", dry_run, removed)


def main(argv, stdin):
    if argv[0] == "serve":  # started ahead of its command (remote.prestart): the command is stdin's first line
        line = stdin.readline()
        if not line.strip():
            return  # never used: the connection closed
        argv = json.loads(line)
    try:
        _run(argv, stdin)
    except OSError as failure:  # a write without a file name (the upload's) is below the storage it names
        where = argv[1] if len(argv) > 1 and argv[0] in ("begin", "missing", "receive", "venv") else "?"
        raise SystemExit("mrunner: " + _os_failure(failure, where)) from None


def _run(argv, stdin):
    command = argv[0]
    if command == "begin":
        answer = begin(argv[1], argv[2], json.loads(zlib.decompress(stdin.read())))
    elif command == "missing":
        answer = missing(argv[1], zlib.decompress(stdin.read()).decode().split())
    elif command == "receive":
        try:
            answer = receive(argv[1], argv[2], stdin)
        except (EOFError, ValueError, zlib.error, OSError) as error:
            if isinstance(error, OSError) and error.errno in _STORAGE_ERRORS:
                raise  # the storage's own trouble, named by `_os_failure`: retrying does not cure it
            raise SystemExit(
                "mrunner: the code upload was cut off (%s); nothing half-written is kept, retry" % error
            ) from None
    elif command == "prepare":
        answer = prepare(json.loads(zlib.decompress(stdin.read())))
    elif command == "venv":
        answer = venv(argv[1], argv[2], stdin.read().decode())
    elif command == "submit":
        answer = submit(json.loads(zlib.decompress(stdin.read())))
    elif command == "probe":
        answer = probe(json.loads(zlib.decompress(stdin.read())))
    elif command == "settle":
        answer = settle(json.loads(zlib.decompress(stdin.read())))
    elif command == "status":
        answer = status(json.loads(zlib.decompress(stdin.read())))
    elif command == "cancel":
        answer = cancel(json.loads(zlib.decompress(stdin.read())))
    elif command == "gc":
        answer = gc(json.loads(zlib.decompress(stdin.read())))
    else:
        raise SystemExit("mrunner: unknown helper command %r" % command)
    if answer is not None:
        print(json.dumps(answer), flush=True)


_STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _os_failure(error, where):
    """One line for the cluster's file system refusing a write: which path, the reason (ENOSPC, EROFS, EACCES:
    the names a cluster's admin knows) and what to change, instead of a traceback flattened into a line."""
    path = error.filename or where
    name = errno.errorcode.get(error.errno or 0, "errno %s" % error.errno)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            "no space left (%s%s) at %s: free space on that file system, or set the context's storage_dir "
            "to another one" % (name, ": disk quota exceeded" if error.errno == errno.EDQUOT else "", path)
        )
    if error.errno == errno.EROFS:
        return "%s is on a read-only file system (EROFS): set the context's storage_dir to a writable folder" % path
    if error.errno in (errno.EACCES, errno.EPERM):
        import getpass

        return (
            "user %s may not write %s (%s: %s): set the context's storage_dir to a folder it can write, or "
            "give it that permission" % (getpass.getuser(), path, name, error.strerror)
        )
    return "%s: %s (%s)" % (path, error.strerror, name)


if __name__ == "__main__" and sys.argv[:1] == ["-c"]:  # run by shipped.LAUNCHER, not imported
    main(sys.argv[1:], sys.stdin.buffer)
    sys.stdout.flush()
    os._exit(0)  # the caller waits for the exit: skip the interpreter's teardown (~10 ms)
