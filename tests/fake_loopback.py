"""``FakeLoopbackServer``: the lifetime every fake of a tracker's server shares (``FakeWandbServer``,
``FakeNeptuneServer``), so that each fake's module holds only what its server answers.

A fake listens on a port of loopback chosen once, so that ``stop()`` (the server gone: the listening socket
closed and the client's keep-alive connections cut, as a server going away does) and ``start()`` again (the
server back) keep its ``url`` and what it holds: a test of a client that outlives its server's absence needs the
same address before and after. Its handler (a ``FakeLoopbackHandler``) answers each request under
``arrived``, which it notifies, so that ``wait()`` wakes at each request instead of polling.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, TypeVar

_Fake = TypeVar("_Fake", bound="FakeLoopbackServer")


class FakeLoopbackHandler(BaseHTTPRequestHandler):
    """A request of a fake's client: HTTP/1.1 (keep-alive, as the clients expect), quiet, its connection known
    to the fake so that ``stop()`` can cut it, answered in JSON (``send_json``)."""

    server_of: FakeLoopbackServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *_: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.server_of.arrived:
            self.server_of._connections.add(self.connection)

    def send_json(self, status: int, answer: Any) -> None:
        """Answer ``status`` with ``answer`` as JSON (None: an empty body)."""
        data = json.dumps(answer).encode() if answer is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeLoopbackServer:
    """A fake's lifetime: ``url``, ``start()``, ``stop()``, a context manager of both, ``requests`` (what
    arrived, in order, as the subclass names it), ``unknown`` (what it does not serve), ``arrived`` (a Condition
    notified at each request) and ``wait()``. A subclass names its handler class and what messages call it."""

    #: The subclass's handler; ``start()`` binds a subclass of it to this fake.
    handler: ClassVar[type[FakeLoopbackHandler]]
    #: What ``wait()``'s message and the serving thread call the fake ("W&B": "the fake W&B server").
    serves: ClassVar[str]

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[str] = []
        self.unknown: list[str] = []
        self.arrived = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()

    def start(self: _Fake) -> _Fake:
        handler = type("Handler", (self.handler,), {"server_of": self})
        server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True, name=f"fake {self.serves}").start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self.arrived:
            connections, self._connections = set(self._connections), set()
        for connection in connections:  # the client's keep-alive connections: cut, as a server going away does
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self: _Fake) -> _Fake:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def wait(self, predicate: Any, timeout: float, what: str) -> Any:
        """Wait until ``predicate()`` is true (checked at each request that arrives); its value."""
        with self.arrived:
            found = self.arrived.wait_for(predicate, timeout=timeout)
        assert found, f"the fake {self.serves} server did not see {what} within {timeout} s: {self.requests[-20:]}"
        return found
