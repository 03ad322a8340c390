"""Reading one closed window completely, whatever the API's paging quirks.

The API's sort order, bound inclusivity and page-size cap are unknown, so a window is read whole
before anything of it is sent, and the pipeline sorts it locally. Pages after the first are fetched
concurrently.

Paging trusts the data, not the metadata. `per_page` and `total_pages` are hints; what a page holds
decides. The first page that is not the last shows the page size the server really uses (it may
clamp `per_page` without saying so), and the window is read page by page until the events add up
to the `total` (or, with no total, until an empty page). Every page is checked against the one
before it and against the total, and a page that is wrong is fetched again on its own:

- a page identical to the previous one (offset paging over a shifting set): fetched again;
- a page that begins with the events the previous one ended with: fetched again once, then taken
  as it is (identical events do legitimately repeat across a page boundary);
- a page shorter than the page size while the total says more follow: fetched again;
- a page longer than the page size: the size was underestimated, so earlier pages were short;
- a total that moves between pages (late inserts shift offset pages): the whole window is read again.

The number of pages is bounded by what the window can hold (its total over the smallest page size
seen, plus a margin), never by `total_pages`. A window whose pages never add up is not guessed at:
`WindowUnreadable` says why, and the pipeline holds the window back and re-reads it on later runs.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock
from .errors import WindowUnreadable
from .ports import ActivitySource, Page, Window
from .retry import Deadline, RetryCause, RetryLog
from .windows import Probe

log = logging.getLogger(__name__)

READ_ATTEMPTS = 3  # whole-window reads while the total keeps moving
PAGE_REFETCHES = 2  # extra fetches of one page that came back wrong
# Pages beyond what the total needs at the smallest page size seen: a server that keeps returning
# pages must not keep us busy forever.
PAGE_MARGIN = 5
SHRINK_HEADROOM = 0.8
SLOT_WAIT_SECONDS = 0.05  # re-check period while every request slot is taken


@dataclass
class FetchedWindow:
    window: Window
    events: list[Any]
    pages: int
    fetched_at: float  # wall-clock time the final read of the window started
    repaired: list[Any] = field(default_factory=list)  # events whose broken characters were replaced
    unreadable: str | None = None  # why the window could not be read (then `events` is empty)


class _Inconsistent(Exception):
    """The pages read so far do not add up; `reread` when reading the window again can help."""

    def __init__(self, reason: str, *, reread: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reread = reread


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
        Raises WindowUnreadable when the pages never add up (see the module docstring).
        """
        rate_limited_before = self.retry_log.count(RetryCause.NORDPASS_RATE_LIMITED)
        try:
            if probe is not None:
                started = self.clock.now()
                head = self._fetch(Window(window.start, probe.end), 1, deadline)
                if head.total is not None and head.total == probe.known_events:
                    try:
                        tail = self._read(Window(probe.end, window.end), deadline=deadline)
                    except WindowUnreadable as unreadable:
                        narrowed = Window(window.start, unreadable.window.end)
                        raise WindowUnreadable(
                            narrowed, unreadable.reason, fetched_at=started, pages=unreadable.pages + 1
                        ) from None
                    return FetchedWindow(
                        Window(window.start, tail.window.end),
                        head.events + tail.events,
                        tail.pages + 1,
                        min(started, tail.fetched_at),
                        repaired=[*head.repaired, *tail.repaired],
                    )
            return self._read(window, deadline=deadline)
        finally:
            if self.retry_log.count(RetryCause.NORDPASS_RATE_LIMITED) > rate_limited_before:
                self.limit.on_rate_limited()
            else:
                self.limit.on_success()

    def _read(self, window: Window, *, deadline: Deadline) -> FetchedWindow:
        requested = [0]
        reason = ""
        started = self.clock.now()
        for attempt in range(1, READ_ATTEMPTS + 1):
            started = self.clock.now()
            first = self._fetch(window, 1, deadline)
            requested[0] += 1
            while first.total is not None and first.total > self.max_window_events and window.span > 1:
                narrower = max(1, int(window.span * self.max_window_events * SHRINK_HEADROOM / first.total))
                window = Window(window.start, window.start + narrower)
                started = self.clock.now()
                first = self._fetch(window, 1, deadline)
                requested[0] += 1
            try:
                pages = self._collect(window, first, deadline, requested)
            except _Inconsistent as problem:
                reason = problem.reason
                if not problem.reread or attempt == READ_ATTEMPTS:
                    break
                # Normal over a live result set (an insert shifts offset pages): a detail, not news.
                log.debug("window %s..%s: %s; reading it again", window.start, window.end, reason)
                continue
            events = [event for page in pages for event in page.events]
            repaired = [event for page in pages for event in page.repaired]
            return FetchedWindow(window, events, requested[0], started, repaired=repaired)
        raise WindowUnreadable(window, reason, fetched_at=started, pages=requested[0])

    def _page_cap(self, total: int | None, size: int) -> int:
        if total is None:
            return self.max_pages_without_total
        return math.ceil(max(total, 1) / max(size, 1)) + PAGE_MARGIN

    def _collect(self, window: Window, first: Page, deadline: Deadline, requested: list[int]) -> list[Page]:
        """The pages of `window` that together hold every event once, checked page by page."""
        whole = _first_page_is_whole(first)
        if whole:
            return [first]
        total = first.total
        # The first page, not being the last, shows the page size the server really uses.
        walk = _PageWalk(window, total, size=len(first.events), cap=self._page_cap(total, len(first.events)))
        walk.cache[1] = first
        if total is not None:
            ahead = list(range(2, min(walk.cap, math.ceil(total / walk.size)) + 1))
            for page in self._concurrent(window, ahead, deadline):
                walk.cache[page.number] = page
            requested[0] += len(ahead)
        while True:
            walk.check_cap()
            cached = walk.cache.get(walk.number)
            if cached is None:
                cached = walk.cache[walk.number] = self._fetch(window, walk.number, deadline)
                requested[0] += 1
            if walk.take(cached):
                break
        walk.check_nothing_beyond()
        return walk.accepted

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


def _first_page_is_whole(first: Page) -> bool:
    """Whether page 1 alone is the window (raising when it contradicts its own total)."""
    total, size = first.total, len(first.events)
    if not first.events:
        if total:
            raise _Inconsistent(f"page 1 was empty while the total was {total}", reread=True)
        return True
    if total is not None and size >= total:
        if size > total:
            raise _Inconsistent(f"page 1 held {size} events, more than the total {total}", reread=True)
        return True
    return False


@dataclass
class _PageWalk:
    """Where paging one window stands: the pages accepted so far, the next page to take, the page
    size learnt from the data, and how often each page was fetched again. `take` judges one page
    against the total and the page before it; a page that is wrong is dropped from the cache, so
    the next turn fetches it again."""

    window: Window
    total: int | None
    size: int
    cap: int
    cache: dict[int, Page] = field(default_factory=dict)
    accepted: list[Page] = field(default_factory=list)
    count: int = 0
    number: int = 1
    refetches: dict[int, int] = field(default_factory=dict)

    def check_cap(self) -> None:
        if self.number > self.cap:
            events = self.total if self.total is not None else "an unknown number of"
            raise _Inconsistent(
                f"more than {self.cap} pages for {events} events; the API is not advancing pages",
                reread=False,
            )

    def take(self, page: Page) -> bool:
        """Judge `page` (the current number); True when the window is complete."""
        total = self.total
        if total is not None and page.total is not None and page.total != total:
            raise _Inconsistent(f"the total moved from {total} to {page.total} while paging", reread=True)
        if not page.events:
            if total is None or self.count == total:
                return True
            self._again(f"page {self.number} was empty after {self.count} of {total} events")
            return False
        problem = self._earlier_page_was_short(page) or self._problem(page)
        if problem:
            self._again(problem)
            return False
        self.accepted.append(page)
        self.count += len(page.events)
        if total is not None and self.count >= total:
            if self.count > total:
                raise _Inconsistent(
                    f"the pages held {self.count} events, more than the total {total}", reread=True
                )
            return True
        self.number += 1
        return False

    def check_nothing_beyond(self) -> None:
        if self.total is not None and any(p.events for n, p in self.cache.items() if n > self.number):
            raise _Inconsistent(
                f"pages after the last one held events beyond the total {self.total}", reread=True
            )

    def _earlier_page_was_short(self, page: Page) -> str | None:
        """What `page` shows about pages already accepted; steps back to the first wrong one."""
        previous = self.accepted[-1] if self.accepted else None
        if self.total is None and previous is not None and len(previous.events) < self.size:
            # With no total, a short page was taken as the last; more came, so it was not.
            self._rewind(len(self.accepted) - 1)
            return f"page {self.number} came back with {len(previous.events)} of {self.size} events, not last"
        if len(page.events) > self.size:
            # The page size is larger than the first page suggested: pages taken at the smaller
            # size were short. Go back to the first of them.
            self.size = len(page.events)
            short = next((i for i, p in enumerate(self.accepted) if len(p.events) < self.size), None)
            if short is not None:
                self._rewind(short)
                return f"page {self.number} was shorter than the {self.size} events of later pages"
        return None

    def _problem(self, page: Page) -> str | None:
        """What is wrong with `page` itself, next to the page before it and the total."""
        previous = self.accepted[-1] if self.accepted else None
        got = len(page.events)
        if previous is not None and page.events == previous.events:
            return f"page {self.number} repeated page {previous.number}"
        if (
            previous is not None
            and page.events[0] == previous.events[-1]
            and self.number not in self.refetches
        ):
            return f"page {self.number} began with the events page {previous.number} ended with"
        if self.total is not None and self.count + got < self.total and got < self.size:
            return (
                f"page {self.number} came back with {got} of {self.size} events while the total says "
                "more follow"
            )
        return None

    def _rewind(self, index: int) -> None:
        self.number = self.accepted[index].number
        del self.accepted[index:]
        self.count = sum(len(p.events) for p in self.accepted)

    def _again(self, problem: str) -> None:
        """Fetch the current page once more, or give up on the window if it keeps coming back wrong."""
        done = self.refetches.get(self.number, 0)
        if done >= PAGE_REFETCHES:
            raise _Inconsistent(f"{problem} ({done + 1} fetches)", reread=False)
        self.refetches[self.number] = done + 1
        log.debug("window %s..%s: %s; fetching it again", self.window.start, self.window.end, problem)
        self.cache.pop(self.number, None)
