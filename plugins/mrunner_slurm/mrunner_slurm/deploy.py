"""Deploying the code snapshot into a content-addressed store under ``storage_dir`` on the cluster.

``storage_dir/.mrunner/objects/<sha256>`` holds each file content once; ``.mrunner/trees/<digest>.json``
each deployed file list; ``.mrunner/code/<digest>`` a snapshot's folder, assembled from the objects by the
helper. When the store holds an earlier tree of this machine's, a dispatch sends only the files that
changed since and the list of changes (a changed file of a 2,000-file project costs one object and a few
hundred bytes); otherwise it sends those the store lacks with the whole list. Which ones those are, the
first call (``begin``) answers when this machine has no earlier tree; only a store that has none of this
machine's trees costs one more round trip (``missing``). Either way the data goes as one gzip stream
(level 1: building it must not cost more than sending it) straight into the helper: the file list first,
then the objects, each verified against its hash, written once into the code folder being built and
hard-linked into the store. The stream is a plain sequence of frames, ``NAME SIZE\n`` then
SIZE bytes, not a tar: tarfile's headers cost more than everything else of building and reading it
(about 0.1 s per 2,000 files on each side).
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mrunner import treeguard
from mrunner.reporter import Reporter
from mrunner.snapshot import Snapshot
from mrunner_slurm import remote
from mrunner_slurm.transport import Connection

CHUNK = 64 * 1024  # small enough that the cluster starts storing objects while the rest is still being built


def deploy(
    connection: Connection, storage_dir: str, snapshot: Snapshot, reporter: Reporter, sweep: str | None = None
) -> dict[str, Any]:
    """Make the snapshot's code folder exist on the cluster; return where it is and what was sent. For a
    ``sweep`` that reuses a code folder there, the watched copy jobs without a view of it linked to is
    checked first, restored if an experiment changed it, and the sweep warned (``mrunner.treeguard``)."""
    facts = _deploy(connection, storage_dir, snapshot, reporter, sweep, send=True)
    assert facts is not None
    return facts


def deployed(
    connection: Connection,
    storage_dir: str,
    snapshot: Snapshot,
    reporter: Reporter,
    sweep: str,
    read: str | None = None,
) -> dict[str, Any] | None:
    """Where the snapshot's code folder is on the cluster, checked (and restored) as ``deploy`` checks a
    reused one, when it is there; None when it is not. Nothing of the snapshot's content is read or sent:
    `resume` asks this when this machine can no longer read the snapshot. Given ``read``, a file of the
    snapshot, its content there is returned too (``"read"``: bytes, or None when the folder has no such file
    or another content than the snapshot's)."""
    facts = _deploy(connection, storage_dir, snapshot, reporter, sweep, send=False, read=read)
    if facts is not None and read is not None:
        found = facts.get("read")
        content = base64.b64decode(found) if isinstance(found, str) else None
        matches = content is not None and hashlib.sha256(content).hexdigest() == snapshot.files[read][0]
        facts["read"] = content if matches else None
    return facts


def _deploy(
    connection: Connection,
    storage_dir: str,
    snapshot: Snapshot,
    reporter: Reporter,
    sweep: str | None,
    send: bool,
    read: str | None = None,
) -> dict[str, Any] | None:
    digest = snapshot.digest
    manifest = {path: list(entry) for path, entry in snapshot.files.items()}
    candidates = _recent_trees(snapshot)
    request: dict[str, Any] = {"candidates": list(candidates)}
    if not candidates and send:  # no delta possible: let `begin` also say which objects the store lacks
        request["hashes"] = sorted({sha for sha, _ in manifest.values()})
    if sweep is not None:
        request["guard"] = {"source": Path(treeguard.__file__).read_text(), "sweep": sweep}
    if read is not None:
        request["read"] = read
    begun = remote.call(connection, ["begin", storage_dir, digest], remote.pack(request))
    connection.facts.update(begun["config"], storage=begun["storage"])
    storage = begun["storage"]
    if begun.get("guard"):
        reporter.warn(begun["guard"])
    if begun["have_code"]:
        found = {"storage_dir": storage, "code_dir": code_dir(storage, digest), "objects_sent": 0, "bytes_sent": 0}
        return {**found, "read": begun.get("read")} if read is not None else found
    if not send:
        return None
    if "missing" in begun:
        tree, wanted = ("manifest.json", manifest), set[str](begun["missing"])
    else:
        tree, wanted = _tree_to_send(connection, storage, manifest, {d: candidates[d] for d in begun["known"]})
    sources: dict[str, str] = {}
    for relative, (sha, _) in manifest.items():
        if sha in wanted and sha not in sources:
            sources[sha] = relative
    counter = _Counter()
    answer = remote.call(connection, ["receive", storage, digest], counter.wrap(stream(tree, sources, snapshot)))
    reporter.step(
        f"code: sent {len(sources)} of {len({sha for sha, _ in manifest.values()})} files "
        f"({counter.bytes // 1024} KiB compressed) to {connection.target.alias}"
    )
    return {
        "storage_dir": storage,
        "code_dir": answer["code_dir"],
        "objects_sent": len(sources),
        "bytes_sent": counter.bytes,
    }


def code_dir(storage: str, digest: str) -> str:
    """The folder the helper assembles snapshot ``digest`` in, below the resolved ``storage``."""
    return f"{storage}/.mrunner/code/{digest}"


def _recent_trees(snapshot: Snapshot, limit: int = 8) -> dict[str, Path]:
    """The most recent other snapshots of this machine: their trees may be on the cluster already."""
    manifests = [p for p in snapshot.tree.parent.glob("*.json") if p.stem != snapshot.digest]
    manifests.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return {p.stem: p for p in manifests[:limit]}


def _tree_to_send(
    connection: Connection, storage: str, manifest: dict[str, list], bases: dict[str, Path]
) -> tuple[tuple[str, Any], set[str]]:
    """``("delta.json", changes)`` against the closest tree the cluster has, sending only changed contents;
    without such a base, ``("manifest.json", manifest)`` and the objects the store lacks (one round trip)."""
    best: tuple[int, str, dict, list, set] | None = None
    for base, path in bases.items():
        old = {k: list(v) for k, v in json.loads(path.read_text())["files"].items()}
        changed = {k: v for k, v in manifest.items() if old.get(k) != v}
        removed = [k for k in old if k not in manifest]
        known = {sha for sha, _ in old.values()}
        new = {sha for sha, _ in changed.values() if sha not in known}
        if best is None or len(changed) + len(removed) < best[0]:
            best = (len(changed) + len(removed), base, changed, removed, new)
    if best is not None:
        _, base, changed, removed, new = best
        return ("delta.json", {"base": base, "set": changed, "removed": removed}), new
    hashes = sorted({sha for sha, _ in manifest.values()})
    answer = remote.call(connection, ["missing", storage], zlib.compress("\n".join(hashes).encode(), 1))
    return ("manifest.json", manifest), set(answer["missing"])


def stream(tree: tuple[str, Any], sources: dict[str, str], snapshot: Snapshot) -> Iterator[bytes]:
    """The gzip'd frame stream: the tree, then one frame per object to send (named by its hash)."""
    buffer = _Buffer()
    _add(buffer, tree[0], json.dumps(tree[1]).encode())
    for sha, relative in sources.items():
        _add(buffer, sha, snapshot.read(relative))
        if buffer.size >= CHUNK:
            yield buffer.take()
    yield buffer.take(final=True)


def _add(buffer: _Buffer, name: str, data: bytes) -> None:
    buffer.write(b"%s %d\n%s" % (name.encode(), len(data), data))  # one compress call per frame, not two


class _Buffer:
    """A sink that gzips what is written and hands it out in chunks."""

    def __init__(self) -> None:
        self._compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
        self._parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> None:
        out = self._compressor.compress(data)
        if out:
            self._parts.append(out)
            self.size += len(out)

    def take(self, final: bool = False) -> bytes:
        if final:
            self._parts.append(self._compressor.flush())
        data = b"".join(self._parts)
        self._parts, self.size = [], 0
        return data


class _Counter:
    def __init__(self) -> None:
        self.bytes = 0

    def wrap(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.bytes += len(chunk)
            yield chunk
