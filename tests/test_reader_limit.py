"""The request limit is shared by every window being read, and a 429 shrinks it for all of them.

The source here is an in-memory `ActivitySource` that counts requests in flight: what is under test
is the reader's own scheduling, which no HTTP detail changes.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nordpass_connector.clock import SystemClock
from nordpass_connector.ports import Page, Window
from nordpass_connector.reader import ConcurrencyLimit, WindowReader
from nordpass_connector.retry import Deadline, RetryCause, RetryLog

PER_PAGE = 10
PAGES = 12


class CountingSource:
    """Every window holds PAGES full pages; each request takes a little while."""

    def __init__(self, *, rate_limit_first: bool = False) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.requests = 0
        self.retry_log = RetryLog()
        self._rate_limit_first = rate_limit_first
        self.limit: ConcurrencyLimit | None = None  # when set, every request checks it is within it
        self.over_limit: list[tuple[int, int]] = []  # (in flight, limit) whenever above it

    def fetch_page(self, window: Window, page: int, *, deadline: Deadline) -> Page:
        with self._lock:
            self.in_flight += 1
            self.requests += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            # The limit only grows while these windows are read (each window read without a 429
            # adds one), so requests in flight above its value at this moment break it.
            if self.limit is not None and self.in_flight > self.limit.current:
                self.over_limit.append((self.in_flight, self.limit.current))
            if self._rate_limit_first:
                # As the HTTP client does when NordPass answers 429 before a successful retry.
                self._rate_limit_first = False
                self.retry_log.record(RetryCause.NORDPASS_RATE_LIMITED)
        time.sleep(0.01)
        with self._lock:
            self.in_flight -= 1
        events: list[Any] = [{"w": window.start, "p": page, "i": i} for i in range(PER_PAGE)]
        return Page(page, events, total=PER_PAGE * PAGES, total_pages=PAGES)


def _read_two_windows_at_once(reader: WindowReader) -> list[int]:
    deadline = Deadline.after(SystemClock(), 30)
    with ThreadPoolExecutor(2) as windows:
        reads = [windows.submit(reader.read, Window(s, s + 60), deadline=deadline) for s in (0, 100)]
        return [len(r.result().events) for r in reads]


def _reader(source: CountingSource, limit: ConcurrencyLimit, pages: ThreadPoolExecutor) -> WindowReader:
    return WindowReader(
        source=source,
        executor=pages,
        clock=SystemClock(),
        per_page=PER_PAGE,
        max_window_events=10_000,
        limit=limit,
        retry_log=source.retry_log,
    )


def test_windows_read_at_once_share_one_limit() -> None:
    source, limit = CountingSource(), ConcurrencyLimit(6)
    with ThreadPoolExecutor(16) as pages:
        counts = _read_two_windows_at_once(_reader(source, limit, pages))
    assert counts == [PER_PAGE * PAGES] * 2
    assert source.requests == 2 * PAGES
    # Two windows with a limit each would have had up to 12 requests out, the page pool allows 16.
    assert 4 <= source.most_in_flight <= 6
    assert limit.in_flight == 0


def test_a_429_halves_the_limit_for_every_window() -> None:
    source, limit = CountingSource(rate_limit_first=True), ConcurrencyLimit(8)
    with ThreadPoolExecutor(16) as pages:
        reader = _reader(source, limit, pages)
        deadline = Deadline.after(SystemClock(), 30)
        reader.read(Window(0, 60), deadline=deadline)
        assert limit.current == 4
        source.most_in_flight, source.limit = 0, limit
        _read_two_windows_at_once(reader)
    # Both windows together stayed within the halved limit: 4 until the first of them finished
    # (which grows it to 5). A limit per window would have let up to 8 out at once.
    assert source.over_limit == []
    assert 1 <= source.most_in_flight <= 5
    assert limit.current == 6  # grew back by one per window read without a 429
    assert limit.in_flight == 0


def test_limit_slots() -> None:
    limit = ConcurrencyLimit(2)
    with limit.slot(), limit.slot():
        assert limit.in_flight == 2
        limit.on_rate_limited()
        assert limit.current == 1
    assert limit.in_flight == 0
    with limit.slot():
        # A third party now has to wait until the slot is given back.
        started = threading.Event()
        entered = threading.Event()

        def third() -> None:
            started.set()
            with limit.slot():
                entered.set()

        waiter = threading.Thread(target=third)
        waiter.start()
        assert started.wait(30)
        assert not entered.wait(0.2), "the halved limit admitted a second request"
    assert entered.wait(30), "a released slot must admit the waiting request"
    waiter.join(30)
    assert limit.in_flight == 0
    for _ in range(5):
        limit.on_success()
    assert limit.current == 2
