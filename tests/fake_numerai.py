"""A loopback stand-in for Numerai's API that the real numerapi client talks to (no mocks of numerapi).

`FakeNumerai` is a threaded stdlib HTTP server on 127.0.0.1 (ephemeral port). It answers numerapi 2.20.8's
GraphQL POSTs by the root field each query selects — `listDatasets`, `dataset`, `account { models }` (with each
model's assigned `computePickleUpload`), `computePickleDockerImages`, `computePickleDataVersions`,
`computePickleUploadAuth`, `createComputePickleUpload`, `computePickles`, `assignPickleToModel`, `triggerLogs`,
`diagnostics`, `addModel`, `rounds(number: 0)` (the current round), `submissions`, `submissionScores`
(numerapi 3.x) and `v2RoundModelPerformances` (numerapi 2.x) — checks the header numerapi sends
(`Authorization: Token PUBLIC$SECRET`) on the authenticated ones (those numerapi sends it on: scores are
public, as on numer.ai), serves data files over GET with Content-Length, and takes the pickle's PUT on a
pre-signed-looking URL on itself. Everything it receives is recorded for the tests to assert on, and it
can be told to fail: a file answering an HTTP error or cut off mid-way, the PUT answering 500 N times or
always, bad keys answered as a GraphQL error (HTTP 200) or as HTTP 401, any root field answering a GraphQL error.

Model uploads behave as Numerai's do in 2026: create does not assign; each created pickle's validation reads
"pending" for `validation_polls` reads of `computePickles`, then ends as `validation_outcome` says ("validated",
"failed" with `failure_statuses` and `failure_logs` on its trigger, or "never": pending forever); assignment is its own
call (`assignPickleToModel`), after which the account's models show the new pickle.

The `fake_numerai` fixture starts one per test and sets `NUMERAI_API_URL` to it.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

TOURNAMENT_CLASSIC = 8
# The root field of a query is the one named first in it (`v2RoundModelPerformances` selects a nested
# `submissionScores { ... }`, which must not be taken for the root field of the same name).
ROOT_FIELDS = (
    "createComputePickleUpload",
    "assignPickleToModel",
    "addModel",
    "computePickles",
    "triggerLogs",
    "diagnostics",
    "computePickleUploadAuth",
    "computePickleDockerImages",
    "computePickleDataVersions",
    "listDatasets",
    "dataset",
    "account",
    "v2RoundModelPerformances",
    "submissionScores",
    "submissions",
    "rounds",
)
AUTHENTICATED = {
    "account", "computePickleDockerImages", "computePickleDataVersions",
    "computePickleUploadAuth", "createComputePickleUpload", "submissions",
    "computePickles", "assignPickleToModel", "addModel", "triggerLogs", "diagnostics",
}
SEGFAULT = "Segmentation fault! Ensure python and library versions match our environment."
NO_OPEN_ROUNDS = "No currently open rounds!"
BAD_AUTH_MESSAGE = "Your session is invalid or has expired."
NO_ROUND_MESSAGE = "Current round not open for submissions"


def iso(moment: datetime) -> str:
    """A UTC time the way Numerai's API writes it: "2026-11-28T13:00:00Z"."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _default_open_time() -> str:
    return iso(datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2))


def default_docker_images() -> dict[str, str]:
    """Names and ids like Numerai's model-upload images."""
    return {f"Python 3.{minor}": str(uuid.uuid5(uuid.NAMESPACE_URL, f"image-3.{minor}")) for minor in (9, 10, 11, 12, 13)}


def pickle_record(pickle_id: str, filename: str, model_id: str | None, *, status: str = "validated",
                  image: str = "Python 3.11", data_version: str = "v5.3", inserted_at: str | None = None) -> dict[str, Any]:
    """A `ComputePickleUpload` as the fake keeps it (already validated unless `status` says otherwise)."""
    when = inserted_at or _default_open_time()
    return {"id": pickle_id, "filename": filename, "modelId": model_id, "assignedModelSlots": [],
            "validationStatus": status, "triggerStatus": None, "diagnosticsStatus": None, "diagnosticsId": None,
            "dockerImageName": image, "dataVersion": data_version, "insertedAt": when, "updatedAt": when,
            "triggers": [], "reads": 0}


def default_data_versions() -> dict[str, str]:
    """Names and ids of the data versions a pickle can declare."""
    return {name: str(uuid.uuid5(uuid.NAMESPACE_URL, f"data-{name}")) for name in ("v4.3", "v5.0", "v5.1", "v5.2", "v5.3")}


@dataclass
class FakeNumerai:
    """Configuration, fault switches and records of one fake Numerai API (see module docstring)."""

    public_id: str = "FAKEPUBLICID0123456789"
    secret_key: str = "FAKESECRET-s3cr3t-do-not-print-9f8e7d"
    models: dict[str, str] = field(default_factory=lambda: {"my_model": str(uuid.uuid4()), "other_model": str(uuid.uuid4())})
    files: dict[str, bytes] = field(default_factory=dict)
    docker_images: dict[str, str] = field(default_factory=default_docker_images)
    data_versions: dict[str, str] = field(default_factory=default_data_versions)
    # the tournament: the current round (None: no round open, answered as Numerai does, with a GraphQL error),
    # its open and staking-close times, and per model name its submissions ({"id", "filename", "insertedAt"})
    # and score rows ({"round", "displayName", "value", "day", "resolved"}; served in both APIs' shapes)
    round_number: int | None = 1234
    round_open_time: str = field(default_factory=_default_open_time)
    round_close_staking_time: str | None = None   # None: an hour after round_open_time
    submissions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    scores: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # faults
    bad_auth_status: int = 200            # 200: GraphQL error body (HTTP 200); else that HTTP status
    file_status: dict[str, int] = field(default_factory=dict)   # dataset name -> HTTP status of its GET
    truncate_files: set[str] = field(default_factory=set)       # dataset names cut off half-way
    # dataset name -> faults its next GETs answer, one each, in order (an HTTP status, or "cut" half-way), then the file
    file_faults: dict[str, list[int | str]] = field(default_factory=dict)
    put_failures: int = 0                  # answer 500 to this many PUTs, then accept
    put_always_status: int | None = None   # answer every PUT with this status
    fail_fields: dict[str, str] = field(default_factory=dict)  # root field -> GraphQL error message it answers
    # the same, only once a pickle has been assigned (a read that fails between the assignment and its verification)
    fail_fields_after_assignment: dict[str, str] = field(default_factory=dict)
    malformed_fields: dict[str, Any] = field(default_factory=dict)  # root field -> data answered as is (wrong shape)
    # root fields whose request is carried out but whose answer never arrives (the connection closes first)
    lost_replies: set[str] = field(default_factory=set)
    # Numerai's side of model uploads: pickles by id, which pickle each model runs, how validations end
    pickles: dict[str, dict[str, Any]] = field(default_factory=dict)
    assigned: dict[str, str] = field(default_factory=dict)        # model name -> pickle id it runs
    experimental_images: set[str] = field(default_factory=set)    # image names marked experimental
    default_image: str | None = "Python 3.12"
    validation_polls: int = 1              # reads of computePickles that answer "pending" before the outcome
    validation_outcome: str = "validated"  # "validated", "failed" or "never"
    failure_statuses: list[tuple[str, str | None]] = field(default_factory=lambda: [
        ("pending", None), ("running", None), ("failed", SEGFAULT)])
    failure_logs: list[str] = field(default_factory=lambda: [
        "Loading model.pkl", "Running predict on live features", "Fatal Python error: Segmentation fault"])
    no_open_round: bool = False            # a validated pickle's trigger says "No currently open rounds!"
    trigger_logs: dict[str, list[str]] = field(default_factory=dict)   # trigger id -> its log lines
    diagnostics_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    # records
    graphql: list[dict[str, Any]] = field(default_factory=list)  # {"field", "variables", "authorization"}
    gets: list[str] = field(default_factory=list)
    put_attempts: int = 0
    puts: dict[str, bytes] = field(default_factory=dict)         # upload key -> bytes stored
    uploads: list[dict[str, Any]] = field(default_factory=list)  # createComputePickleUpload variables + id
    assignments: list[dict[str, Any]] = field(default_factory=list)  # assignPickleToModel variables

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeNumerai:
        """Bind 127.0.0.1 on an ephemeral port and serve in a daemon thread."""
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-numerai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut the server down and close its socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        """The API endpoint to give numerapi (NUMERAI_API_URL)."""
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fields_called(self) -> list[str]:
        """Root fields of the GraphQL requests received, in order."""
        return [call["field"] for call in self.graphql]

    # ------------------------------------------------------------------ GraphQL
    def answer(self, query: str, variables: dict[str, Any], authorization: str | None) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) for one GraphQL request."""
        root = _root_field(query)
        with self._lock:
            self.graphql.append({"field": root, "variables": variables, "authorization": authorization})
        if root is None:
            return 200, _error("Cannot query field: unknown operation", None)
        if root in AUTHENTICATED:
            expected = f"Token {self.public_id}${self.secret_key}"
            if authorization is None:
                return 200, _error("You must be authenticated to perform this action.", root)
            if authorization != expected:
                if self.bad_auth_status != 200:
                    return self.bad_auth_status, {"errors": [{"message": "Unauthorized"}]}
                return 200, _error(BAD_AUTH_MESSAGE, root)
        if root in self.fail_fields:
            return 200, _error(self.fail_fields[root], root)
        if self.assignments and root in self.fail_fields_after_assignment:
            return 200, _error(self.fail_fields_after_assignment[root], root)
        if root in self.malformed_fields:
            return 200, {"data": {root: self.malformed_fields[root]}}
        handler = getattr(self, f"_q_{root}")
        try:
            return 200, {"data": {root: handler(variables)}}
        except _GraphQLError as exc:
            return 200, _error(str(exc), root)

    def _q_listDatasets(self, variables: dict[str, Any]) -> list[str]:
        return sorted(self.files)

    def _q_dataset(self, variables: dict[str, Any]) -> str:
        name = variables.get("filename")
        if name not in self.files:
            raise _GraphQLError(f"Dataset {name} not found")
        return f"{self.url}/files/{name}?X-Amz-Signature=fakesig"

    def _q_account(self, variables: dict[str, Any]) -> dict[str, Any]:
        return {"models": [{"id": mid, "name": name, "tournament": TOURNAMENT_CLASSIC,
                            "computePickleUpload": self._public(self.pickles.get(self.assigned.get(name, "")))}
                           for name, mid in self.models.items()]
                + [{"id": str(uuid.uuid4()), "name": "a_signals_model", "tournament": 11, "computePickleUpload": None}]}

    # ------------------------------------------------------------------ model uploads, Numerai's side
    def assign_existing(self, model_name: str, record: dict[str, Any]) -> dict[str, Any]:
        """Make `record` (see `pickle_record`) the pickle `model_name` runs, as an earlier upload left it."""
        with self._lock:
            self.pickles[record["id"]] = record
            self.assigned[model_name] = record["id"]
            record["assignedModelSlots"] = [self.models[model_name]]
        return record

    @staticmethod
    def _public(record: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if record is None else {k: v for k, v in record.items() if k != "reads"}

    def _advance(self, record: dict[str, Any]) -> None:
        """One read of a pending pickle: after `validation_polls` reads its validation ends as configured."""
        record["reads"] += 1
        if record["validationStatus"] != "pending" or record["reads"] <= self.validation_polls:
            return
        if self.validation_outcome == "never":
            return
        trigger_id = str(uuid.uuid4())
        now = iso(datetime.now(timezone.utc))
        if self.validation_outcome == "failed":
            statuses, record["validationStatus"], record["triggerStatus"] = self.failure_statuses, "failed", "failed"
            self.trigger_logs[trigger_id] = list(self.failure_logs)
        else:
            end = ("failed", NO_OPEN_ROUNDS) if self.no_open_round else ("succeeded", None)
            statuses = [("pending", None), ("running", None), end]
            record["validationStatus"], record["triggerStatus"] = "validated", end[0]
            self.trigger_logs[trigger_id] = ["Loading model.pkl", "predictions written"]
        record["triggers"].append({
            "id": trigger_id, "status": statuses[-1][0], "insertedAt": now,
            "statuses": [{"status": st, "description": desc, "insertedAt": now} for st, desc in statuses]})
        record["updatedAt"] = now

    def _q_computePickles(self, variables: dict[str, Any]) -> list[dict[str, Any]]:
        with self._lock:
            wanted = variables.get("id")
            records = [r for r in self.pickles.values() if wanted in (None, r["id"])]
            for record in records:
                self._advance(record)
            return [self._public(r) for r in records]

    def _q_assignPickleToModel(self, variables: dict[str, Any]) -> str:
        name = self._model_name(variables.get("modelId"))
        with self._lock:
            record = self.pickles.get(variables.get("pickleId") or "")
            if record is None:
                raise _GraphQLError("Pickle not found")
            self.assignments.append(dict(variables))
            old = self.pickles.get(self.assigned.get(name, ""))
            if old is not None:
                old["assignedModelSlots"] = [m for m in old["assignedModelSlots"] if m != variables["modelId"]]
            self.assigned[name] = record["id"]
            record["assignedModelSlots"] = [*record["assignedModelSlots"], variables["modelId"]]
        return "true"

    def _q_addModel(self, variables: dict[str, Any]) -> dict[str, Any]:
        if variables.get("tournament") != TOURNAMENT_CLASSIC:
            raise _GraphQLError("Invalid tournament")
        name = str(variables.get("name") or "")
        if not name or name in self.models:
            raise _GraphQLError("Model name is taken")
        with self._lock:
            self.models[name] = str(uuid.uuid4())
        return {"id": self.models[name], "name": name, "tournament": TOURNAMENT_CLASSIC}

    def _q_triggerLogs(self, variables: dict[str, Any]) -> list[dict[str, Any]]:
        lines = self.trigger_logs.get(variables.get("triggerId") or "", [])
        return [{"timestamp": 1_700_000_000 + i, "message": line} for i, line in enumerate(lines)]

    def _q_diagnostics(self, variables: dict[str, Any]) -> list[dict[str, Any]]:
        record = self.diagnostics_records.get(variables.get("id") or "")
        return [record] if record else []

    def _q_rounds(self, variables: dict[str, Any]) -> list[dict[str, Any]]:
        if variables.get("tournament") != TOURNAMENT_CLASSIC:
            raise _GraphQLError("Invalid tournament")
        if self.round_number is None:
            raise _GraphQLError(NO_ROUND_MESSAGE)
        close = self.round_close_staking_time or iso(_parse(self.round_open_time) + timedelta(hours=1))
        return [{"number": self.round_number, "openTime": self.round_open_time, "closeStakingTime": close}]

    def _model_name(self, model_id: Any) -> str:
        for name, mid in self.models.items():
            if mid == model_id:
                return name
        raise _GraphQLError("Model not found")

    def _q_submissions(self, variables: dict[str, Any]) -> list[dict[str, Any]]:
        name = self._model_name(variables.get("modelId"))
        return [{"id": s["id"], "filename": s["filename"], "insertedAt": s["insertedAt"]}
                for s in self.submissions.get(name, [])]

    def _score_rows(self, model_id: Any) -> list[dict[str, Any]]:
        return sorted(self.scores.get(self._model_name(model_id), []), key=lambda r: (-r["round"], r.get("day") or 0))

    def _q_submissionScores(self, variables: dict[str, Any]) -> list[dict[str, Any]]:
        """numerapi 3.x `submission_scores`: one entry per round, metric and day, newest rounds first."""
        if variables.get("tournament") not in (None, TOURNAMENT_CLASSIC):
            raise _GraphQLError("Invalid tournament")
        rows = self._score_rows(variables.get("modelId"))
        if variables.get("displayName") is not None:
            rows = [r for r in rows if r["displayName"] == variables["displayName"]]
        if variables.get("resolved") is not None:
            rows = [r for r in rows if bool(r.get("resolved")) == variables["resolved"]]
        if variables.get("lastNRounds") is not None:
            kept = sorted({r["round"] for r in rows}, reverse=True)[: variables["lastNRounds"]]
            rows = [r for r in rows if r["round"] in kept]
        return [{
            "roundId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"round-{r['round']}")), "submissionId": str(uuid.uuid4()),
            "roundNumber": r["round"], "roundResolveTime": _round_time(r["round"], days=33),
            "roundScoreTime": _round_time(r["round"], days=3), "roundCloseStakingTime": _round_time(r["round"], hours=1),
            "value": r["value"], "percentile": 0.5, "displayName": r["displayName"], "version": "1",
            "date": _round_time(r["round"], days=2 + (r.get("day") or 0)), "day": r.get("day"),
            "resolveDate": _round_time(r["round"], days=33), "resolved": r.get("resolved", False),
        } for r in rows]

    def _q_v2RoundModelPerformances(self, variables: dict[str, Any]) -> list[dict[str, Any]]:
        """numerapi 2.x `round_model_performances_v2`: one entry per round (newest first), its scores nested."""
        if variables.get("tournament") != TOURNAMENT_CLASSIC:
            raise _GraphQLError("Invalid tournament")
        rounds: dict[int, list[dict[str, Any]]] = {}
        for row in self._score_rows(variables.get("modelId")):
            rounds.setdefault(row["round"], []).append(row)
        return [{
            "atRisk": "10.0", "corrMultiplier": 0.5, "tcMultiplier": 0.0, "payoutMultipliers": [],
            "roundPayoutFactor": "1.0", "roundNumber": number, "roundOpenTime": _round_time(number),
            "roundResolveTime": _round_time(number, days=33), "roundResolved": all(r.get("resolved") for r in rows),
            "roundTarget": "cyrus",
            "submissionScores": [{
                "date": _round_time(number, days=2 + (r.get("day") or 0)), "day": r.get("day"),
                "displayName": r["displayName"], "payoutPending": "0.0", "payoutSettled": "0.0",
                "percentile": 0.5, "value": r["value"],
            } for r in rows],
        } for number, rows in rounds.items()]

    def _q_computePickleDockerImages(self, variables: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"name": name, "id": iid, "image": "numerai/model-upload", "tag": name.split()[-1],
                 "default": name == self.default_image, "experimental": name in self.experimental_images}
                for name, iid in self.docker_images.items()]

    def _q_computePickleDataVersions(self, variables: dict[str, Any]) -> list[dict[str, str]]:
        return [{"name": name, "id": vid} for name, vid in self.data_versions.items()]

    def _q_computePickleUploadAuth(self, variables: dict[str, Any]) -> dict[str, str]:
        model_id = variables.get("modelId")
        if model_id not in self.models.values():
            raise _GraphQLError("Model not found")
        key = f"{uuid.uuid4().hex}/{variables.get('filename')}"
        return {"filename": key, "url": f"{self.url}/put/{key}?X-Amz-Credential=fake&X-Amz-Signature=fakesig"}

    def _q_createComputePickleUpload(self, variables: dict[str, Any]) -> dict[str, str]:
        if variables.get("tournament") != TOURNAMENT_CLASSIC:
            raise _GraphQLError("Invalid tournament")
        if variables.get("modelId") not in self.models.values():
            raise _GraphQLError("Model not found")
        if variables.get("dockerImageId") not in (None, *self.docker_images.values()):
            raise _GraphQLError("Invalid docker image")
        if variables.get("dataVersionId") not in (None, *self.data_versions.values()):
            raise _GraphQLError("Invalid data version")
        upload_id = str(uuid.uuid4())
        images = {iid: name for name, iid in self.docker_images.items()}
        versions = {vid: name for name, vid in self.data_versions.items()}
        with self._lock:
            self.uploads.append({**variables, "id": upload_id, "stored": variables.get("filename") in self.puts})
            self.pickles[upload_id] = pickle_record(
                upload_id, variables["filename"], variables["modelId"], status="pending",
                image=images.get(variables.get("dockerImageId"), "Python 3.11"),
                data_version=versions.get(variables.get("dataVersionId"), "v5.3"), inserted_at=iso(datetime.now(timezone.utc)))
        return {"id": upload_id}

    # ------------------------------------------------------------------ PUT
    def put(self, key: str, body: bytes) -> int:
        """Status for a PUT of the pickle to `key`; stores the bytes when it answers 200."""
        with self._lock:
            self.put_attempts += 1
            if self.put_always_status is not None:
                return self.put_always_status
            if self.put_failures > 0:
                self.put_failures -= 1
                return 500
            self.puts[key] = body
        return 200


class _GraphQLError(Exception):
    pass


def _error(message: str, root: str | None) -> dict[str, Any]:
    return {"data": {root: None} if root else None,
            "errors": [{"message": message, "path": [root] if root else [], "locations": [{"line": 2, "column": 3}]}]}


def _root_field(query: str) -> str | None:
    """The known field named first in the query (nested selections come after their root)."""
    found = []
    for name in ROOT_FIELDS:
        match = re.search(rf"(?<![A-Za-z0-9_]){name}\s*[({{]", query)
        if match:
            found.append((match.start(), name))
    return min(found)[1] if found else None


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _round_time(number: int, *, days: int = 0, hours: int = 0) -> str:
    """A made-up but consistent time of a round's events: round N opens N days after 2023-01-01 13:00 UTC."""
    return iso(datetime(2023, 1, 1, 13, tzinfo=timezone.utc) + timedelta(days=number + days, hours=hours))


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeNumerai
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:
        try:
            payload = json.loads(self._body() or b"{}")
        except json.JSONDecodeError:
            self._send(400, b'{"errors": [{"message": "invalid JSON"}]}')
            return
        query = payload.get("query") or ""
        status, answer = self.server_fake.answer(query, payload.get("variables") or {}, self.headers.get("Authorization"))
        if _root_field(query) in self.server_fake.lost_replies:
            self.close_connection = True  # done, and no answer: the client sees the connection drop
            return
        self._send(status, json.dumps(answer).encode())

    def do_GET(self) -> None:
        fake = self.server_fake
        path = unquote(urlsplit(self.path).path)
        if not path.startswith("/files/"):
            self._send(404, b"not found", "text/plain")
            return
        name = path[len("/files/"):]
        with fake._lock:
            fake.gets.append(name)
            fault = fake.file_faults[name].pop(0) if fake.file_faults.get(name) else None
        status = fake.file_status.get(name, fault if isinstance(fault, int) else None)
        if status is not None:
            self._send(status, b"<Error>InternalError</Error>", "application/xml")
            return
        data = fake.files.get(name)
        if data is None:
            self._send(404, b"<Error>NoSuchKey</Error>", "application/xml")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if name in fake.truncate_files or fault == "cut":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)

    def do_PUT(self) -> None:
        path = unquote(urlsplit(self.path).path)
        body = self._body()
        if not path.startswith("/put/"):
            self._send(404, b"not found", "text/plain")
            return
        status = self.server_fake.put(path[len("/put/"):], body)
        self._send(status, b"" if status == 200 else b"<Error>InternalError</Error>", "application/xml")


def dataset_files(version: str = "v5.3", *, train_benchmark: bool = True, extra_version: str | None = "v5.2") -> dict[str, bytes]:
    """Small distinct byte payloads under Numerai's file names for `version` (and a second version)."""
    names = ["features.json", "train.parquet", "validation.parquet", "live.parquet",
             "live_benchmark_models.parquet", "validation_benchmark_models.parquet",
             "meta_model.parquet", "live_example_preds.parquet"]
    if train_benchmark:
        names.append("train_benchmark_models.parquet")
    files: dict[str, bytes] = {}
    for v in filter(None, (version, extra_version)):
        for i, name in enumerate(names):
            body = f"{v}/{name}:".encode() + bytes(range(256)) * (40 + 13 * i)
            # shaped as the real files are, as far as a download's check reads them: parquet's magic at both ends
            files[f"{v}/{name}"] = (json.dumps({"file": f"{v}/{name}", "pad": body.hex()}).encode()
                                    if name.endswith(".json") else b"PAR1" + body + b"PAR1")
    return files


@pytest.fixture
def fake_numerai(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNumerai]:
    """A started FakeNumerai with NUMERAI_API_URL pointing at it, no keys in the environment, and transfer retries
    that wait 10 ms instead of seconds."""
    import numerapi.base_api

    import training.numerai_api

    server = FakeNumerai(files=dataset_files()).start()
    monkeypatch.setenv("NUMERAI_API_URL", server.url)
    monkeypatch.delenv("NUMERAI_PUBLIC_ID", raising=False)
    monkeypatch.delenv("NUMERAI_SECRET_KEY", raising=False)
    # restore numerapi's module constant after the test, whatever the code under test set it to
    monkeypatch.setattr(numerapi.base_api, "API_TOURNAMENT_URL", numerapi.base_api.API_TOURNAMENT_URL)
    monkeypatch.setattr(training.numerai_api, "TRANSFER_BACKOFF_SECONDS", 0.01)
    try:
        yield server
    finally:
        server.stop()
