"""A Docker engine a test may kill, and a registry connection it can watch: for the faults of a push.

The k8s service's dockerd is shared by every test run on this machine, so a test that needs an engine to
die starts its own (``OwnDockerd``: its own data root, exec root and socket, the same ``dockerd`` binary)
and kills that one by its process id. ``RegistryProxy`` forwards a loopback port to the service's registry
byte for byte and calls back on the first blob upload that passes (the middle of a push); Docker treats
every 127.0.0.0/8 registry as plain HTTP, so both engines, the kubelet's too, pull through it unchanged.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

READY_SECONDS = 60


class OwnDockerd:
    """``start()`` runs a private dockerd (again on the same data after a ``kill()``), ``kill()`` SIGKILLs
    it, ``close()`` stops it and its containerd and removes its folder."""

    def __init__(self) -> None:
        # a short folder: the socket's path must fit in a sockaddr_un
        self.folder = Path(tempfile.mkdtemp(prefix="mrt-dockerd-", dir="/tmp"))
        self.socket = self.folder / "docker.sock"
        self.url = f"unix://{self.socket}"
        (self.folder / "daemon.json").write_text("{}")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        import docker

        with open(self.folder / "dockerd.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    "dockerd",
                    "--config-file",
                    str(self.folder / "daemon.json"),
                    "--data-root",
                    str(self.folder / "data"),
                    "--exec-root",
                    str(self.folder / "exec"),
                    "--pidfile",
                    str(self.folder / "dockerd.pid"),
                    "-H",
                    self.url,
                    "--bridge=none",
                    "--iptables=false",
                    "--ip6tables=false",
                    "--ip-forward=false",
                    "--ip-masq=false",
                    "--exec-opt",
                    "native.cgroupdriver=cgroupfs",
                    "--log-driver=json-file",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_SECONDS
        while True:  # until it answers (or has exited)
            if self.process.poll() is not None:
                raise AssertionError(f"dockerd exited: {self.log_tail()}")
            try:
                docker.DockerClient(base_url=self.url).ping()
                return
            except docker.errors.DockerException:
                if time.monotonic() > deadline:
                    raise AssertionError(f"dockerd not ready after {READY_SECONDS}s: {self.log_tail()}") from None
                time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the engine: dockerd, then the containerd it started (by the ids they wrote)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._kill_containerd()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # a clean stop ends its containerd too
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        # a killed dockerd leaves its data root's own mount (and any below it): ours, deepest first
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for point in sorted((m for m in mounts if m.startswith(f"{self.folder}/")), reverse=True):
            subprocess.run(["umount", point], check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _kill_containerd(self) -> None:
        """Kill the containerd a killed dockerd leaves (if it did not die with it) and remove its pidfile:
        a dockerd started on the same exec root takes the id there for a containerd still running, and this
        machine's init may leave the dead one a zombie, which still answers kill(pid, 0)."""
        pidfile = self.folder / "exec" / "containerd" / "containerd.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            ours = str(self.folder) in Path(f"/proc/{pid}/cmdline").read_text()  # empty for a zombie
            if ours:
                os.kill(pid, signal.SIGKILL)
        except OSError:
            ours = False
        deadline = time.monotonic() + READY_SECONDS
        while ours and _state(pid) not in ("Z", None):  # until it is gone, or a zombie
            if time.monotonic() > deadline:
                raise AssertionError(f"containerd {pid} did not end after SIGKILL")
            time.sleep(0.05)
        pidfile.unlink(missing_ok=True)

    def log_tail(self) -> str:
        lines = (self.folder / "dockerd.log").read_text(errors="replace").splitlines()
        return " | ".join(lines[-5:])


class RegistryProxy:
    """Forwards ``127.0.0.1:port`` to ``target`` (``host:port``). While ``on_upload`` is set, the first
    request that starts a blob upload calls it, instead of being forwarded, and is dropped."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.on_upload: Callable[[], None] | None = None
        self.uploads_cut = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="registry-proxy", daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, to_registry: bool) -> None:
        try:
            while data := source.recv(65536):
                if to_registry and b"/blobs/uploads/" in data and self._cut():
                    return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()

    def _cut(self) -> bool:
        with self._lock:
            callback, self.on_upload = self.on_upload, None
        if callback is None:
            return False
        self.uploads_cut += 1
        callback()
        return True


def _state(pid: int) -> str | None:
    """A process's state letter (``R``, ``S``, ``Z``, ...), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
