"""Paging by the data: the window reader against an in-memory source that misbehaves on purpose.

The HTTP side is covered end to end (tests/test_misbehaviour.py); here each paging quirk is pinned
on its own, including the ones the simulator has no knob for (no total at all, a total that moves,
a server that ignores the page number).
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from nordpass_connector.clock import SystemClock
from nordpass_connector.errors import WindowUnreadable
from nordpass_connector.ports import Page, Window
from nordpass_connector.reader import ConcurrencyLimit, WindowReader
from nordpass_connector.retry import Deadline, RetryLog

PER_PAGE = 10
WINDOW = Window(0, 600)


@dataclass
class Source:
    """`events` served in order, `serves` per page (a silent cap), with scripted page faults."""

    events: list[dict[str, Any]]
    serves: int = PER_PAGE
    with_total: bool = True
    repeat: dict[int, int] = field(default_factory=dict)  # page -> answers that repeat page - 1
    short: dict[int, int] = field(default_factory=dict)  # page -> answers one event short
    total_moves: int = 0  # answers whose total is one more than the truth
    ignore_page: bool = False
    requests: Counter[int] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fetch_page(self, window: Window, page: int, *, deadline: Deadline) -> Page:
        with self._lock:
            self.requests[page] += 1
            served = 1 if self.ignore_page else page
            if self.repeat.get(page, 0) > 0:
                self.repeat[page] -= 1
                served = page - 1
            events = self.events[(served - 1) * self.serves : served * self.serves]
            if self.short.get(page, 0) > 0 and events:
                self.short[page] -= 1
                events = events[:-1]
            total = len(self.events)
            if self.total_moves > 0 and page > 1:
                self.total_moves -= 1
                total += 1
        return Page(page, list(events), total if self.with_total else None, None)


def reader(source: Source) -> WindowReader:
    return WindowReader(
        source=source,
        executor=POOL,
        clock=SystemClock(),
        per_page=PER_PAGE,
        max_window_events=10_000,
        limit=ConcurrencyLimit(4),
        retry_log=RetryLog(),
    )


POOL = ThreadPoolExecutor(4)


def events(n: int, *, same: bool = False) -> list[dict[str, Any]]:
    return [{"timestamp": 100, "n": 0 if same else i} for i in range(n)]


def read(source: Source) -> list[Any]:
    return reader(source).read(WINDOW, deadline=Deadline.after(SystemClock(), 10)).events


def multiset(items: list[Any]) -> Counter[str]:
    return Counter(repr(sorted(e.items())) for e in items)


@pytest.mark.parametrize("with_total", [True, False])
@pytest.mark.parametrize("serves", [PER_PAGE, 7, 1])
def test_a_silently_clamped_page_size_is_paged_to_the_end(with_total: bool, serves: int) -> None:
    source = Source(events(53), serves=serves, with_total=with_total)
    assert multiset(read(source)) == multiset(source.events)
    pages = -(-53 // serves)
    # With a total, no page beyond the data; without, one empty page says it ended.
    assert max(source.requests) == pages + (0 if with_total else 1)
    assert all(count == 1 for count in source.requests.values())


@pytest.mark.parametrize("with_total", [True, False])
@pytest.mark.parametrize("page", [1, 2, 4])
def test_a_short_page_is_fetched_again_alone(with_total: bool, page: int) -> None:
    source = Source(events(53), with_total=with_total, short={page: 1})
    assert multiset(read(source)) == multiset(source.events)
    assert source.requests[page] == 2
    assert sum(source.requests.values()) <= 6 + 2 + (0 if with_total else 1)


@pytest.mark.parametrize("with_total", [True, False])
def test_a_repeated_page_is_fetched_again_alone(with_total: bool) -> None:
    source = Source(events(53), with_total=with_total, repeat={3: 1})
    assert multiset(read(source)) == multiset(source.events)
    assert source.requests[3] == 2 and source.requests[2] == 1


def test_a_moving_total_reads_the_window_again() -> None:
    source = Source(events(53), total_moves=1)
    assert multiset(read(source)) == multiset(source.events)
    assert source.requests[1] == 2


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"repeat": {3: 99}}, "page 3 repeated page 2"),
        ({"short": {2: 99}}, "page 2 came back with 9 of 10 events"),
        ({"total_moves": 99}, "the total moved"),
        ({"ignore_page": True}, "page 2 repeated page 1"),
    ],
)
def test_a_window_that_never_adds_up_is_unreadable_with_its_reason(
    fault: dict[str, Any], reason: str
) -> None:
    source = Source(events(53), **fault)
    with pytest.raises(WindowUnreadable) as caught:
        read(source)
    assert reason in caught.value.reason and caught.value.window == WINDOW
    assert sum(source.requests.values()) <= 3 * (6 + 3), "bounded"


def test_identical_events_across_a_page_boundary_are_taken_after_one_more_look() -> None:
    # 12 identical events: page 2 begins with what page 1 ended with, legitimately.
    source = Source(events(5) + events(12, same=True) + events(4))
    got = read(source)
    assert multiset(got) == multiset(source.events)
    assert source.requests[2] == 2 and source.requests[3] == 1


def test_pages_without_a_total_that_never_end_are_bounded() -> None:
    source = Source(events(53), with_total=False, ignore_page=True)
    with pytest.raises(WindowUnreadable, match="repeated"):
        read(source)
