"""``FakeNeptuneServer``: a fake of a Neptune server, on loopback, for the real ``neptune`` 1.x client.

Why a fake: Neptune's hosted service shut down (2026-03-05), and a self-hosted Neptune server cannot run on the
test machine (no image of it here, no network), while mrunner's live Neptune tracking is the real client (its
async mode: a thread that sends queued operations over HTTP) talking to a server. This serves what that client
asks for a run, found by reading the client (``neptune/internal/backends/hosted_client.py``,
``hosted_neptune_backend.py``, ``hosted_file_operations.py``): the swagger specs its ``bravado`` clients are
built from, covering only the operations it calls (``getClientConfig``, ``exchangeApiToken`` and the OAuth
token's refresh, ``getProject``, ``createExperiment``, ``getExperiment``, ``getExperimentAttributes``,
``executeOperations``, ``ping``, the uploads of small files such as the script's source), and answers them as
Neptune does where mrunner depends on it: a run created again with the same ``customId`` in a project is the
same run (its fields read back with their types); a float series takes only points at steps above its last
one (Neptune's "steps must be strictly increasing", answered as an error of that operation, the rest of the
batch kept). It keeps what a test asserts: each run's fields (``parameters/...``, ``sys/name``), tags, series'
points, the points it refused, uploaded files, and the API tokens presented. Anything else is answered 404 and
kept in ``unknown`` (the client's websocket for the app's signals is refused, as if the server had none).
So the tests hold for the client against what the fake answers, not for a Neptune server itself.

Point the client at it with ``token()`` as ``NEPTUNE_API_TOKEN`` (base64 JSON naming ``api_address``, as
Neptune's tokens do) and ``OAUTHLIB_INSECURE_TRANSPORT=1`` in the environment (the client's OAuth session
refuses plain http otherwise; a real server is https). ``stop()`` is the server gone (the listening socket
closed, open connections cut), ``start()`` again is it back on the same port with the same runs.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fake_loopback import FakeLoopbackHandler, FakeLoopbackServer

WORKSPACE = "fake"


def _model(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


_STRING = {"type": "string"}
_REF = "#/definitions/"


def _op(operation: str, parameters: list[dict[str, Any]], result: str | None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": "ok"}
    if result is not None:
        answer["schema"] = {"$ref": _REF + result} if not result.startswith("[") else {
            "type": "array", "items": {"$ref": _REF + result[1:-1]}}  # fmt: skip
    return {"operationId": operation, "parameters": parameters, "responses": {"200": answer}}


def _query(name: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "type": "string"}


def _header(name: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "type": "string"}


def _body(name: str) -> dict[str, Any]:
    return {"name": name, "in": "body", "required": True, "schema": {}}


def _spec(paths: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    return {
        "swagger": "2.0",
        "info": {"title": "fake Neptune", "version": "1"},
        "basePath": "/",
        "schemes": ["http"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "paths": paths,
        "definitions": definitions,
    }


BACKEND_SPEC = _spec(
    {
        "/api/backend/v1/clients/config": {
            "get": _op("getClientConfig", [_header("X-Neptune-Api-Token"), _query("alpha")], "ClientConfig")
        },
        "/api/backend/v1/authorization/oauth-token": {
            "get": _op("exchangeApiToken", [_header("X-Neptune-Api-Token")], "NeptuneOauthToken")
        },
        "/api/backend/v1/projects/get": {"get": _op("getProject", [_query("projectIdentifier")], "Project")},
    },
    {
        "ClientConfig": _model(
            apiUrl=_STRING,
            applicationUrl=_STRING,
            pyLibVersions={"$ref": _REF + "Versions"},
            sysNameSetByBackend={"type": "boolean"},
        ),
        "Versions": _model(minRecommendedVersion=_STRING, minCompatibleVersion=_STRING, maxCompatibleVersion=_STRING),
        "NeptuneOauthToken": _model(accessToken=_STRING, refreshToken=_STRING, username=_STRING),
        "Project": _model(
            id=_STRING, name=_STRING, organizationName=_STRING, projectKey=_STRING, version={"type": "integer"}
        ),
    },
)

LEADERBOARD_SPEC = _spec(
    {
        "/api/leaderboard/v1/experiments": {
            "post": _op(
                "createExperiment", [_body("experimentCreationParams"), _header("X-Neptune-CliVersion")], "Experiment"
            ),
            "get": _op("getExperiment", [_query("experimentId")], "Experiment"),
        },
        "/api/leaderboard/v1/experiments/attributes": {
            "get": _op("getExperimentAttributes", [_query("experimentId")], "Attributes")
        },
        "/api/leaderboard/v1/experiments/operations": {
            "post": _op("executeOperations", [_query("experimentId"), _body("operations")], "[Error]")
        },
        "/api/leaderboard/v1/experiments/ping": {"post": _op("ping", [_query("experimentId")], None)},
        # files (the script's source, by default): uploaded as raw bodies to these operations' paths; the
        # chunked ones (files above Neptune's single-part size) are declared, as the client looks them all up
        # at once, and not served
        **{
            f"/api/leaderboard/v1/storage/{name}": {"post": _op(name, [], None)}
            for name in (
                "uploadFileSetAttributeTar",
                "fileSetFileUpload",
                "fileSetFileMultipartUploadStart",
                "fileSetFileMultipartUploadFinish",
                "fileSetFileMultipartUploadPart",
                "fileAtomUpload",
                "fileAtomMultipartUploadStart",
                "fileAtomMultipartUploadFinish",
                "fileAtomMultipartUploadPart",
            )
        },
    },
    {
        "Experiment": _model(
            id=_STRING,
            type=_STRING,
            shortId=_STRING,
            organizationName=_STRING,
            projectName=_STRING,
            trashed={"type": "boolean"},
        ),
        "Attributes": _model(attributes={"type": "array", "items": {"$ref": _REF + "Attribute"}}),
        "Attribute": _model(name=_STRING, type=_STRING),
        "Error": _model(errorDescription=_STRING),
    },
)


@dataclass
class FakeNeptuneRun:
    """What the server holds of one run."""

    id: str
    short_id: str
    project: str
    custom_id: str | None
    #: Single values by path (``parameters/lr``, ``sys/name``...), as assigned.
    fields: dict[str, Any] = field(default_factory=dict)
    #: Their attribute types (``string``, ``int``...), as the client reads them back when it joins the run again.
    kinds: dict[str, str] = field(default_factory=dict)
    #: String sets by path (``sys/tags``).
    sets: dict[str, list[str]] = field(default_factory=dict)
    #: Float series by path: (step, value, time in ms) as taken.
    series: dict[str, list[tuple[float, float, int]]] = field(default_factory=dict)
    #: Uploaded files' bytes by attribute (and path in a file set: ``source_code/files/train.py``; a tar of
    #: several under the attribute alone).
    files: dict[str, bytes] = field(default_factory=dict)
    #: Points refused (a step not above the series' last), by path.
    refused: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    creations: int = 0

    def points(self, path: str) -> list[tuple[float, float]]:
        """(step, value) of the series at ``path``, in the order taken."""
        return [(step, value) for step, value, _ in self.series.get(path, [])]

    def parameters(self) -> dict[str, Any]:
        return {
            path[len("parameters/") :]: value for path, value in self.fields.items() if path.startswith("parameters/")
        }

    @property
    def name(self) -> Any:
        return self.fields.get("sys/name")

    @property
    def tags(self) -> list[str]:
        return self.sets.get("sys/tags", [])


class _Handler(FakeLoopbackHandler):
    server_of: FakeNeptuneServer

    def _handle(self, method: str) -> None:
        fake = self.server_of
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = urlsplit(self.path)
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        kind = self.headers.get("Content-Type") or ""
        body: Any = data  # a file's upload: its bytes
        if "json" in kind:
            body = json.loads(data) if data else None
        elif "form" in kind:  # the OAuth token refresh
            body = {name: values[-1] for name, values in parse_qs(data.decode()).items()}
        with fake.arrived:
            status, answer = fake.answer(method, parts.path, query, self.headers, body)
            fake.arrived.notify_all()
        self.send_json(status, answer)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


class FakeNeptuneServer(FakeLoopbackServer):
    """Fake Neptune server (see the module's text): ``url``, ``token()``, ``runs`` (by id), ``by_custom_id()``,
    ``start()``, ``stop()``, ``requests`` (each operation, in order), ``arrived`` (notified at each), ``wait()``."""

    serves = "Neptune"
    handler = _Handler

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[str, FakeNeptuneRun] = {}
        self.tokens: set[str] = set()  # the API tokens the client presented

    def token(self, key: str = "k") -> str:
        """An API token for this server, as Neptune's are: base64 of JSON naming the API's address (``key``,
        a test's secret, makes it unique)."""
        return base64.b64encode(
            json.dumps({"api_address": self.url, "api_url": self.url, "api_key": key}).encode()
        ).decode()

    def by_custom_id(self, custom_id: str) -> FakeNeptuneRun:
        found = [run for run in self.runs.values() if run.custom_id == custom_id]
        assert len(found) == 1, f"{len(found)} runs with custom id {custom_id}: {list(self.runs)}"
        return found[0]

    # -- answers ----------------------------------------------------------------------------------------------

    def answer(self, method: str, path: str, query: dict[str, str], headers: Any, body: Any) -> tuple[int, Any]:
        if path == "/api/backend/swagger.json":
            return 200, BACKEND_SPEC
        if path == "/api/leaderboard/swagger.json":
            return 200, LEADERBOARD_SPEC
        operation = _OPERATIONS.get((method, path))
        self.requests.append(operation or f"{method} {path}")
        if operation == "refreshToken":  # the client's OAuth session, at its first request and before expiry
            return 200, {"access_token": _jwt(self.url), "refresh_token": "refresh", "token_type": "bearer",
                         "expires_in": 86400}  # fmt: skip
        if operation is None and path.startswith("/api/notifications/"):
            return 404, {"title": "no signals"}  # the client's websocket for signals from the app (abort): none
        if operation is None:
            self.unknown.append(f"{method} {path}")
            return 404, {"title": "not found"}
        if headers.get("X-Neptune-Api-Token"):
            self.tokens.add(headers["X-Neptune-Api-Token"])
        if operation == "getClientConfig":
            return 200, {
                "apiUrl": self.url,
                "applicationUrl": self.url,
                "pyLibVersions": {"minRecommendedVersion": "1.0.0", "minCompatibleVersion": "1.0.0",
                                  "maxCompatibleVersion": "1.99.0"},
                "sysNameSetByBackend": False,
            }  # fmt: skip
        if operation == "exchangeApiToken":
            return 200, {"accessToken": _jwt(self.url), "refreshToken": "refresh", "username": WORKSPACE}
        if operation == "getProject":
            project = query.get("projectIdentifier", "")
            workspace, _, name = project.rpartition("/")
            return 200, {"id": project, "name": name, "organizationName": workspace or WORKSPACE,
                         "projectKey": "FAKE", "version": 2}  # fmt: skip
        if operation == "createExperiment":
            return 200, self._experiment(self._create(body))
        run = self.runs.get(query.get("experimentId") or query.get("experimentIdentifier") or "")
        if run is None:
            return 404, {"title": "no such run", "errorType": "EXPERIMENT_NOT_FOUND"}
        if operation == "getExperiment":
            return 200, self._experiment(run)
        if operation == "getExperimentAttributes":
            names = list(run.kinds.items())
            names += [(path, "stringSet") for path in run.sets] + [(path, "floatSeries") for path in run.series]
            return 200, {"attributes": [{"name": path, "type": kind} for path, kind in names]}
        if operation == "executeOperations":
            return 200, self._execute(run, body)
        if operation in ("fileSetFileUpload", "fileAtomUpload", "uploadFileSetAttributeTar"):
            where = "/".join(part for part in (query.get("attribute"), query.get("subPath")) if part)
            run.files[where] = body
            return 200, {"errors": []}
        return 200, None  # ping

    def _create(self, params: dict[str, Any]) -> FakeNeptuneRun:
        project = str(params.get("projectIdentifier"))
        custom = params.get("customId")
        for run in self.runs.values():
            if custom and run.custom_id == custom and run.project == project:
                run.creations += 1
                return run
        short = f"FAKE-{len(self.runs) + 1}"
        run = FakeNeptuneRun(id=f"run-{len(self.runs) + 1}", short_id=short, project=project, custom_id=custom)
        run.creations = 1
        self.runs[run.id] = run
        return run

    def _experiment(self, run: FakeNeptuneRun) -> dict[str, Any]:
        return {"id": run.id, "type": "run", "shortId": run.short_id, "organizationName": WORKSPACE,
                "projectName": run.project.rpartition("/")[2], "trashed": False}  # fmt: skip

    def _execute(self, run: FakeNeptuneRun, operations: list[dict[str, Any]]) -> list[dict[str, str]]:
        errors = []
        for operation in operations:
            path = operation["path"]
            if "logFloats" in operation:
                series = run.series.setdefault(path, [])
                for entry in operation["logFloats"].get("entries") or []:
                    last = series[-1][0] if series else None
                    step = entry.get("step")
                    step = (0.0 if last is None else last + 1) if step is None else float(step)
                    if last is not None and step <= last:
                        run.refused.setdefault(path, []).append((step, entry["value"]))
                        errors.append({"errorDescription": f"X-coordinates (step) must be strictly increasing for "
                                                           f"series attribute: {path}. Invalid point: {step}"})  # fmt: skip
                        continue
                    series.append((step, entry["value"], int(entry.get("timestampMilliseconds") or 0)))
            elif "insertStrings" in operation:
                kept = run.sets.setdefault(path, [])
                kept.extend(value for value in operation["insertStrings"]["values"] if value not in kept)
            else:
                for kind, content in operation.items():
                    if kind.startswith("assign") and isinstance(content, dict):
                        run.fields[path] = content.get("value", content.get("valueMilliseconds"))
                        run.kinds[path] = kind[len("assign") :].lower()  # string, float, int, bool, datetime
        return errors


_OPERATIONS = {
    ("GET", "/api/backend/v1/clients/config"): "getClientConfig",
    ("GET", "/api/backend/v1/authorization/oauth-token"): "exchangeApiToken",
    ("GET", "/api/backend/v1/projects/get"): "getProject",
    ("POST", "/api/leaderboard/v1/experiments"): "createExperiment",
    ("GET", "/api/leaderboard/v1/experiments"): "getExperiment",
    ("GET", "/api/leaderboard/v1/experiments/attributes"): "getExperimentAttributes",
    ("POST", "/api/leaderboard/v1/experiments/operations"): "executeOperations",
    ("POST", "/api/leaderboard/v1/experiments/ping"): "ping",
    ("POST", "/auth/realms/fake/protocol/openid-connect/token"): "refreshToken",
    **{
        ("POST", f"/api/leaderboard/v1/storage/{name}"): name
        for name in ("uploadFileSetAttributeTar", "fileSetFileUpload", "fileAtomUpload")
    },
}


def _jwt(issuer: str) -> str:
    """An access token the client decodes without checking its signature: when it expires (a day on), who
    issued it (where it would refresh it), and the client's name."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {"exp": int(time.time()) + 86400, "iss": f"{issuer}/auth/realms/fake", "azp": "neptune-client"}
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"
