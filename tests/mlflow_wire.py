"""What mrunner sends to the real MLflow server, seen on the wire: a pass-through HTTP proxy on loopback in front of
it (tests/services/mlflow), for tests that must know what was *sent*, not only what the server kept (the server
drops a point sent twice, so its store alone cannot show that an upload sent each point once).

    with MlflowWire(mlflow_service["tracking_uri"]) as wire:
        ... a context whose mlflow_tracking_uri is wire.uri ...
        wire.points()          # every metric value sent, (run id, key, step, value, timestamp), in order
        wire.hold_after(2)     # from the third log_batch with metrics on: forward it, then keep its answer
        wire.held              # how many answers are kept back now (the server already stored them)
        wire.release()         # answer them all, and pass everything through again

Every request goes to the server as it came and its answer comes back as the server gave it, but for answers held.
"""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

LOG_BATCH = "/api/2.0/mlflow/runs/log-batch"


class MlflowWire:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.lock = threading.Lock()
        self.batches: list[dict[str, Any]] = []  # the bodies of log_batch requests that carried metrics
        self.held = 0
        self._hold_from: int | None = None
        self._released = threading.Event()
        self._released.set()
        wire = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                connection = http.client.HTTPConnection(*wire.upstream, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                content = answer.read()
                connection.close()
                hold = False
                if self.path.split("?")[0] == LOG_BATCH and answer.status == 200:
                    sent = json.loads(body or b"{}")
                    if sent.get("metrics"):
                        with wire.lock:
                            wire.batches.append(sent)
                            if wire._hold_from is not None and len(wire.batches) > wire._hold_from:
                                wire.held += 1
                                hold = True
                if hold:
                    wire._released.wait()
                try:
                    self.send_response(answer.status)
                    for key, value in answer.getheaders():
                        if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                except OSError:
                    pass  # the client is gone (killed while its answer was held)

            do_GET = do_POST = do_PATCH = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> MlflowWire:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def hold_after(self, count: int) -> None:
        """Forward every request, but keep back the answer of each log_batch with metrics after the first
        ``count`` (counted from the start): as if the client were cut off once the server stored it."""
        with self.lock:
            self._released.clear()
            self._hold_from = count

    def release(self) -> None:
        with self.lock:
            self._hold_from = None
            self._released.set()

    def points(self) -> list[tuple[str, str, int, float, int]]:
        with self.lock:
            return [
                (batch["run_id"], m["key"], int(m.get("step", 0)), float(m["value"]), int(m["timestamp"]))
                for batch in self.batches
                for m in batch["metrics"]
            ]
