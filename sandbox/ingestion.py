"""An HTTPS stand-in of the Azure Monitor Logs Ingestion API, faithful where it hurts.

It answers `POST /dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01` the way Azure
does, including the behaviours that lose data silently:

- 401 unless `Authorization: Bearer <expected>`; 403 (`OperationFailed ... does not have access to
  ingest data for the data collection rule`) when scripted, e.g. for the first N calls while a role
  "propagates";
- 404 for an unknown DCR immutable id or stream; 413 when the wire or the gunzipped body exceeds
  1,048,576 bytes; 400 when the body is not a JSON array;
- columns not in the stream declaration are dropped with 204 (case-sensitive: `eventid` is not
  `EventId`), and a TimeGenerated older than 2 days (or over 1 day ahead) becomes the receive time.

Like the deployed DCR it declares two streams: the events (`Custom-NordPassEventLogs_CL`) and the
connector's health rows (`Custom-NordPassConnectorHealth_CL`), each landing in its own table. A
stand-in built with `health_stream_name=None` is a DCR from before the health table: 404 for it.

Scripted faults (429 with or without Retry-After, any 5xx/408, stalls, dropped connections) follow
a small list of `Fault` rules. A 400 is about content, as on the real service: `refuse` names
records (by EventId or by a marker in their JSON) that make any request holding them fail with 400,
and a scripted 400 refuses the records of the request it answered from then on. Every call is
recorded without the Authorization value. Accepted rows land in DuckDB (through duckdb-kql, so rule
queries run on them) or, for benchmarks, are only counted. A control surface under `/_sandbox/`
lets another process (the demo, a benchmark) steer and inspect it; `IngestionControl` is the
client for it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import signal
import ssl
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from content.duckdb_types import DUCKDB_TYPES, table_columns
from nordpass_connector import schema

from ._uvicorn_thread import ServerThread, wait_for_interrupt
from .certs import CertPaths, ensure_certs

API_VERSION = "2023-01-01"
MAX_REQUEST_BYTES = 1_048_576
DEFAULT_DCR_IMMUTABLE_ID = "dcr-0123456789abcdef0123456789abcdef"
TIMEGENERATED_MAX_AGE = timedelta(days=2)
TIMEGENERATED_MAX_AHEAD = timedelta(days=1)
FORBIDDEN_MESSAGE = (
    "The authentication token provided does not have access to ingest data for the data collection "
    "rule with immutable Id '{dcr}'."
)

FaultKind = Literal["status", "stall", "drop"]
StoreKind = Literal["duckdb", "count"]


@dataclass
class Fault:
    """One scripted misbehaviour. The first matching fault answers a call.

    kind="status": answer `status` (with `retry_after` as the Retry-After header when not None);
    kind="stall": sleep `stall_seconds` before answering (longer than the client's read timeout);
      with `accept=True` the rows are then stored, as Azure would after a client gave up;
    kind="drop": read the request, then abort the TCP connection without an answer.

    When: `on_call` (the n-th ingestion call since reset, 1-based) or every call; then `rate` (seeded
    probability); `times` is how often it may still fire (None = forever). `stream`, when set,
    limits the fault to calls for that stream (e.g. only the health rows).
    """

    kind: FaultKind = "status"
    status: int = 500
    retry_after: str | None = None
    stall_seconds: float = 0.0
    accept: bool = False
    times: int | None = 1
    on_call: int | None = None
    rate: float | None = None
    stream: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if fields.get("retry_after") is not None:
            fields["retry_after"] = str(fields["retry_after"])
        return cls(**fields)


@dataclass(frozen=True)
class Call:
    """One ingestion call as received (never the bearer value, never the body unless asked)."""

    number: int
    path: str
    dcr: str
    stream: str
    api_version: str | None
    headers: dict[str, str]
    auth_ok: bool
    wire_bytes: int
    raw_bytes: int
    records: int
    status: int  # 0: no answer was sent (dropped or stalled past the client)
    fault: str | None
    received_at: float
    body: bytes | None = None  # raw (gunzipped) body, only when keep_bodies=True

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("body")
        return data


# -- the row store -------------------------------------------------------------------------------


def _create_table_sql(table: schema.Table = schema.EVENTS) -> str:
    return f"CREATE TABLE IF NOT EXISTS {table.name} ({table_columns(table)})"


def _select_list(table: schema.Table, ref: Callable[[str], str], dynamic: Callable[[str], str]) -> str:
    """Columns of the table, extracted from one JSON object, with Azure's conversions."""
    exprs = []
    for c in table.columns:
        if c.type == "string":
            expr = ref(c.name)
        elif c.type in ("long", "real", "boolean"):
            expr = f"TRY_CAST({ref(c.name)} AS {DUCKDB_TYPES[c.type]})"
        elif c.type == "dynamic":
            expr = dynamic(c.name)
        else:
            parsed = f"TRY_CAST(replace({ref(c.name)}, 'Z', '') AS TIMESTAMP)"
            if c.name == "TimeGenerated":
                # Azure replaces a missing, too old or too far-ahead TimeGenerated with receive time.
                expr = (
                    f"CASE WHEN {parsed} IS NULL OR {parsed} < $recv - INTERVAL 2 DAY "
                    f"OR {parsed} > $recv + INTERVAL 1 DAY THEN $recv ELSE {parsed} END"
                )
            else:
                expr = parsed
        exprs.append(expr)
    return ", ".join(exprs)


def _insert_from_text_sql(table: schema.Table = schema.EVENTS) -> str:
    """INSERT ... SELECT over the request's JSON text: works for any array (non-objects skipped)."""
    select = _select_list(
        table,
        lambda name: f"j->>'{name}'",
        lambda name: f"CASE WHEN json_type(j->'{name}') = 'NULL' THEN NULL ELSE j->'{name}' END",
    )
    return (
        f"INSERT INTO {table.name} SELECT {select} "
        "FROM (SELECT unnest(from_json($body::JSON, '[\"JSON\"]')) AS j) WHERE json_type(j) = 'OBJECT'"
    )


def _insert_from_file_sql(table: schema.Table = schema.EVENTS) -> str:
    """INSERT ... SELECT over read_json of the body written to a file: measured about 3x faster than
    from_json on 1 MB bodies (~30 ms instead of ~90 ms on a 2-core box). Only the declared columns
    are read and read_json matches keys case-sensitively: the real API's silent drop."""
    types = ", ".join(f"'{c.name}': '{'JSON' if c.type == 'dynamic' else 'VARCHAR'}'" for c in table.columns)
    select = _select_list(
        table,
        lambda name: f'"{name}"',
        lambda name: f'CASE WHEN json_type("{name}") = \'NULL\' THEN NULL ELSE "{name}" END',
    )
    return (
        f"INSERT INTO {table.name} SELECT {select} FROM read_json($path, format='array', columns={{{types}}})"
    )


class RowStore:
    """Accepted rows: in DuckDB (queryable with KQL) or only counted (benchmarks)."""

    def __init__(self, kind: StoreKind = "duckdb", *, db_path: str | Path | None = None) -> None:
        self.kind = kind
        self._lock = threading.Lock()
        self._accepted = 0
        self._health_accepted = 0  # rows of the health stream (not counted as events)
        self._ids: Counter[str] = Counter()
        self._con: Any = None
        if kind == "duckdb":
            import duckdb_kql

            self._con = duckdb_kql.connect(str(db_path) if db_path else ":memory:")
            for table in schema.TABLES:
                self._con.execute(_create_table_sql(table))
            self._insert_text = _insert_from_text_sql()
            self._insert_file = _insert_from_file_sql()
            self._insert_health = _insert_from_text_sql(schema.HEALTH)
            self._spool = Path(tempfile.mkdtemp(prefix="ingestion-spool-"))
            self._accepted = self._con.execute(f"SELECT count(*) FROM {schema.TABLE_NAME}").fetchone()[0]

    def add_health(self, raw_body: bytes, rows: list[Any], received: datetime) -> None:
        """Rows of the health stream: a handful per run, so the simple path is fast enough."""
        objects = [r for r in rows if isinstance(r, dict)]
        with self._lock:
            self._health_accepted += len(objects)
            if self._con is not None:
                naive_utc = received.astimezone(UTC).replace(tzinfo=None)
                self._con.execute(self._insert_health, {"body": raw_body.decode("utf-8"), "recv": naive_utc})

    @property
    def health_accepted(self) -> int:
        with self._lock:
            return self._health_accepted

    def health_rows(self) -> list[dict[str, Any]]:
        """`NordPassConnectorHealth_CL` as landed, oldest first."""
        return self._table_rows(schema.HEALTH, order_by="TimeGenerated")

    def add(self, raw_body: bytes, rows: list[Any], received: datetime) -> None:
        objects = [r for r in rows if isinstance(r, dict)]
        if self.kind == "count":
            with self._lock:
                self._accepted += len(objects)
                self._ids.update(r["EventId"] for r in objects if isinstance(r.get("EventId"), str))
            return
        naive_utc = received.astimezone(UTC).replace(tzinfo=None)
        with self._lock:
            if len(objects) == len(rows):
                spool = self._spool / "body.json"  # one at a time: we hold the lock
                spool.write_bytes(raw_body)
                self._con.execute(self._insert_file, {"path": str(spool), "recv": naive_utc})
            else:
                self._con.execute(self._insert_text, {"body": raw_body.decode("utf-8"), "recv": naive_utc})
            self._accepted += len(objects)

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._accepted

    def event_id_counts(self) -> dict[str, int]:
        if self.kind == "count":
            with self._lock:
                return dict(self._ids)
        with self._lock:
            got = self._con.execute(
                f'SELECT "EventId", count(*) FROM {schema.TABLE_NAME} WHERE "EventId" IS NOT NULL GROUP BY 1'
            ).fetchall()
        return {str(k): int(v) for k, v in got}

    def duplicates(self) -> dict[str, int]:
        return {k: v for k, v in self.event_id_counts().items() if v > 1}

    def kql(self, query: str) -> list[tuple[Any, ...]]:
        self._need_db()
        import duckdb_kql

        with self._lock:
            return list(duckdb_kql.query(self._con, query).fetchall())

    def sql(self, query: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        self._need_db()
        with self._lock:
            return list(self._con.execute(query, params or []).fetchall())

    def rows(self) -> list[dict[str, Any]]:
        return self._table_rows(schema.EVENTS)

    def _table_rows(self, table: schema.Table, *, order_by: str | None = None) -> list[dict[str, Any]]:
        self._need_db()
        order = f' ORDER BY "{order_by}"' if order_by else ""
        with self._lock:
            cur = self._con.execute(f"SELECT * FROM {table.name}{order}")
            names = [d[0] for d in cur.description]
            got = cur.fetchall()
        dynamic = {c.name for c in table.columns if c.type == "dynamic"}
        out = []
        for values in got:
            row = dict(zip(names, values, strict=True))
            for name in dynamic:
                if isinstance(row.get(name), str):
                    row[name] = orjson.loads(row[name])
            out.append(row)
        return out

    def clear(self) -> None:
        with self._lock:
            self._accepted = 0
            self._health_accepted = 0
            self._ids.clear()
            if self._con is not None:
                for table in schema.TABLES:
                    self._con.execute(f"DELETE FROM {table.name}")

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
                shutil.rmtree(self._spool, ignore_errors=True)

    def _need_db(self) -> None:
        if self._con is None:
            raise RuntimeError("this stand-in only counts rows (store='count'); use store='duckdb'")


# -- the server ----------------------------------------------------------------------------------


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    all_headers = {"x-ms-error-code": code}
    all_headers.update(headers or {})
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=all_headers
    )


class _Behaviour:
    """Mutable settings and the call log, shared by the server thread and the Python API."""

    def __init__(
        self,
        *,
        expected_token: str | None,
        dcr_immutable_id: str,
        stream_name: str,
        health_stream_name: str | None,
        max_request_bytes: int,
        keep_bodies: bool,
        seed: int,
    ) -> None:
        self.lock = threading.Lock()
        self.expected_token = expected_token
        self.dcr_immutable_id = dcr_immutable_id
        self.stream_name = stream_name
        self.health_stream_name = health_stream_name
        self.max_request_bytes = max_request_bytes
        self.keep_bodies = keep_bodies
        self.latency = 0.0
        self.faults: list[Fault] = []
        self.calls: list[Call] = []
        self.counter = 0
        self.rng = random.Random(seed)
        self.seed = seed
        # Content the service refuses (400): any request holding one of these records fails whole.
        self.refused_ids: set[str] = set()
        self.refused_markers: list[bytes] = []
        self.refuse_code = "InvalidContent"

    def refuses(self, raw: bytes, rows: list[Any]) -> bool:
        with self.lock:
            if any(marker in raw for marker in self.refused_markers):
                return True
            ids = self.refused_ids
            return bool(ids) and any(isinstance(r, dict) and r.get("EventId") in ids for r in rows)

    def remember_refused(self, wire: bytes, gzipped: bool) -> None:
        """A scripted 400 refuses the content it answered: those records stay refused."""
        try:
            raw = _gunzip(wire, 8 * MAX_REQUEST_BYTES) if gzipped else wire
            rows = orjson.loads(raw)
        except (OSError, EOFError, zlib.error, OverflowError, orjson.JSONDecodeError):
            return
        if isinstance(rows, list):
            with self.lock:
                self.refused_ids.update(
                    r["EventId"] for r in rows if isinstance(r, dict) and isinstance(r.get("EventId"), str)
                )

    def next_call(self, stream: str) -> tuple[int, Fault | None]:
        with self.lock:
            self.counter += 1
            n = self.counter
            for fault in self.faults:
                if fault.times is not None and fault.times <= 0:
                    continue
                if fault.stream is not None and fault.stream != stream:
                    continue
                if fault.on_call is not None and fault.on_call != n:
                    continue
                if fault.rate is not None and self.rng.random() >= fault.rate:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                return n, fault
            return n, None


def _redacted(headers: Any) -> dict[str, str]:
    return {k: ("<redacted>" if k == "authorization" else v) for k, v in headers.items()}


class _Exchange:
    """One ingestion call in progress: what the call log records of it, whatever the answer."""

    def __init__(self, b: _Behaviour, request: Request, wire: bytes, number: int) -> None:
        self.b = b
        self.request = request
        self.dcr: str = request.path_params["dcr"]
        self.stream: str = request.path_params["stream"]
        self.wire = wire
        self.number = number
        self.received = datetime.now(UTC)
        auth = request.headers.get("authorization", "")
        self.auth_ok = auth.startswith("Bearer ") and (
            b.expected_token is None or auth[7:] == b.expected_token
        )
        self.raw = b""  # the body once gunzipped
        self.records = 0
        self.fault: str | None = None

    @property
    def gzipped(self) -> bool:
        return self.request.headers.get("content-encoding", "").lower() == "gzip"

    def record(self, status: int) -> None:
        """Log the call; status 0: no answer reached the client."""
        call = Call(
            number=self.number,
            path=self.request.url.path,
            dcr=self.dcr,
            stream=self.stream,
            api_version=self.request.query_params.get("api-version"),
            headers=_redacted(self.request.headers),
            auth_ok=self.auth_ok,
            wire_bytes=len(self.wire),
            raw_bytes=len(self.raw),
            records=self.records,
            status=status,
            fault=self.fault,
            received_at=self.received.timestamp(),
            body=self.raw if self.b.keep_bodies else None,
        )
        with self.b.lock:
            self.b.calls.append(call)

    def answer(self, response: Response) -> Response:
        self.record(response.status_code)
        return response


async def _ingest(b: _Behaviour, store: RowStore, request: Request) -> Response:
    wire = await request.body()
    number, fault = b.next_call(request.path_params["stream"])
    ex = _Exchange(b, request, wire, number)
    if b.latency:
        await asyncio.sleep(b.latency)
    if not ex.auth_ok:
        return ex.answer(
            _error(401, "InvalidToken", "The provided access token is missing, invalid or expired.")
        )
    if fault is not None:
        scripted = await _scripted_answer(ex, fault)
        if scripted is not None:
            return scripted
    return await _deliver(ex, store)


async def _scripted_answer(ex: _Exchange, fault: Fault) -> Response | None:
    """The answer a scripted fault gives, or None when the call goes on (a stall that accepts)."""
    ex.fault = f"{fault.kind}:{fault.status}" if fault.kind == "status" else fault.kind
    if fault.kind == "drop":
        transport = ex.request.scope.get("sandbox.transport")
        ex.record(0)
        if transport is not None:
            transport.abort()
        return Response(status_code=500)  # never reaches the client: the socket is gone
    if fault.kind == "stall":
        if await _stall(ex.request, fault.stall_seconds):
            # The client gave up (its read timeout): Azure may still have stored the rows.
            if not fault.accept:
                ex.record(0)
                return Response(status_code=503)
        elif not fault.accept:
            return ex.answer(_error(503, "ServiceUnavailable", "stalled request (scripted)"))
        return None
    if fault.status == 400:
        ex.b.remember_refused(ex.wire, ex.gzipped)
    return ex.answer(_fault_response(fault, ex.dcr))


async def _deliver(ex: _Exchange, store: RowStore) -> Response:
    """A call past authentication and faults: checked as Azure checks it, then stored."""
    b = ex.b
    health = ex.stream == b.health_stream_name
    problem = _address_problem(ex, health=health)
    if problem is not None:
        return ex.answer(problem)
    rows = _body_rows(ex)
    if isinstance(rows, Response):
        return ex.answer(rows)
    ex.records = len(rows)
    if b.refuses(ex.raw, rows):
        ex.fault = "refused"
        return ex.answer(
            _error(400, b.refuse_code, "The request contains a record that could not be ingested.")
        )
    if rows:
        await run_in_threadpool(store.add_health if health else store.add, ex.raw, rows, ex.received)
    return ex.answer(Response(status_code=204))


def _address_problem(ex: _Exchange, *, health: bool) -> Response | None:
    """The error for a call without an api-version, or to an unknown DCR or stream."""
    if ex.request.query_params.get("api-version") is None:
        return _error(400, "MissingApiVersionParameter", "The api-version query parameter is required.")
    if ex.dcr != ex.b.dcr_immutable_id:
        return _error(404, "NotFound", f"Data collection rule with immutable Id '{ex.dcr}' not found.")
    if ex.stream != ex.b.stream_name and not health:
        message = f"Stream '{ex.stream}' is not declared in the data collection rule."
        return _error(404, "InvalidStream", message)
    return None


def _body_rows(ex: _Exchange) -> list[Any] | Response:
    """The body's records, or the error for a body too large, badly encoded or not a JSON array.
    Sets `ex.raw` (the call log counts its bytes) once it is gunzipped."""
    limit = ex.b.max_request_bytes
    too_large = f"ContentLengthLimitExceeded: Maximum allowed content length: {limit} bytes."
    if len(ex.wire) > limit:
        return _error(413, "ContentLengthLimitExceeded", too_large)
    raw = ex.wire
    if ex.gzipped:
        try:
            raw = _gunzip(ex.wire, limit)
        except (OSError, EOFError, zlib.error):
            return _error(400, "InvalidContentEncoding", "The body is not valid gzip.")
        except OverflowError:
            return _error(413, "ContentLengthLimitExceeded", too_large)
    ex.raw = raw
    if len(raw) > limit:
        return _error(413, "ContentLengthLimitExceeded", too_large)
    try:
        rows = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _error(400, "InvalidContent", "The request body is not valid JSON.")
    if not isinstance(rows, list):
        return _error(400, "InvalidContent", "The request body must be a JSON array.")
    return rows


def _build_app(b: _Behaviour, store: RowStore) -> Any:
    async def ingest(request: Request) -> Response:
        return await _ingest(b, store, request)

    async def calls(request: Request) -> JSONResponse:
        with b.lock:
            data = [c.to_json() for c in b.calls]
        return JSONResponse(data)

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(_stats(b, store))

    async def mode(request: Request) -> JSONResponse:
        _apply_mode(b, orjson.loads(await request.body() or b"{}"))
        return JSONResponse(_stats(b, store))

    async def reset(request: Request) -> JSONResponse:
        data = orjson.loads(await request.body() or b"{}")
        _reset(b, store, rows=bool(data.get("rows", True)))
        return JSONResponse(_stats(b, store))

    async def kql(request: Request) -> Response:
        query = orjson.loads(await request.body())["query"]
        try:
            rows = await run_in_threadpool(store.kql, query)
        except Exception as exc:  # the caller wants the KQL error text, whatever its class
            return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=400)
        return Response(orjson.dumps({"rows": rows}, default=str), media_type="application/json")

    app = Starlette(
        routes=[
            Route("/dataCollectionRules/{dcr}/streams/{stream}", ingest, methods=["POST"]),
            Route("/_sandbox/calls", calls, methods=["GET"]),
            Route("/_sandbox/stats", stats, methods=["GET"]),
            Route("/_sandbox/mode", mode, methods=["POST"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/_sandbox/kql", kql, methods=["POST"]),
        ]
    )

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        # A "connection drop" needs the socket: uvicorn's h11 send() is bound to the request cycle,
        # which holds the transport. Expose it to the handler through the scope.
        if scope["type"] == "http":
            cycle = getattr(send, "__self__", None)
            scope["sandbox.transport"] = getattr(cycle, "transport", None)
        await app(scope, receive, send)

    return outer


async def _stall(request: Request, seconds: float) -> bool:
    """Wait `seconds`, or less if the client hangs up first (True then); a waiting task would
    otherwise outlive the client and hold up the server's shutdown."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(min(0.05, max(0.0, end - time.monotonic())))
        if await request.is_disconnected():
            return True
    return False


def _gunzip(wire: bytes, limit: int) -> bytes:
    """Decompress, refusing to inflate past the limit (a gzip bomb must not eat the test box)."""
    d = zlib.decompressobj(wbits=31)
    out = d.decompress(wire, limit + 1)
    if len(out) > limit:
        raise OverflowError
    if not d.eof:
        raise EOFError("truncated gzip stream")
    return out


def _fault_response(fault: Fault, dcr: str) -> Response:
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
    if fault.status == 403:
        return _error(403, "OperationFailed", FORBIDDEN_MESSAGE.format(dcr=dcr), headers)
    if fault.status == 429:
        return _error(429, "TooManyRequests", "Rate limit for the data collection rule exceeded.", headers)
    if fault.status == 400:
        return _error(400, "InvalidContent", "The request contains a record that could not be ingested.")
    codes = {408: "RequestTimeout", 500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable"}
    code = codes.get(fault.status, f"Status{fault.status}")
    return _error(fault.status, code, f"scripted failure {fault.status}", headers)


def _apply_mode(b: _Behaviour, data: dict[str, Any]) -> None:
    with b.lock:
        if data.get("clear_faults"):
            b.faults.clear()
        for item in data.get("faults", []):
            b.faults.append(Fault.from_dict(item))
        if "latency_ms" in data:
            b.latency = float(data["latency_ms"]) / 1000.0
        if "max_request_bytes" in data:
            b.max_request_bytes = int(data["max_request_bytes"])
        if "expected_token" in data:
            b.expected_token = data["expected_token"]
        if "seed" in data:
            b.rng = random.Random(int(data["seed"]))


def _reset(b: _Behaviour, store: RowStore, *, rows: bool) -> None:
    with b.lock:
        b.calls.clear()
        b.faults.clear()
        b.counter = 0
        b.latency = 0.0
        b.max_request_bytes = MAX_REQUEST_BYTES
        b.rng = random.Random(b.seed)
        b.refused_ids.clear()
        b.refused_markers.clear()
        b.refuse_code = "InvalidContent"
    if rows:
        store.clear()


def _stats(b: _Behaviour, store: RowStore) -> dict[str, Any]:
    with b.lock:
        statuses = Counter(str(c.status) for c in b.calls)
        wire = sum(c.wire_bytes for c in b.calls)
        raw = sum(c.raw_bytes for c in b.calls)
        n = len(b.calls)
        by_stream = Counter(c.stream for c in b.calls)
        faults = [asdict(f) for f in b.faults]
    dups = store.duplicates()
    return {
        "calls": n,
        "calls_by_stream": dict(by_stream),
        "statuses": dict(statuses),
        "wire_bytes": wire,
        "raw_bytes": raw,
        "accepted_rows": store.accepted,
        "health_rows": store.health_accepted,
        "duplicate_event_ids": len(dups),
        "duplicate_rows": sum(v - 1 for v in dups.values()),
        "faults": faults,
        "store": store.kind,
    }


class IngestionStandIn:
    """The stand-in in a background thread: `.endpoint` is ``https://127.0.0.1:<port>``."""

    def __init__(
        self,
        certs: CertPaths | str | Path,
        *,
        expected_token: str | None = None,
        dcr_immutable_id: str = DEFAULT_DCR_IMMUTABLE_ID,
        stream_name: str = schema.DEFAULT_STREAM_NAME,
        health_stream_name: str | None = schema.DEFAULT_HEALTH_STREAM_NAME,
        store: StoreKind = "duckdb",
        db_path: str | Path | None = None,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        keep_bodies: bool = False,
        seed: int = 0,
        port: int = 0,
    ) -> None:
        self.certs = certs if isinstance(certs, CertPaths) else ensure_certs(certs)
        self._b = _Behaviour(
            expected_token=expected_token,
            dcr_immutable_id=dcr_immutable_id,
            stream_name=stream_name,
            health_stream_name=health_stream_name,
            max_request_bytes=max_request_bytes,
            keep_bodies=keep_bodies,
            seed=seed,
        )
        self.store = RowStore(store, db_path=db_path)
        self._server = ServerThread(
            _build_app(self._b, self.store),
            port=port,
            ssl_keyfile=self.certs.server_key,
            ssl_certfile=self.certs.server_chain,
            name="ingestion-stand-in",
        )

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> IngestionStandIn:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def close(self) -> None:
        self.stop()
        self.store.close()

    def __enter__(self) -> IngestionStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- facts -----------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self._server.port}"

    @property
    def ca_file(self) -> str:
        return str(self.certs.ca)

    @property
    def dcr_immutable_id(self) -> str:
        return self._b.dcr_immutable_id

    @property
    def stream_name(self) -> str:
        return self._b.stream_name

    @property
    def health_stream_name(self) -> str | None:
        return self._b.health_stream_name

    # -- steering --------------------------------------------------------------------------------
    def set_expected_token(self, token: str | None) -> None:
        with self._b.lock:
            self._b.expected_token = token

    def declare_health_stream(self, name: str | None) -> None:
        """Which health stream the "DCR" declares; None: a DCR deployed before the health table
        (its stream answers 404 InvalidStream)."""
        with self._b.lock:
            self._b.health_stream_name = name

    def set_latency(self, milliseconds: float) -> None:
        with self._b.lock:
            self._b.latency = milliseconds / 1000.0

    def set_max_request_bytes(self, limit: int) -> None:
        with self._b.lock:
            self._b.max_request_bytes = limit

    def add_fault(self, fault: Fault) -> Fault:
        with self._b.lock:
            self._b.faults.append(fault)
        return fault

    def fail(
        self,
        status: int,
        *,
        times: int | None = 1,
        on_call: int | None = None,
        rate: float | None = None,
        retry_after: str | float | None = None,
        stream: str | None = None,
    ) -> Fault:
        ra = None if retry_after is None else str(retry_after)
        return self.add_fault(
            Fault("status", status, ra, times=times, on_call=on_call, rate=rate, stream=stream)
        )

    def throttle(self, *, retry_after: str | float | None = "1", times: int | None = 1) -> Fault:
        return self.fail(429, times=times, retry_after=retry_after)

    def forbid(self, *, times: int | None = None) -> Fault:
        """403 for the next `times` calls (None: until cleared), like a role still propagating."""
        return self.fail(403, times=times)

    def stall(
        self, seconds: float, *, times: int | None = 1, accept: bool = False, stream: str | None = None
    ) -> Fault:
        return self.add_fault(
            Fault("stall", stall_seconds=seconds, times=times, accept=accept, stream=stream)
        )

    def drop(self, *, times: int | None = 1, on_call: int | None = None, stream: str | None = None) -> Fault:
        return self.add_fault(Fault("drop", times=times, on_call=on_call, stream=stream))

    def refuse(
        self, *, event_ids: Sequence[str] = (), marker: bytes | None = None, code: str = "InvalidContent"
    ) -> None:
        """From now on, answer 400 (`code`) to any request that holds one of these records."""
        with self._b.lock:
            self._b.refused_ids.update(event_ids)
            if marker is not None:
                self._b.refused_markers.append(marker)
            self._b.refuse_code = code

    def clear_faults(self) -> None:
        with self._b.lock:
            self._b.faults.clear()
            self._b.refused_ids.clear()
            self._b.refused_markers.clear()

    def reset(self, *, rows: bool = True) -> None:
        """Forget calls and faults (and accepted rows unless rows=False); keep the token and ids."""
        _reset(self._b, self.store, rows=rows)

    # -- inspection ------------------------------------------------------------------------------
    @property
    def calls(self) -> list[Call]:
        with self._b.lock:
            return list(self._b.calls)

    def stats(self) -> dict[str, Any]:
        return _stats(self._b, self.store)

    @property
    def accepted_rows(self) -> int:
        return self.store.accepted

    def event_id_counts(self) -> dict[str, int]:
        return self.store.event_id_counts()

    def duplicates(self) -> dict[str, int]:
        return self.store.duplicates()

    def rows(self) -> list[dict[str, Any]]:
        return self.store.rows()

    def health_rows(self) -> list[dict[str, Any]]:
        """The health stream's rows (`NordPassConnectorHealth_CL`), oldest first."""
        return self.store.health_rows()

    def kql(self, query: str) -> list[tuple[Any, ...]]:
        return self.store.kql(query)


class IngestionControl:
    """Steer and inspect a stand-in running in another process, through `/_sandbox/` routes."""

    def __init__(self, endpoint: str, *, ca_file: str | Path, timeout: float = 30.0) -> None:
        import httpx

        self._http = httpx.Client(
            base_url=endpoint, verify=ssl.create_default_context(cafile=str(ca_file)), timeout=timeout
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> IngestionControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def calls(self) -> list[dict[str, Any]]:
        return list(self._http.get("/_sandbox/calls").raise_for_status().json())

    def stats(self) -> dict[str, Any]:
        return dict(self._http.get("/_sandbox/stats").raise_for_status().json())

    def set_mode(self, **mode: Any) -> dict[str, Any]:
        """e.g. set_mode(faults=[{"status": 429, "retry_after": 1}], latency_ms=30, clear_faults=True)."""
        return dict(self._http.post("/_sandbox/mode", json=mode).raise_for_status().json())

    def reset(self, *, rows: bool = True) -> dict[str, Any]:
        return dict(self._http.post("/_sandbox/reset", json={"rows": rows}).raise_for_status().json())

    def kql(self, query: str) -> list[list[Any]]:
        response = self._http.post("/_sandbox/kql", json={"query": query})
        if response.status_code == 400:
            raise RuntimeError(response.json()["error"])
        return list(response.raise_for_status().json()["rows"])


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the Logs Ingestion stand-in until interrupted")
    parser.add_argument("--certs", required=True, help="folder for ca.pem and the server certificate")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=None, help="expected bearer (default: any bearer)")
    parser.add_argument("--dcr", default=DEFAULT_DCR_IMMUTABLE_ID)
    parser.add_argument("--stream", default=schema.DEFAULT_STREAM_NAME)
    parser.add_argument("--health-stream", default=schema.DEFAULT_HEALTH_STREAM_NAME)
    parser.add_argument("--store", choices=["duckdb", "count"], default="duckdb")
    parser.add_argument("--db", default=None, help="DuckDB file to persist accepted rows")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    stand_in = IngestionStandIn(
        args.certs,
        expected_token=args.token,
        dcr_immutable_id=args.dcr,
        stream_name=args.stream,
        health_stream_name=args.health_stream,
        store=args.store,
        db_path=args.db,
        port=args.port,
    )
    # SIGTERM (how the demo stops us, by PID) ends the loop below so the DuckDB file is closed cleanly.
    signal.signal(signal.SIGTERM, _interrupt)
    with stand_in:
        stand_in.set_latency(args.latency_ms)
        print(f"endpoint={stand_in.endpoint} ca={stand_in.ca_file}", flush=True)
        wait_for_interrupt()


if __name__ == "__main__":
    main()
