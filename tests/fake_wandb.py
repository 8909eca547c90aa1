"""``FakeWandbServer``: a fake of the W&B backend, on loopback, for the real ``wandb`` client in online mode.

Why a fake: no W&B server can run on the test machine (W&B's server, the ``wandb/local`` image, is closed and
not available here, and there is no network to reach wandb.ai), while mrunner's live W&B tracking is online
mode: the real client (its Go service, ``wandb-core``) talking HTTP to a server. This answers just the requests
that client makes for a run (found by logging what it asked: GraphQL ``RunResumeStatus``, ``UpsertBucket``,
``ServerFeaturesQuery``, ``CreateRunFiles``..., the run's file stream, the uploads of its files) and keeps what a
test asserts: each run's name, group, config, tags, and its history rows at the offsets the client sent them
(a resent chunk lands where it landed before, as on W&B's server). Everything else is answered empty, and
recorded in ``unknown`` so that a test sees a request the fake does not know. Point the client at it with
``WANDB_BASE_URL=server.url`` and any 40-character ``WANDB_API_KEY``. ``stop()`` is the server gone (listening
socket closed, open connections cut), ``start()`` again is it back on the same port with the same runs.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field
from typing import Any

from tests.fake_loopback import FakeLoopbackHandler, FakeLoopbackServer


@dataclass
class FakeRun:
    """What the server holds of one run."""

    id: str
    project: str
    entity: str
    name: str | None = None
    group: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    upserts: int = 0
    #: The history file (``wandb-history.jsonl``) by line offset, each line a row as sent.
    lines: dict[int, dict[str, Any]] = field(default_factory=dict)
    completed: bool = False

    @property
    def history(self) -> list[dict[str, Any]]:
        return [self.lines[offset] for offset in sorted(self.lines)]

    def points(self, metric: str) -> list[tuple[int, float]]:
        """(step, value) of ``metric``, in the order of the history file."""
        return [(row["_step"], row[metric]) for row in self.history if metric in row]

    def parameters(self) -> dict[str, Any]:
        """The config as the script gave it (W&B keeps each value under ``value``; ``_wandb`` is its own)."""
        return {key: item.get("value") for key, item in self.config.items() if key != "_wandb"}


class _Handler(FakeLoopbackHandler):
    server_of: FakeWandbServer

    def _body(self) -> bytes:
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return gzip.decompress(data) if self.headers.get("Content-Encoding") == "gzip" else data

    def do_POST(self) -> None:
        fake = self.server_of
        data = self._body()
        with fake.arrived:
            if self.headers.get("Authorization"):
                fake.authorizations.add(self.headers["Authorization"])
            streamed = re.fullmatch(r"/files/[^/]+/[^/]+/([^/]+)/file_stream", self.path)
            if self.path == "/graphql":
                answer = fake._graphql(json.loads(data))
            elif streamed:
                answer = fake._file_stream(streamed.group(1), json.loads(data))
            else:  # W&B's own telemetry (/sdk/otel/...), and anything else: taken, kept nowhere
                fake.requests.append(f"POST {self.path}")
                answer = {}
            fake.arrived.notify_all()
        self.send_json(200, answer)

    def do_PUT(self) -> None:  # a run file's upload, to the URL CreateRunFiles gave
        self._body()
        with self.server_of.arrived:
            self.server_of.requests.append(f"PUT {self.path}")
            self.server_of.arrived.notify_all()
        self.send_json(200, None)

    def do_GET(self) -> None:
        with self.server_of.arrived:
            self.server_of.requests.append(f"GET {self.path}")  # a health check: any answer is one
            self.server_of.arrived.notify_all()
        self.send_json(404, {})


class FakeWandbServer(FakeLoopbackServer):
    """Fake W&B server (see the module's text): ``url``, ``runs`` (by id), ``start()``, ``stop()``, ``requests``
    (each request's path or GraphQL operation, in order), and ``arrived`` (a Condition notified at each)."""

    serves = "W&B"
    handler = _Handler

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[str, FakeRun] = {}
        self.authorizations: set[str] = set()

    # -- answers ----------------------------------------------------------------------------------------------

    def _graphql(self, body: dict[str, Any]) -> dict[str, Any]:
        query = body.get("query") or ""
        variables = body.get("variables") or {}
        found = re.search(r"(?:query|mutation)\s+(\w+)", query)
        operation = body.get("operationName") or (found.group(1) if found else "?")
        self.requests.append(operation)
        if operation == "RunResumeStatus":
            run = self.runs.get(variables.get("name") or "")
            return {"data": {"model": {"id": "p", "name": variables.get("project"), "entity": _entity(variables),
                                       "bucket": run and _bucket(run)}}}  # fmt: skip
        if operation == "UpsertBucket":
            return {"data": {"upsertBucket": self._upsert(variables)}}
        if operation == "CreateRunFiles":
            files = [
                {"name": name, "uploadUrl": f"{self.url}/storage/{variables.get('run')}/{name}"}
                for name in variables.get("files") or []
            ]
            return {"data": {"createRunFiles": {"runID": variables.get("run"), "uploadHeaders": [], "files": files}}}
        if operation == "ServerFeaturesQuery":
            return {"data": {"serverInfo": {"features": []}}}
        if operation == "Viewer" or "viewer" in query:
            return {"data": {"viewer": {"id": "v", "entity": "fake", "username": "fake", "flags": "{}",
                                        "teams": {"edges": []}}}}  # fmt: skip
        if operation == "RunStoppedStatus":
            return {"data": {"project": {"run": {"stopped": False}}}}
        if operation == "OrganizationCoreWeaveOrganizationID":
            return {"data": {"entity": None}}
        self.unknown.append(operation)
        return {"data": {}}

    def _upsert(self, variables: dict[str, Any]) -> dict[str, Any]:
        identity = variables.get("name") or ""
        inserted = identity not in self.runs
        run = self.runs.setdefault(
            identity, FakeRun(identity, variables.get("project") or "uncategorized", variables.get("entity") or "fake")
        )
        run.upserts += 1
        if variables.get("displayName"):
            run.name = variables["displayName"]
        if variables.get("groupName"):
            run.group = variables["groupName"]
        if variables.get("tags") is not None:
            run.tags = list(variables["tags"])
        if variables.get("config"):
            run.config.update(json.loads(variables["config"]))
        bucket = _bucket(run)
        bucket["project"] = {"id": "p", "name": run.project, "entity": {"id": "e", "name": run.entity}}
        return {"bucket": bucket, "inserted": inserted}

    def _file_stream(self, identity: str, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(f"file_stream {identity}")
        run = self.runs.get(identity)
        if run is None:
            self.unknown.append(f"file_stream of an unknown run {identity}")
            return {}
        history = (body.get("files") or {}).get("wandb-history.jsonl")
        if history:
            for at, line in enumerate(history.get("content") or [], start=int(history.get("offset") or 0)):
                run.lines[at] = json.loads(line)
        if body.get("complete"):
            run.completed = True
        return {"exitcode": None, "limits": {}}


def _entity(variables: dict[str, Any]) -> dict[str, str]:
    return {"id": "e", "name": variables.get("entity") or "fake"}


def _bucket(run: FakeRun) -> dict[str, Any]:
    """A run as the GraphQL ``bucket`` the client resumes from: how many history lines the server has, the last
    of them (where the client's steps go on), config and tags."""
    tail = [json.dumps(run.lines[offset]) for offset in sorted(run.lines)[-1:]]
    summary = dict(run.lines[max(run.lines)]) if run.lines else {}
    return {
        "id": f"bucket-{run.id}",
        "name": run.id,
        "displayName": run.name,
        "description": "",
        "summaryMetrics": json.dumps(summary),
        "logLineCount": 0,
        "historyLineCount": max(run.lines) + 1 if run.lines else 0,
        "eventsLineCount": 0,
        "historyTail": json.dumps(tail),
        "eventsTail": "[]",
        "config": json.dumps(run.config),
        "tags": run.tags,
        "notes": None,
        # what the client asks of the config W&B keeps (``wandbConfig(keys: ["t"])``): its own ``_wandb.t``,
        # there once the client sent the config of a started run; without it, a run is not taken as started
        "wandbConfig": json.dumps({"t": started}) if (started := _wandb_t(run)) is not None else None,
        "sweepName": None,
    }


def _wandb_t(run: FakeRun) -> Any:
    inner = run.config.get("_wandb")
    return inner.get("value", {}).get("t") if isinstance(inner, dict) else None
