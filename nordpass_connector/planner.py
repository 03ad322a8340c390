"""Which windows a run reads, in what order, and how far ahead: pure scheduling over the checkpoint's
position. No threads, no clock and no I/O: the pipeline passes the time and the budget left, reads
the windows this plans, and reports back what each read found.

Only backlog windows (`windows.is_backlog`) are planned ahead: each starts where the one before it
was planned to end, so they can be read before anything is delivered. A read that comes back
narrowed (too many events for one window) leaves a remainder, which is read next, before the
windows planned after it: the sequence stays contiguous and in time order.

How far ahead follows this run's own pace: the slowest window delivery seen so far. A window
planned now is delivered after those already queued; starting one that cannot finish within the
budget only wastes reads (the next run would read it again), so planning stops when the budget
left is less than the queue ahead of it will take.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .checkpoint import Checkpoint
from .options import RunOptions
from .ports import Window
from .windows import Probe, is_backlog, next_window, overlap_probe, window_after

MIN_SPAN_SECONDS = 60
# Aim new windows at 40 % of the event cap: most need no narrowing, and the windows held at once
# (one being delivered, `windows_ahead` read ahead) stay near 12,000 events: 1M events with 60 %
# took 35 s and 138 MB peak, with 40 % 37 s and 125 MB.
WINDOW_FILL_TARGET = 0.4


@dataclass(frozen=True)
class Read:
    """What the pipeline learnt from reading a planned window."""

    planned: Window  # the window as planned
    window: Window  # as read: the planned one, or its beginning when the read narrowed it
    events: int
    fetched_at: float  # wall-clock time the final read of the window started


@dataclass(frozen=True)
class Next:
    """The windows to read after a read, in addition to those already queued: `first` goes before
    the queue (the rest of a narrowed window), `then` after it."""

    first: Window | None = None
    then: tuple[Window, ...] = ()


@dataclass
class Planner:
    options: RunOptions
    span: int | None = None  # density-based span for planned windows, known after the first read
    slowest_delivery: float = 0.0  # seconds, the longest a handed-over window took to deliver

    def first(
        self, checkpoint: Checkpoint, *, now: float, remaining: float
    ) -> tuple[Window, Probe | None] | None:
        """The run's first new window (with its overlap probe), or None: nothing new to read yet, or
        too little budget left to read one."""
        policy = self.options.window_policy
        window = next_window(checkpoint, now=now, policy=policy, span=policy.max_span_seconds)
        if window is None or remaining <= self.options.min_seconds_for_window:
            return None
        return window, overlap_probe(checkpoint, window)

    def after(self, read: Read, *, queued: Sequence[Window], now: float, remaining: float) -> Next:
        """What to read next, given `read` and the windows already `queued` (planned, not read)."""
        policy = self.options.window_policy
        self.span = self._span_after(read)
        backlog = is_backlog(read.window, fetched_at=read.fetched_at, policy=policy)
        first = None
        if backlog and read.window.end < read.planned.end and queued:
            # Narrowed: the rest of the planned window goes first, before the windows after it.
            first = window_after(
                read.window, now=now, policy=policy, span=read.planned.end - read.window.end + 1
            )
        ahead = [first, *queued] if first is not None else list(queued)
        then: list[Window] = []
        while len(ahead) < max(1, self.options.windows_ahead):
            if ahead:
                # A window not read yet will be read at or after now: if it is backlog now, it
                # will be then.
                last = ahead[-1]
                last_is_backlog = is_backlog(last, fetched_at=now, policy=policy)
            else:
                last, last_is_backlog = read.window, backlog
            needed = max(self.options.min_seconds_for_window, (len(ahead) + 2) * self.slowest_delivery)
            if not last_is_backlog or remaining <= needed:
                break
            following = window_after(last, now=now, policy=policy, span=self.span)
            if following is None:
                break
            ahead.append(following)
            then.append(following)
        return Next(first, tuple(then))

    def delivered(self, seconds: float) -> None:
        """A handed-over window took `seconds` to deliver (the run's pace)."""
        self.slowest_delivery = max(self.slowest_delivery, seconds)

    def _span_after(self, read: Read) -> int:
        """Size the next window from this one's density, so backfills need few narrowing requests."""
        opts = self.options
        scaled = read.window.span * opts.max_window_events * WINDOW_FILL_TARGET / max(1, read.events)
        return int(min(opts.window_policy.max_span_seconds, max(MIN_SPAN_SECONDS, scaled)))
