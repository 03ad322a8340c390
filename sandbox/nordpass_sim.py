"""A NordPass Activity API simulator over real HTTP (starlette on uvicorn, loopback only).

It serves ``POST /activities/query`` as docs/nordpass-api.md describes it, and lets tests, the demo and
the benchmark turn every UNKNOWN of that contract into a knob: sort order, bound inclusivity, a
server-side ``per_page`` cap, late events, and faults (429 with or without ``Retry-After``, 5xx,
slow answers, dropped connections, non-JSON bodies).

Design points:

- The store keeps only *visible* events, sorted by (timestamp, insertion sequence), as parallel
  lists of timestamps and pre-serialised JSON. A query is two bisects and a slice, and a page is a
  byte join, so a 1M-event store answers in well under a millisecond per page.
- Late events wait in a heap until their ``visible_at`` (simulator clock) has passed; they are
  promoted at the start of the next request. Offset paging runs over the live visible set, so an
  insert shifts later pages exactly as it would on a real offset-paged API.
- Faults come from a scripted queue (``fail_next``: deterministic, for tests) and from a seeded
  rate (``fault_rate``: for soak runs and the demo).
- A dropped connection aborts the client's transport from inside the app: raising in the app would
  only make uvicorn answer 500, which is a different failure.
- Paging misbehaviours seen on real offset-paged APIs are knobs too: a page-size cap the metadata
  does not admit (``hide_page_cap``), a page that repeats the one before it (``repeat_page``), a
  page that comes back a few events short while the total stays right (``short_page``), and
  strings cut in the middle of a surrogate pair, sent as a lone ``\\ud83c`` escape
  (``lone_surrogates``). The page faults fire ``*_times`` times (None: on every query).

Everything that mutates state takes one lock, so the test thread and the server's event loop can
both use the simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gc
import heapq
import math
import os
import random
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DAY = 86_400
DEFAULT_WINDOW = 7 * DAY
MAX_SPAN = 90 * DAY
QUERY_PATH = "/activities/query"
DROPPED = 599  # internal marker: the connection was aborted, nothing reached the client
CONTROL_PREFIX = "/_sim"

Order = Literal["asc", "desc", "shuffled-but-stable", "shuffled"]
ORDERS: tuple[str, ...] = ("asc", "desc", "shuffled-but-stable", "shuffled")
FAULT_KINDS: tuple[str, ...] = (
    "429",  # rate limited, no Retry-After
    "429-retry-after",  # rate limited with Retry-After: <retry_after>
    "408",
    "500",
    "502",
    "503",
    "slow",  # answer correctly, but only after `slow_seconds`
    "drop",  # close the connection without any response
    "garbage",  # 200 with a body that is not JSON
    "bad-shape",  # 200 with JSON that is not a page
    "no-data",  # 200 with a JSON object that lacks `data` (must not read as "no more events")
    "bad-gzip",  # 200 claiming Content-Encoding: gzip with a body that is not gzip
    "401",
    "403",
)


@dataclass
class Knobs:
    """Everything a test may change at runtime (``configure``, or POST /_sim/configure)."""

    order: str = "asc"
    from_inclusive: bool = True
    to_inclusive: bool = True
    max_per_page: int | None = None  # the server silently serves at most this many per page
    default_per_page: int = 100  # used when the request has no per_page (real default unknown)
    over_max_span: str = "reject"  # "reject" (400) or "clamp" (serve the newest 90 days)
    latency: float = 0.0  # seconds added to every query (asyncio sleep: scales with concurrency)
    fault_rate: float = 0.0  # probability that a query gets a random fault from `fault_kinds`
    fault_kinds: tuple[str, ...] = ("429", "429-retry-after", "500", "502", "503")
    fault_seed: int = 0
    retry_after: str = "1"  # value sent with "429-retry-after"
    slow_seconds: float = 5.0
    auth_status: int | None = None  # force 401/403 for every query, e.g. a revoked token
    # With `max_per_page`: the metadata echoes the requested per_page and the page count it implies,
    # as if no cap applied (the server says 100 a page and serves 50).
    hide_page_cap: bool = False
    repeat_page: int | None = None  # this page number is answered with the previous page's events
    repeat_page_times: int | None = 1  # how many answers repeat (None: every one)
    short_page: int | None = None  # this page number comes back `short_by` events short...
    short_by: int = 3
    short_page_times: int | None = 1  # ...this many times (None: every time); the total stays right
    # Astral characters (emoji) in served events are sent as their high surrogate alone, escaped:
    # valid JSON that is not valid UTF-8 once decoded (a JavaScript backend cutting a string).
    lone_surrogates: bool = False


@dataclass
class RequestRecord:
    """One query as the simulator saw it. Never holds the Authorization value."""

    index: int
    path: str
    query: str  # the URL query string ("" when none)
    body: Any  # the parsed JSON body (None if it did not parse)
    headers: dict[str, str]  # lower-cased names, Authorization removed
    authorized: bool
    at: float  # simulator clock
    status: int = 0  # 0 = dropped, or not answered yet
    fault: str | None = None
    page: int | None = None
    per_page: int | None = None  # effective, after the server cap
    returned: int = 0
    total: int | None = None


class NordPassSimulator:
    def __init__(
        self,
        *,
        token: str = "sim-token",
        seed: int = 7,
        host: str = "127.0.0.1",
        port: int = 0,
        now: Callable[[], float] = time.time,
        **knobs: Any,
    ) -> None:
        self.token = token
        self.seed = seed
        self.host = host
        self.now = now
        self.knobs = Knobs()
        self.on_request: Callable[[RequestRecord], None] | None = None

        self._lock = threading.RLock()
        self._ts: list[int] = []
        self._blobs: list[bytes] = []
        self._keys: list[int] = []  # per-event shuffle key for "shuffled-but-stable"
        self._seq = 0
        self._version = 0
        self._pending: list[tuple[float, int, int, bytes]] = []  # (visible_at, seq, ts, blob)
        self._order_cache: tuple[tuple[int, int, int], list[int]] | None = None
        self._key_rng = random.Random(f"sim-order:{seed}")
        self._fault_rng = random.Random(f"faults:{self.knobs.fault_seed}")
        self._scripted: list[str] = []
        self._log: list[RequestRecord] = []
        self._repeats_left: int | None = None  # of `repeat_page_times`, None = unlimited
        self._shorts_left: int | None = None

        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.configure(**knobs)

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + QUERY_PATH

    @property
    def control_url(self) -> str:
        return self.base_url + CONTROL_PREFIX

    def start(self, timeout: float = 10.0) -> NordPassSimulator:
        if self._server is not None:
            return self
        # proto=IPPROTO_TCP matters: asyncio only turns on TCP_NODELAY for accepted sockets whose
        # proto says TCP; without it every response waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.host, self._port))
        sock.listen(2048)
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app(),
            http="h11",
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_keep_alive=30,
            backlog=2048,
            timeout_graceful_shutdown=3,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._stopping = False
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"nordpass-sim:{self._port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._server = None
                sock.close()
                raise RuntimeError("simulator did not start")
            time.sleep(0.005)
        self._sock = sock
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping = True
        server.should_exit = True
        thread.join(timeout=10)
        self._sock.close()
        self._server = None
        self._thread = None

    def __enter__(self) -> NordPassSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- configuration ----------------------------------------------------------------------

    def configure(self, **changes: Any) -> Knobs:
        """Change knobs at runtime; unknown names and bad values raise ValueError."""
        names = {f.name for f in fields(Knobs)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown knobs: {sorted(unknown)}")
        if "fault_kinds" in changes:
            changes["fault_kinds"] = tuple(changes["fault_kinds"])
        with self._lock:
            updated = replace(self.knobs, **changes)
            _check_knobs(updated)
            if {"repeat_page", "repeat_page_times"} & set(changes):
                self._repeats_left = updated.repeat_page_times
            if {"short_page", "short_page_times"} & set(changes):
                self._shorts_left = updated.short_page_times
            if "fault_seed" in changes or "fault_rate" in changes:
                self._fault_rng = random.Random(f"faults:{updated.fault_seed}")
            self.knobs = updated
            return updated

    def fail_next(self, *kinds: str, times: int = 1) -> None:
        """Queue faults for the next queries, in order: ``fail_next("429", "drop")`` or
        ``fail_next("503", times=3)``. Scripted faults win over the random rate."""
        bad = [k for k in kinds if k not in FAULT_KINDS]
        if bad:
            raise ValueError(f"unknown fault kinds {bad}; known: {FAULT_KINDS}")
        with self._lock:
            self._scripted.extend(list(kinds) * times)

    def pending_faults(self) -> list[str]:
        with self._lock:
            return list(self._scripted)

    def reset(self) -> None:
        """Forget events, faults, knobs, the request log and the hook."""
        with self._lock:
            self._ts, self._blobs, self._keys, self._pending = [], [], [], []
            self._scripted.clear()
            self._log.clear()
            self._order_cache = None
            self._version += 1
            self._seq = 0
            # Re-seed, so a reset simulator shuffles and faults exactly like a fresh one.
            self._key_rng = random.Random(f"sim-order:{self.seed}")
            self.knobs = Knobs()
            self._fault_rng = random.Random(f"faults:{self.knobs.fault_seed}")
            self._repeats_left = self._shorts_left = None
        self.on_request = None

    # -- the event store --------------------------------------------------------------------

    def add(self, events: Iterable[Any], visible_at: float | None = None, *, at: int | None = None) -> int:
        """Store events; returns how many. They become visible at `visible_at` (simulator clock),
        or at once. `at` overrides the filter timestamp, for events whose own `timestamp` is
        malformed (they must still be servable, to test the connector's handling)."""
        with _gc_paused():
            batch = [(at if at is not None else _filter_time(e), _compact(orjson.dumps(e))) for e in events]
            if not batch:
                return 0
            with self._lock:
                if visible_at is not None and visible_at > self.now():
                    for ts, blob in batch:
                        heapq.heappush(self._pending, (visible_at, self._seq, ts, blob))
                        self._seq += 1
                    return len(batch)
                self._insert(batch)
        return len(batch)

    def _insert(self, batch: Sequence[tuple[int, bytes]]) -> None:
        """Merge a batch into the sorted store (caller holds the lock)."""
        keys = [self._key_rng.getrandbits(62) for _ in batch]
        self._seq += len(batch)
        self._version += 1
        if len(batch) <= 64:
            for (ts, blob), key in zip(batch, keys, strict=True):
                i = bisect.bisect_right(self._ts, ts)
                self._ts.insert(i, ts)
                self._blobs.insert(i, blob)
                self._keys.insert(i, key)
            return
        # Bulk load: one stable sort over both runs (existing events first, so they stay ahead of
        # new ones within a second) is far cheaper than a million list inserts.
        all_ts = self._ts + [ts for ts, _ in batch]
        all_blobs = self._blobs + [blob for _, blob in batch]
        all_keys = self._keys + keys
        order = sorted(range(len(all_ts)), key=all_ts.__getitem__)
        self._ts = [all_ts[i] for i in order]
        self._blobs = [all_blobs[i] for i in order]
        self._keys = [all_keys[i] for i in order]

    def _promote_due(self) -> None:
        """Make late events whose time has come visible (caller holds the lock)."""
        if not self._pending or self._pending[0][0] > self.now():
            return
        now = self.now()
        due: list[tuple[int, bytes]] = []
        while self._pending and self._pending[0][0] <= now:
            _, _, ts, blob = heapq.heappop(self._pending)
            due.append((ts, blob))
        self._insert(due)

    def visible_count(self) -> int:
        with self._lock:
            self._promote_due()
            return len(self._ts)

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def events(self) -> list[Any]:
        """Every visible event, in store order (timestamp, insertion)."""
        with self._lock:
            self._promote_due()
            return [orjson.loads(b) for b in self._blobs]

    # -- request log ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    def query_requests(self) -> list[RequestRecord]:
        return [r for r in self.requests if r.path == QUERY_PATH]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    # -- serving ----------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(QUERY_PATH, self._query, methods=["POST"]),
                Route(CONTROL_PREFIX + "/configure", self._ctl_configure, methods=["POST"]),
                Route(CONTROL_PREFIX + "/fail", self._ctl_fail, methods=["POST"]),
                Route(CONTROL_PREFIX + "/events", self._ctl_events, methods=["POST"]),
                Route(CONTROL_PREFIX + "/requests", self._ctl_requests, methods=["GET", "DELETE"]),
                Route(CONTROL_PREFIX + "/reset", self._ctl_reset, methods=["POST"]),
                Route(CONTROL_PREFIX + "/state", self._ctl_state, methods=["GET"]),
            ]
        )

    async def _query(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = None
        headers = {k.lower(): v for k, v in request.headers.items() if k.lower() != "authorization"}
        authorized = request.headers.get("authorization") == self.token
        with self._lock:
            record = RequestRecord(
                index=len(self._log),
                path=QUERY_PATH,
                query=request.url.query,
                body=body,
                headers=headers,
                authorized=authorized,
                at=self.now(),
            )
            self._log.append(record)
            knobs = self.knobs
            fault = self._pick_fault(knobs)
        record.fault = fault
        hook = self.on_request
        if hook is not None:
            # Runs on the server loop before the page is computed, so events the hook adds are
            # part of this very page: exactly "an insert between two page requests".
            hook(record)

        if knobs.latency > 0:
            await asyncio.sleep(knobs.latency)

        response = await self._answer(request, record, body, authorized, knobs, fault)
        record.status = 0 if response.status_code == DROPPED else response.status_code
        return response

    def _pick_fault(self, knobs: Knobs) -> str | None:
        if self._scripted:
            return self._scripted.pop(0)
        if knobs.fault_rate > 0 and knobs.fault_kinds and self._fault_rng.random() < knobs.fault_rate:
            return self._fault_rng.choice(knobs.fault_kinds)
        return None

    async def _answer(
        self,
        request: Request,
        record: RequestRecord,
        body: Any,
        authorized: bool,
        knobs: Knobs,
        fault: str | None,
    ) -> Response:
        refused = _auth_refusal(authorized, knobs)
        if refused is not None:
            return refused
        if fault is not None:
            early = await self._fault_response(request, fault, knobs)
            if early is not None:
                return early

        if not isinstance(body, dict):
            return _error(400, "bad_request", "body must be a JSON object")
        parsed = self._parse(body, knobs)
        if isinstance(parsed, Response):
            return parsed
        start, end, page, per_page, requested = parsed
        record.page, record.per_page = page, per_page
        blobs, total = self._page_blobs(record, knobs, start, end, page, per_page)
        record.returned = len(blobs)
        record.total = total
        announced = requested if knobs.hide_page_cap else per_page
        meta = {
            "total": total,
            "per_page": announced,
            "current_page": page,
            "total_pages": math.ceil(total / announced) if announced else 0,
        }
        if fault is not None and fault in _BROKEN_PAGES:
            return _BROKEN_PAGES[fault](meta)
        payload = b'{"data":[' + b",".join(blobs) + b'],"metadata":' + orjson.dumps(meta) + b"}"
        return Response(payload, 200, media_type="application/json")

    def _page_blobs(
        self, record: RequestRecord, knobs: Knobs, start: int, end: int, page: int, per_page: int
    ) -> tuple[list[bytes], int]:
        """The page's serialised events as served (page faults applied) and the window's total."""
        with self._lock:
            self._promote_due()
            blobs, total = self._select(start, end, page, per_page, knobs.order, knobs, record.index)
            if knobs.repeat_page == page and self._take("_repeats_left"):
                record.fault = "repeat-page"
                blobs, _ = self._select(start, end, page - 1, per_page, knobs.order, knobs, record.index)
            elif knobs.short_page == page and blobs and self._take("_shorts_left"):
                record.fault = "short-page"
                blobs = blobs[: max(0, len(blobs) - knobs.short_by)]
        if knobs.lone_surrogates:
            blobs = [_cut_surrogates(b) for b in blobs]
        return blobs, total

    async def _fault_response(self, request: Request, fault: str, knobs: Knobs) -> Response | None:
        if fault == "429":
            return _error(429, "too_many_requests", "rate limit exceeded")
        if fault == "429-retry-after":
            return _error(429, "too_many_requests", "rate limit exceeded", {"Retry-After": knobs.retry_after})
        if fault in ("401", "403"):
            return _error(int(fault), "unauthorized", "token rejected")
        if fault in ("408", "500", "502", "503"):
            return _error(int(fault), "server_error", "simulated failure")
        if fault == "slow":
            # Sleep in slices so stop() never waits for (or cancels) a deliberately slow answer.
            until = time.monotonic() + knobs.slow_seconds
            while not self._stopping and time.monotonic() < until:
                await asyncio.sleep(min(0.05, max(0.0, until - time.monotonic())))
            return None
        if fault == "drop":
            await self._drop(request)
            # uvicorn discards anything sent on an aborted connection; the status is only for the log.
            return Response(status_code=DROPPED)
        return None  # garbage / bad-shape: decided after the page is built

    async def _drop(self, request: Request) -> None:
        server = self._server
        client = request.scope.get("client")
        if server is not None and client is not None:
            for conn in list(server.server_state.connections):
                if getattr(conn, "client", None) == tuple(client):
                    conn.transport.abort()
        # Let uvicorn run connection_lost, so it marks the exchange disconnected and sends nothing.
        for _ in range(3):
            await asyncio.sleep(0)

    def _take(self, counter: str) -> bool:
        """Use one firing of a counted page fault (caller holds the lock); None means unlimited."""
        left = getattr(self, counter)
        if left is None:
            return True
        if left <= 0:
            return False
        setattr(self, counter, left - 1)
        return True

    def _parse(self, body: dict[str, Any], knobs: Knobs) -> tuple[int, int, int, int, int] | Response:
        got = _integers(
            body,
            (
                ("timestamp_from", None),
                ("timestamp_to", None),
                ("page", 1),
                ("per_page", knobs.default_per_page),
            ),
        )
        if isinstance(got, Response):
            return got
        page, per_page = got["page"], got["per_page"]
        if page < 1 or per_page < 1:
            return _error(400, "bad_request", "page and per_page must be >= 1")
        requested = per_page
        if knobs.max_per_page is not None:
            per_page = min(per_page, knobs.max_per_page)
        window = _filter_window(got["timestamp_from"], got["timestamp_to"], int(self.now()), knobs)
        if isinstance(window, Response):
            return window
        start, end = window
        return start, end, page, per_page, requested

    def _select(
        self, start: int, end: int, page: int, per_page: int, order: str, knobs: Knobs, request_index: int
    ) -> tuple[list[bytes], int]:
        """The page's serialised events and the window's total (caller holds the lock)."""
        lo = (bisect.bisect_left if knobs.from_inclusive else bisect.bisect_right)(self._ts, start)
        hi = (bisect.bisect_right if knobs.to_inclusive else bisect.bisect_left)(self._ts, end)
        total = max(0, hi - lo)
        first = (page - 1) * per_page
        if first >= total:
            return [], total
        if order == "asc":
            return self._blobs[lo + first : min(hi, lo + first + per_page)], total
        if order == "desc":
            top = hi - first
            return self._blobs[max(lo, top - per_page) : top][::-1], total
        indices = self._shuffled(lo, hi, request_index if order == "shuffled" else None)
        return [self._blobs[i] for i in indices[first : first + per_page]], total

    def _shuffled(self, lo: int, hi: int, request_index: int | None) -> list[int]:
        if request_index is not None:
            # Unstable: a fresh permutation on every request (the worst case for offset paging).
            indices = list(range(lo, hi))
            random.Random(f"unstable:{self.seed}:{request_index}").shuffle(indices)
            return indices
        cache_key = (lo, hi, self._version)
        if self._order_cache is not None and self._order_cache[0] == cache_key:
            return self._order_cache[1]
        keys = self._keys
        indices = sorted(range(lo, hi), key=keys.__getitem__)
        self._order_cache = (cache_key, indices)
        return indices

    # -- control routes (so another process can drive the simulator) ------------------------

    async def _ctl_configure(self, request: Request) -> Response:
        try:
            knobs = self.configure(**orjson.loads(await request.body()))
        except (ValueError, TypeError) as exc:
            return _error(400, "bad_knob", str(exc))
        return Response(orjson.dumps(asdict(knobs)), media_type="application/json")

    async def _ctl_fail(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        try:
            self.fail_next(*body.get("kinds", []), times=int(body.get("times", 1)))
        except ValueError as exc:
            return _error(400, "bad_fault", str(exc))
        return Response(orjson.dumps({"pending": self.pending_faults()}), media_type="application/json")

    async def _ctl_events(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        added = self.add(body.get("events", []), visible_at=body.get("visible_at"), at=body.get("at"))
        return Response(
            orjson.dumps({"added": added, "visible": self.visible_count()}), media_type="application/json"
        )

    async def _ctl_requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.clear_log()
            return Response(status_code=204)
        return Response(orjson.dumps([asdict(r) for r in self.requests]), media_type="application/json")

    async def _ctl_reset(self, request: Request) -> Response:
        self.reset()
        return Response(status_code=204)

    async def _ctl_state(self, request: Request) -> Response:
        state = {
            "knobs": asdict(self.knobs),
            "visible": self.visible_count(),
            "pending": self.pending_count(),
            "requests": len(self.requests),
            "pending_faults": self.pending_faults(),
        }
        return Response(orjson.dumps(state), media_type="application/json")


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Bulk loads allocate millions of objects that never form cycles; the cyclic collector's
    repeated passes over them would triple the load time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _compact(blob: bytes) -> bytes:
    """A right-sized copy. orjson's result keeps its larger working allocation alive (measured:
    about 4 KiB resident per 250-byte event), which would make a 1M-event store cost gigabytes;
    copying through a memoryview brings it back to the payload size."""
    return bytes(memoryview(blob))


_ASTRAL = re.compile(rb"[\xf0-\xf4][\x80-\xbf]{3}")


def _cut_surrogates(blob: bytes) -> bytes:
    """Each astral character (4 UTF-8 bytes) becomes its high surrogate alone, as a JSON escape."""

    def high(match: re.Match[bytes]) -> bytes:
        code = ord(match.group().decode("utf-8"))
        return b"\\u%04x" % (0xD800 + ((code - 0x10000) >> 10))

    return _ASTRAL.sub(high, blob)


def _auth_refusal(authorized: bool, knobs: Knobs) -> Response | None:
    if not authorized:
        return _error(401, "unauthorized", "invalid or missing token")
    if knobs.auth_status is not None:
        return _error(
            knobs.auth_status,
            "forbidden" if knobs.auth_status == 403 else "unauthorized",
            "token revoked or expired",
        )
    return None


# Faults answered with a broken 200 once the page is known (the metadata goes into "no-data").
_BROKEN_PAGES: dict[str, Callable[[dict[str, Any]], Response]] = {
    "garbage": lambda meta: Response(
        b"<html><body>502 Bad Gateway</body></html>", 200, media_type="text/html"
    ),
    "bad-shape": lambda meta: Response(
        b'{"data": {"unexpected": true}, "metadata": []}', 200, media_type="application/json"
    ),
    "bad-gzip": lambda meta: Response(
        b"definitely not gzip", 200, headers={"Content-Encoding": "gzip"}, media_type="application/json"
    ),
    "no-data": lambda meta: Response(
        b'{"metadata": ' + orjson.dumps(meta) + b"}", 200, media_type="application/json"
    ),
}


def _integers(body: dict[str, Any], names: Sequence[tuple[str, int | None]]) -> dict[str, Any] | Response:
    """The named integer fields of a query body (a default when absent), or the 400 for the first
    that is not an integer."""
    got: dict[str, Any] = {}
    for name, default in names:
        value = body.get(name, default)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            return _error(400, "bad_request", f"{name} must be an integer")
        got[name] = value
    return got


def _filter_window(start: int | None, end: int | None, now: int, knobs: Knobs) -> tuple[int, int] | Response:
    """The [start, end] a query filters on, or the 400 for a window the API refuses."""
    # Only the no-bounds default (last 7 days) is documented; the one-bound cases follow the
    # most plausible reading: an open upper bound is "now", an open lower bound is 7 days back.
    if end is None:
        end = now
    if start is None:
        start = end - DEFAULT_WINDOW
    if end < start:
        return _error(400, "bad_request", "timestamp_to is before timestamp_from")
    if end - start > MAX_SPAN:
        if knobs.over_max_span == "reject":
            return _error(400, "bad_request", "the filter span may be at most 90 days")
        start = end - MAX_SPAN
    return start, end


def _check_knobs(knobs: Knobs) -> None:
    """Raise ValueError for the first knob whose value the simulator cannot serve."""
    if knobs.order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}")
    if knobs.over_max_span not in ("reject", "clamp"):
        raise ValueError("over_max_span must be 'reject' or 'clamp'")
    bad = [k for k in knobs.fault_kinds if k not in FAULT_KINDS]
    if bad:
        raise ValueError(f"unknown fault kinds {bad}; known: {FAULT_KINDS}")
    if knobs.max_per_page is not None and knobs.max_per_page < 1:
        raise ValueError("max_per_page must be >= 1")
    for name in ("repeat_page", "short_page"):
        value = getattr(knobs, name)
        if value is not None and value < 1 + (name == "repeat_page"):
            raise ValueError(f"{name} must be a page number (repeat_page >= 2)")
    if knobs.short_by < 1:
        raise ValueError("short_by must be >= 1")


def _filter_time(event: Any) -> int:
    """The timestamp the API would filter on. Non-integers sort first rather than break the store."""
    ts = event.get("timestamp") if isinstance(event, dict) else None
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return 0
    return int(ts)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return Response(body, status, headers=headers, media_type="application/json")


# -- command line: serve generated data for the demo ------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m sandbox.nordpass_sim",
        description="Serve a simulated NordPass Activity API on 127.0.0.1 with generated events.",
    )
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--days", type=float, default=7.0, help="history to generate, ending now")
    p.add_argument("--per-minute", type=float, default=20.0, help="background event rate")
    p.add_argument("--members", type=int, default=40)
    p.add_argument("--no-incidents", action="store_true", help="skip the scripted incidents")
    p.add_argument("--live", action="store_true", help="keep generating events in real time")
    p.add_argument("--order", choices=ORDERS, default="asc")
    p.add_argument("--max-per-page", type=int, default=None)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--fault-rate", type=float, default=0.0)
    p.add_argument("--late-rate", type=float, default=0.0, help="with --live: share of events published late")
    p.add_argument(
        "--late-seconds", type=float, default=300.0, help="with --live: how late they are published"
    )
    p.add_argument("--exclusive-bounds", action="store_true", help="serve both bounds as exclusive")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from . import datagen

    args = _parse_args(argv)
    # The token comes from the environment, never argv (process lists are readable by others).
    token = os.environ.get("NORDPASS_SIM_TOKEN", "sim-token")
    org = datagen.make_org(args.seed, members=args.members)
    factory = datagen.EventFactory(org, seed=args.seed)
    end = int(time.time())
    start = end - int(args.days * DAY)
    events = factory.background(start, end, per_minute=args.per_minute)
    if not args.no_incidents:
        for incident in datagen.scripted_incidents(factory, start=start, end=end):
            events.extend(incident.events)
    sim = NordPassSimulator(
        token=token,
        seed=args.seed,
        port=args.port,
        order=args.order,
        max_per_page=args.max_per_page,
        latency=args.latency_ms / 1000,
        fault_rate=args.fault_rate,
        fault_seed=args.seed,
        from_inclusive=not args.exclusive_bounds,
        to_inclusive=not args.exclusive_bounds,
    )
    sim.add(events)
    sim.start()
    print(f"NORDPASS_ENDPOINT_URL={sim.url}", flush=True)
    print(f"control: {sim.control_url}/state  events: {sim.visible_count()}  org: {org.domain}", flush=True)
    stop = threading.Event()
    late_rng = random.Random(f"late:{args.seed}")
    try:
        last = end
        while not stop.wait(1.0):
            if not args.live:
                continue
            now = int(time.time())
            # Wait until at least one event is due, or low rates would round down to nothing.
            if (now - last) * args.per_minute / 60 < 1:
                continue
            fresh = factory.background(last, now, per_minute=args.per_minute)
            last = now
            is_late = [late_rng.random() < args.late_rate for _ in fresh]
            late = [e for e, flag in zip(fresh, is_late, strict=True) if flag]
            sim.add(e for e, flag in zip(fresh, is_late, strict=True) if not flag)
            if late:
                # Same timestamps, published later: what a lookback window exists to catch.
                sim.add(late, visible_at=time.time() + args.late_seconds)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
