"""``mrunner.trackers.unanswered``, the one check of a tracker's server at submission: any answer counts for a
server asked where it answers without credentials (W&B, Neptune), only a success for a health check (MLflow),
and a server that is not there is named by why."""

from __future__ import annotations

from mrunner import trackers
from tests.fake_loopback import FakeLoopbackHandler, FakeLoopbackServer


class _Refusing(FakeLoopbackHandler):
    def do_GET(self) -> None:
        with self.server_of.arrived:
            self.server_of.requests.append(self.path)
            self.server_of.arrived.notify_all()
        self.send_json(404, {"error": "no such thing"})


class FakeRefusingServer(FakeLoopbackServer):
    """A server there that answers every request 404."""

    serves = "refusing"
    handler = _Refusing


def test_an_http_error_is_an_answer_unless_only_a_success_is():
    with FakeRefusingServer() as server:
        assert trackers.unanswered(f"{server.url}/healthz", 5) is None
        assert trackers.unanswered(f"{server.url}/health", 5, errors_answer=False) == "Not Found"
        assert server.requests == ["/healthz", "/health"]


def test_a_server_that_is_not_there_is_named_by_why():
    server = FakeRefusingServer()  # its port chosen, nothing listening
    assert "Connection refused" in (trackers.unanswered(f"{server.url}/healthz", 5) or "")
    assert "Connection refused" in (trackers.unanswered(f"{server.url}/health", 5, errors_answer=False) or "")
