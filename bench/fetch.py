"""`python -m bench.fetch`: the CPU of reading pages, threaded reader against one event loop.

Reading is half of a backfill's CPU, so how pages are fetched was measured, not guessed. Every
variant reads the same backlog (7 days, 100 events per page, windows of ~4,000 events, three
windows at once, up to 35 requests in flight under one shared limit) from `bench.servers`, each in
a fresh process, and reports the process CPU of the reading alone (imports excluded) per event
and per page, and the wall time:

- `threaded`: what ships. `WindowReader` with its page pool and shared `ConcurrencyLimit`, over
  `NordPassClient` and its `KeepAliveTransport` (a stack of keep-alive connections, see
  `nordpass_connector.adapters.keepalive`).
- `threaded-httpx-pool`: the same reader over httpx's `HTTPTransport` with httpcore's pool, as
  shipped before.
- `asyncio-httpx`: the same `WindowReader` (paging, page checks), its page requests on one asyncio
  loop in a thread of its own serving every window, through httpx's `AsyncHTTPTransport`; the
  shared limit is an `asyncio.Semaphore`.
- `asyncio-stack`: the same loop over httpcore's async connections on a stack of our own (the
  async twin of `threaded`), to separate the cost of the event loop from that of the pool.

Pages are parsed as the client parses them in every variant. The async variants are a measuring
prototype: no retries or error translation, which cost nothing while every page succeeds.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpcore
import httpx
import orjson

from nordpass_connector.adapters.nordpass import DEFAULT_TIMEOUT, NordPassClient, _parse_fast
from nordpass_connector.clock import SystemClock
from nordpass_connector.ports import Page, Window
from nordpass_connector.reader import ConcurrencyLimit, WindowReader
from nordpass_connector.retry import Deadline, Retrier, RetryLog, RetryPolicy

REPO = Path(__file__).resolve().parent.parent
VARIANTS = ("threaded", "threaded-httpx-pool", "asyncio-httpx", "asyncio-stack")
PER_PAGE = 100
WINDOW_EVENTS = 4_000  # what the pipeline aims new windows at (40 % of the 10,000 cap)
WINDOWS_AT_ONCE = 3  # the window being delivered and two read ahead
PAGE_THREADS = 32  # the default NORDPASS_FETCH_CONCURRENCY
IN_FLIGHT = PAGE_THREADS + WINDOWS_AT_ONCE  # the shared limit's ceiling, as composition sets it
DAY = 86_400
TIMEOUTS = {"connect": DEFAULT_TIMEOUT.connect, "read": DEFAULT_TIMEOUT.read, "write": 30.0, "pool": 30.0}


def _windows(events: int) -> list[Window]:
    now = int(time.time())
    start, end = now - 7 * DAY, now
    count = max(1, math.ceil(events / WINDOW_EVENTS))
    edges = [start + (end - start) * i // count for i in range(count + 1)]
    return [Window(a, b) for a, b in itertools.pairwise(edges)]


def _threaded(
    url: str, token: str, windows: list[Window], transport: httpx.BaseTransport | None
) -> tuple[int, int]:
    clock = SystemClock()
    retry_log = RetryLog()
    client = NordPassClient(
        endpoint_url=url,
        token=token,
        per_page=PER_PAGE,
        retrier=Retrier(RetryPolicy(), clock, retry_log),
        clock=clock,
        transport=transport,
        max_connections=IN_FLIGHT,
    )
    with client, ThreadPoolExecutor(PAGE_THREADS) as pages, ThreadPoolExecutor(WINDOWS_AT_ONCE) as readers:
        reader = WindowReader(
            source=client,
            executor=pages,
            clock=clock,
            per_page=PER_PAGE,
            max_window_events=10_000,
            limit=ConcurrencyLimit(IN_FLIGHT),
            retry_log=retry_log,
        )
        deadline = Deadline.after(clock, 600)
        fetched = list(readers.map(lambda w: reader.read(w, deadline=deadline), windows))
    return sum(len(f.events) for f in fetched), sum(f.pages for f in fetched)


class _AsyncStack:
    """httpcore's async connections on a stack: the async twin of `keepalive.ConnectionStack`."""

    def __init__(self, url: httpx.URL) -> None:
        self._origin = httpcore.Origin(url.raw_scheme, url.raw_host, url.port or 80)
        self._idle: list[httpcore.AsyncHTTPConnection] = []

    async def post(self, request: httpx.Request) -> tuple[int, bytes]:
        connection = self._idle.pop() if self._idle else httpcore.AsyncHTTPConnection(self._origin)
        raw = httpcore.Request(
            "POST",
            str(request.url),
            headers=request.headers.raw,
            content=request.content,
            extensions=request.extensions,
        )
        response = await connection.handle_async_request(raw)
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        if connection.is_available():
            self._idle.append(connection)
        else:
            await connection.aclose()
        return response.status, content

    async def aclose(self) -> None:
        for connection in self._idle:
            await connection.aclose()


class _HttpxAsync:
    def __init__(self) -> None:
        limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
        self._transport = httpx.AsyncHTTPTransport(limits=limits, retries=0)

    async def post(self, request: httpx.Request) -> tuple[int, bytes]:
        response = await self._transport.handle_async_request(request)
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        return response.status_code, content

    async def aclose(self) -> None:
        await self._transport.aclose()


class _LoopReader(WindowReader):
    """The shipped `WindowReader` (same paging and checks), its page requests on one event loop.

    The loop runs in a thread of its own and serves every window; the shared limit is a semaphore
    on that loop. Window reads stay on their threads and hand their pages to the loop."""

    def bind(
        self, loop: asyncio.AbstractEventLoop, sender: _AsyncStack | _HttpxAsync, url: str, token: str
    ) -> None:
        self._loop, self._sender = loop, sender
        self._target = httpx.URL(url)
        self._headers = httpx.Headers({"Authorization": token, "Content-Type": "application/json"})
        self._gate = asyncio.run_coroutine_threadsafe(_semaphore(IN_FLIGHT), loop).result()

    def _fetch(self, window: Window, number: int, deadline: Deadline) -> Page:
        return asyncio.run_coroutine_threadsafe(self._one(window, number), self._loop).result()

    def _concurrent(self, window: Window, numbers: list[int], deadline: Deadline) -> list[Page]:
        return asyncio.run_coroutine_threadsafe(self._many(window, numbers), self._loop).result()

    async def _many(self, window: Window, numbers: list[int]) -> list[Page]:
        return list(await asyncio.gather(*(self._one(window, n) for n in numbers)))

    async def _one(self, window: Window, number: int) -> Page:
        body = orjson.dumps(
            {"timestamp_from": window.start, "timestamp_to": window.end, "page": number, "per_page": PER_PAGE}
        )
        request = httpx.Request(
            "POST", self._target, headers=self._headers, content=body, extensions={"timeout": TIMEOUTS}
        )
        async with self._gate:
            status, content = await self._sender.post(request)
        page = _parse_fast(content, number) if status == 200 else None
        if page is None:
            raise RuntimeError(f"page {number}: HTTP {status}")
        return page


async def _semaphore(value: int) -> asyncio.Semaphore:
    return asyncio.Semaphore(value)


def _asyncio(url: str, token: str, windows: list[Window], *, own_stack: bool) -> tuple[int, int]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="nordpass-loop")
    thread.start()
    clock = SystemClock()
    sender = _AsyncStack(httpx.URL(url)) if own_stack else _HttpxAsync()
    try:
        with ThreadPoolExecutor(WINDOWS_AT_ONCE) as readers:
            reader = _LoopReader(
                source=_NoSource(),
                executor=readers,  # unused: the loop fetches the pages
                clock=clock,
                per_page=PER_PAGE,
                max_window_events=10_000,
                limit=ConcurrencyLimit(IN_FLIGHT),
                retry_log=RetryLog(),
            )
            reader.bind(loop, sender, url, token)
            deadline = Deadline.after(clock, 600)
            fetched = list(readers.map(lambda w: reader.read(w, deadline=deadline), windows))
    finally:
        asyncio.run_coroutine_threadsafe(sender.aclose(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
    return sum(len(f.events) for f in fetched), sum(f.pages for f in fetched)


class _NoSource:
    def fetch_page(self, window: Window, page: int, *, deadline: Deadline) -> Page:
        raise AssertionError("the loop reader fetches its pages itself")


def _child(args: argparse.Namespace) -> int:
    windows = _windows(args.events)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if args.variant == "threaded":
        events, pages = _threaded(args.url, args.token, windows, None)
    elif args.variant == "threaded-httpx-pool":
        limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
        events, pages = _threaded(
            args.url, args.token, windows, httpx.HTTPTransport(limits=limits, retries=0)
        )
    else:
        events, pages = _asyncio(args.url, args.token, windows, own_stack=args.variant == "asyncio-stack")
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    print(orjson.dumps({"events": events, "pages": pages, "cpu_seconds": cpu, "wall_seconds": wall}).decode())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fetch", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--latency-ms", default="0,50", help="NordPass latencies to measure, comma-separated")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per variant and latency (median reported)"
    )
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # the child's side
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant:
        return _child(args)

    from sandbox.certs import ensure_certs

    from .run import Servers

    summary: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nordpass-fetch-") as tmp:
        servers = Servers(
            args.events, ensure_certs(Path(tmp) / "certs").folder, token=f"bench-{uuid.uuid4().hex}"
        )
        try:
            for latency in (float(x) for x in args.latency_ms.split(",") if x):
                servers.prepare(nordpass_ms=latency, ingestion_ms=0)
                runs: dict[str, list[dict[str, Any]]] = {v: [] for v in args.variants.split(",")}
                for _ in range(args.repeat):
                    for variant in runs:  # interleaved, so machine load spreads over every variant
                        done = subprocess.run(
                            [
                                sys.executable,
                                "-m",
                                "bench.fetch",
                                "--variant",
                                variant,
                                "--events",
                                str(args.events),
                                "--url",
                                servers.info["nordpass_url"],
                                "--token",
                                servers.info["nordpass_token"],
                            ],
                            cwd=REPO,
                            env=os.environ,
                            capture_output=True,
                            text=True,
                            timeout=600,
                            check=False,
                        )
                        if done.returncode != 0:
                            raise RuntimeError(f"{variant} failed:\n{done.stderr[-3000:]}")
                        runs[variant].append(orjson.loads(done.stdout.strip().splitlines()[-1]))
                for variant, results in runs.items():
                    cpu = statistics.median(r["cpu_seconds"] for r in results)
                    row = {
                        "variant": variant,
                        "nordpass_latency_ms": latency,
                        "events": results[0]["events"],
                        "pages": results[0]["pages"],
                        "cpu_us_per_event": round(cpu * 1e6 / results[0]["events"], 2),
                        "cpu_us_per_page": round(cpu * 1e6 / results[0]["pages"]),
                        "wall_seconds": round(statistics.median(r["wall_seconds"] for r in results), 2),
                        "runs": len(results),
                    }
                    summary.append(row)
                    print(orjson.dumps(row).decode(), flush=True)
        finally:
            servers.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
