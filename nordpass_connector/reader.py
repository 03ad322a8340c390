"""Reading one closed window completely, whatever the API's paging quirks.

The API's sort order, bound inclusivity and page-size cap are unknown, so a window is read whole
before anything of it is sent, and the pipeline sorts it locally. Pages after the first are fetched
concurrently. A window whose `total` moves while it is being paged (late inserts shift offset pages)
is read again; after that the ledger's dedup absorbs any repeat.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock
from .cursor import Probe
from .errors import SourceProtocolError
from .ports import ActivitySource, Page, Window
from .retry import Deadline, RetryLog

log = logging.getLogger(__name__)

READ_ATTEMPTS = 3
# Never follow more pages than the API announced plus this margin, and never more than the cap
# when it announces nothing: a server that keeps returning pages must not keep us busy forever.
PAGE_MARGIN = 5
SHRINK_HEADROOM = 0.8
RATE_LIMIT_CAUSE = "nordpass:429"
SLOT_WAIT_SECONDS = 0.05  # re-check period while every request slot is taken


@dataclass
class FetchedWindow:
    window: Window
    events: list[Any]
    pages: int
    fetched_at: float  # wall-clock time the final read of the window started
    stable: bool = True
    probed: bool = False  # the re-read part was verified by count instead of read in full


@dataclass
class ConcurrencyLimit:
    """Additive-increase / multiplicative-decrease limit on NordPass requests in flight.

    One limit is shared by every window being read (windows are read ahead concurrently), so a
    429 slows the connector as a whole, not each window on its own. It halves after a window
    during which NordPass answered 429 and grows by one after a window read without one, within
    [1, ceiling]. A request holds a slot (`slot()`) while it runs; the ceiling is every thread that
    can send one, so the limit only bites after a 429.
    """

    ceiling: int
    current: int = 0
    in_flight: int = 0
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def __post_init__(self) -> None:
        self.current = self.current or self.ceiling

    def on_rate_limited(self) -> None:
        with self._changed:
            self.current = max(1, self.current // 2)

    def on_success(self) -> None:
        with self._changed:
            self.current = min(self.ceiling, self.current + 1)
            self._changed.notify()

    def release(self) -> None:
        with self._changed:
            self.in_flight -= 1
            self._changed.notify()

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._changed:
            # The timeout only guards against a missed wake-up; a release notifies a waiter.
            while self.in_flight >= self.current:
                self._changed.wait(SLOT_WAIT_SECONDS)
            self.in_flight += 1
        try:
            yield
        finally:
            self.release()


@dataclass
class WindowReader:
    source: ActivitySource
    executor: Executor
    clock: Clock
    per_page: int
    max_window_events: int
    limit: ConcurrencyLimit
    retry_log: RetryLog
    max_pages_without_total: int = 10_000

    def read(self, window: Window, *, deadline: Deadline, probe: Probe | None = None) -> FetchedWindow:
        """Every event of `window` (possibly narrowed to stay under `max_window_events`).

        With a `probe`, the re-read part of the window is first counted with one request; when the
        API's total matches the ledger, only the rest is read, so an idle tick costs two requests.
        """
        rate_limited_before = self.retry_log.count(RATE_LIMIT_CAUSE)
        try:
            if probe is not None:
                started = self.clock.now()
                head = self._fetch(Window(window.start, probe.end), 1, deadline)
                if head.total is not None and head.total == probe.known_events:
                    tail = self._read(Window(probe.end, window.end), deadline=deadline)
                    return FetchedWindow(
                        Window(window.start, tail.window.end),
                        head.events + tail.events,
                        tail.pages + 1,
                        min(started, tail.fetched_at),
                        stable=tail.stable,
                        probed=True,
                    )
            return self._read(window, deadline=deadline)
        finally:
            if self.retry_log.count(RATE_LIMIT_CAUSE) > rate_limited_before:
                self.limit.on_rate_limited()
            else:
                self.limit.on_success()

    def _read(self, window: Window, *, deadline: Deadline) -> FetchedWindow:
        pages_requested = 0
        for attempt in range(1, READ_ATTEMPTS + 1):
            started = self.clock.now()
            first = self._fetch(window, 1, deadline)
            pages_requested += 1
            while first.total is not None and first.total > self.max_window_events and window.span > 1:
                narrower = max(1, int(window.span * self.max_window_events * SHRINK_HEADROOM / first.total))
                window = Window(window.start, window.start + narrower)
                started = self.clock.now()
                first = self._fetch(window, 1, deadline)
                pages_requested += 1

            pages = [first, *self._rest(window, first, deadline)]
            pages_requested += len(pages) - 1
            events = [event for page in pages for event in page.events]
            totals = {page.total for page in pages if page.total is not None}
            stable = len(totals) <= 1 and (first.total is None or len(events) == first.total)
            if stable or attempt == READ_ATTEMPTS:
                if not stable:
                    log.warning(
                        "window %s..%s kept changing while being read (%d attempts); "
                        "continuing with the last read, dedup absorbs repeats",
                        window.start,
                        window.end,
                        attempt,
                    )
                return FetchedWindow(window, events, pages_requested, started, stable=stable)
            log.info("window %s..%s changed while paging; reading it again", window.start, window.end)
        raise AssertionError("unreachable")  # pragma: no cover

    def _rest(self, window: Window, first: Page, deadline: Deadline) -> list[Page]:
        if not first.events:
            return []
        if first.total_pages is None:
            return self._sequential(window, first, deadline, stop_after=self.max_pages_without_total)
        announced = list(range(2, first.total_pages + 1))
        pages = self._concurrent(window, announced, deadline)
        fetched = len(first.events) + sum(len(p.events) for p in pages)
        last = pages[-1] if pages else first
        if first.total is not None and fetched < first.total and last.events:
            # The server announced fewer pages than its total needs (a silently clamped per_page):
            # keep going one page at a time until an empty page.
            pages += self._sequential(window, last, deadline, stop_after=first.total_pages + PAGE_MARGIN)
        return pages

    def _fetch(self, window: Window, number: int, deadline: Deadline) -> Page:
        with self.limit.slot():
            return self.source.fetch_page(window, number, deadline=deadline)

    def _concurrent(self, window: Window, numbers: list[int], deadline: Deadline) -> list[Page]:
        results: dict[int, Page] = {}
        pending: set[Future[Page]] = set()
        queue = list(reversed(numbers))
        futures: dict[Future[Page], int] = {}
        try:
            while queue or pending:
                # Each window queues at most `current` pages; the shared pool takes them oldest
                # window first, and `_fetch` holds the shared slot only while the request runs.
                while queue and len(pending) < self.limit.current:
                    number = queue.pop()
                    future = self.executor.submit(self._fetch, window, number, deadline)
                    futures[future] = number
                    pending.add(future)
                # Refill as soon as any page is back: waiting for the whole round would leave
                # slots idle behind the slowest page of every round.
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    results[futures[future]] = future.result()
        finally:
            for future in pending:
                future.cancel()
        return [results[n] for n in numbers]

    def _sequential(
        self, window: Window, previous: Page, deadline: Deadline, *, stop_after: int
    ) -> list[Page]:
        pages: list[Page] = []
        number = previous.number
        while number < stop_after:
            number += 1
            page = self._fetch(window, number, deadline)
            if not page.events:
                break
            if page.events == previous.events:
                raise SourceProtocolError(
                    f"page {number} repeated page {number - 1}; the API is not advancing pages"
                )
            pages.append(page)
            previous = page
        else:
            raise SourceProtocolError(f"more than {stop_after} pages in one window; stopping to avoid a loop")
        return pages
