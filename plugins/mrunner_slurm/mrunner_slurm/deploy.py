"""Deploying the code snapshot into a content-addressed store under ``storage_dir`` on the cluster.

``storage_dir/.mrunner/objects/<sha256>`` holds each file content once; ``.mrunner/code/<digest>`` is a
snapshot's folder, assembled from the objects by the helper. A dispatch asks which of the manifest's
objects are missing (one round trip) and sends only those, as one gzip (level 1: building it must not cost
more than sending it) tar stream straight into the helper, which verifies each hash before renaming it into
place. A changed file of a large project thus costs one object.
"""

from __future__ import annotations

import io
import json
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mrunner.reporter import Reporter
from mrunner_slurm import remote
from mrunner_slurm.ssh import Connection

CHUNK = 256 * 1024


def manifest_of(snapshot_dir: Path) -> dict[str, list]:
    """The snapshot's manifest ``{relpath: [sha256, mode]}``, written next to its folder by the core."""
    data = json.loads((snapshot_dir.parent / f"{snapshot_dir.name}.json").read_text())
    return {path: list(entry) for path, entry in data["files"].items()}


def deploy(connection: Connection, storage_dir: str, snapshot_dir: Path, reporter: Reporter) -> dict[str, Any]:
    """Make the snapshot's code folder exist on the cluster; return where it is and what was sent."""
    digest = snapshot_dir.name
    manifest = manifest_of(snapshot_dir)
    hashes = sorted({sha for sha, _ in manifest.values()})
    begun = remote.call(connection, ["begin", storage_dir, digest], zlib.compress("\n".join(hashes).encode(), 1))
    connection.facts.update(begun["config"], storage=begun["storage"])
    storage = begun["storage"]
    code_dir = f"{storage}/.mrunner/code/{digest}"
    if begun["have_code"]:
        return {"storage_dir": storage, "code_dir": code_dir, "objects_sent": 0, "bytes_sent": 0}
    missing = set(begun["missing"])
    sources = {}
    for relative, (sha, _) in manifest.items():
        if sha in missing and sha not in sources:
            sources[sha] = snapshot_dir / relative
    counter = _Counter()
    answer = remote.call(connection, ["receive", storage, digest], counter.wrap(stream(manifest, sources)))
    reporter.step(
        f"code: sent {len(sources)} of {len(hashes)} files ({counter.bytes // 1024} KiB compressed) "
        f"to {connection.target.alias}"
    )
    return {"storage_dir": storage, "code_dir": answer["code_dir"], "objects_sent": len(sources), "bytes_sent": counter.bytes}


def stream(manifest: dict[str, list], sources: dict[str, Path]) -> Iterator[bytes]:
    """The gzip'd tar stream: one member per missing object (named by its hash), then ``manifest.json``."""
    buffer = _Buffer()
    with tarfile.open(fileobj=buffer, mode="w|", format=tarfile.GNU_FORMAT) as archive:
        for sha, path in sources.items():
            data = path.read_bytes()
            _add(archive, sha, data)
            if buffer.size >= CHUNK:
                yield buffer.take()
        _add(archive, "manifest.json", json.dumps(manifest).encode())
    yield buffer.take(final=True)


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o444
    archive.addfile(info, io.BytesIO(data))


class _Buffer:
    """A file-like sink that gzips what tarfile writes and hands it out in chunks."""

    def __init__(self) -> None:
        self._compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
        self._parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        out = self._compressor.compress(data)
        if out:
            self._parts.append(out)
            self.size += len(out)
        return len(data)

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
