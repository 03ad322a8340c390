"""Pure progress tracking: the checkpoint value, the delivered-events ledger and window planning.

Progress is three things:

* ``floor``: every event with ``timestamp >= floor`` that was delivered is recorded in the ledger;
  everything older is settled, except inside held windows (below). The next window starts at
  ``floor``, so the region between ``floor`` and the last window's end is re-read on purpose (the
  trailing overlap that catches late events).
* ``ledger``: a multiset of (content digest, timestamp) of delivered events at or above ``floor``
  and inside held windows. Dedup is a multiset difference against it, so two identical events in
  one second stay two events.
* ``held``: windows that could not be read consistently (pages that repeat or come back short
  while the total stays the same, a total that keeps moving). Their events are *not* settled.

A window is planned with a frozen ``end`` (the signpost) and stays frozen until it completes, even
across runs: a run that runs out of time leaves it as ``current`` and the next run resumes it.
When a window completes, ``floor`` moves to ``fetched_at - lookback``: events older than that were
visible for at least ``lookback`` seconds when the window was read, so any later arrival older
than that is beyond the lateness we promise to absorb.

What "keep delivering newer events" means for the floor: a window that cannot be read is not
allowed to stop the connector, nor to be passed over silently. The floor moves past it exactly as
if it had completed (so the windows after it are planned, read and delivered as usual), and the
window is recorded in ``held`` with when and why. Settled therefore means "below the floor and
outside every held window". Pruning keeps the ledger entries inside held windows, so when a held
window is finally read (it is re-read first on every run) the events delivered from it meanwhile
(by an overlapping later window, or partly before the read went wrong) are subtracted exactly as
for any other window: exactly once, late. A held window is only ever dropped unread when it falls
out of the API's 90-day reach, and then it is reported as a skipped gap. Held windows never merge
across settled time (the ledger there is gone); at most ``MAX_HELD_WINDOWS`` are kept, and a
further unreadable window stops the run instead of being skipped.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .ports import Window

DIGEST_BYTES = 8  # 64 bits of SHA-256 is plenty to tell apart the events of one overlap region
# One ledger entry as stored: the digest key and the event's time (16 bytes).
ENTRY = struct.Struct(">8sq")
MAX_SPAN_SECONDS = 90 * 86_400  # the Activity API rejects filters wider than 90 days
RETENTION_MARGIN_SECONDS = 3_600
MAX_HELD_WINDOWS = 16
MAX_HELD_REASON_CHARS = 200
STUCK_AFTER_SECONDS = 3_600  # a window held this long is reported as stuck


@dataclass
class Ledger:
    """Multiset of delivered events: digest prefix -> (timestamp, count).

    The checkpoint is written after every batch, so the encoded form is kept up to date as entries
    are added (16 bytes appended per copy) instead of being rebuilt from the whole ledger each time.
    A multiset needs no order: a copy of a known key is one more record, wherever it sits.
    """

    entries: dict[bytes, list[int]] = field(default_factory=dict)
    _encoded: bytearray | None = field(default=None, init=False, repr=False, compare=False)

    def count(self, digest: bytes) -> int:
        entry = self.entries.get(digest[:DIGEST_BYTES])
        return entry[1] if entry else 0

    def add(self, digest: bytes, timestamp: int, copies: int = 1) -> None:
        key = digest[:DIGEST_BYTES]
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = [timestamp, copies]
        else:
            entry[1] += copies
        if self._encoded is not None:
            self._encoded += ENTRY.pack(key, entry[0]) * copies

    def prune_below(self, floor: int, *, keep: Sequence[Window] = ()) -> None:
        """Forget entries older than `floor`, except those inside a `keep` window (held ones)."""

        def kept(ts: int) -> bool:
            return ts >= floor or any(w.start <= ts <= w.end for w in keep)

        self.entries = {k: v for k, v in self.entries.items() if kept(v[0])}
        self._encoded = None

    def __len__(self) -> int:
        if self._encoded is not None:
            return len(self._encoded) // ENTRY.size
        return sum(v[1] for v in self.entries.values())

    def count_between(self, start: int, end: int) -> int:
        return sum(v[1] for v in self.entries.values() if start <= v[0] <= end)

    def seconds(self) -> set[int]:
        return {v[0] for v in self.entries.values()}

    def encode(self) -> bytes:
        """The entries as `ENTRY` records, a copy per delivered event (the stored form)."""
        if self._encoded is None:
            pack = ENTRY.pack
            self._encoded = bytearray(
                b"".join(pack(key, ts) * copies for key, (ts, copies) in sorted(self.entries.items()))
            )
        return bytes(self._encoded)

    @classmethod
    def decode(cls, blob: bytes) -> Ledger:
        ledger = cls()
        for key, ts in ENTRY.iter_unpack(blob):
            ledger.add(key, ts)
        ledger._encoded = bytearray(blob)
        return ledger


@dataclass(frozen=True)
class HeldWindow:
    """A window whose pages never added up: not settled, re-read at the start of every run."""

    window: Window
    since: int  # wall-clock time it was first held
    reason: str  # the last read's problem, in our own words (no event content)
    attempts: int = 1  # reads that failed so far

    def held_seconds(self, now: float) -> int:
        return max(0, int(now) - self.since)

    def stuck(self, now: float) -> bool:
        return self.held_seconds(now) >= STUCK_AFTER_SECONDS


@dataclass
class Checkpoint:
    """The committed progress of one connector instance."""

    floor: int
    ledger: Ledger = field(default_factory=Ledger)
    current: Window | None = None
    done_to: int | None = None  # signpost of the last completed window
    newest_delivered: int | None = None
    lease_owner: str = ""
    lease_until: int = 0
    held: list[HeldWindow] = field(default_factory=list)

    def held_windows(self) -> list[Window]:
        return [h.window for h in self.held]

    def prune(self) -> None:
        """Forget ledger entries that neither the overlap nor a held window needs any more."""
        self.ledger.prune_below(self.floor - 1, keep=self.held_windows())

    @classmethod
    def first_run(cls, *, now: float, backfill_days: float) -> Checkpoint:
        # +1: windows start at floor - 1, so the first one starts exactly `backfill_days` back.
        return cls(floor=int(now - backfill_days * 86_400) + 1)


@dataclass(frozen=True)
class WindowPolicy:
    lookback_seconds: int
    safety_delay_seconds: int
    max_span_seconds: int = MAX_SPAN_SECONDS


@dataclass(frozen=True)
class Gap:
    """Time the connector can no longer read because the API only reaches back 90 days."""

    start: int
    end: int


def clamp_to_retention(checkpoint: Checkpoint, *, now: float) -> Gap | None:
    """Move a floor (or a held window) older than the API's reach forward; returns the skipped
    range, if any (the envelope of everything skipped)."""
    oldest = int(now) - MAX_SPAN_SECONDS + RETENTION_MARGIN_SECONDS
    skipped: list[tuple[int, int]] = []
    if checkpoint.floor < oldest:
        skipped.append((checkpoint.floor, oldest))
        checkpoint.floor = oldest
        if checkpoint.current is not None and checkpoint.current.start < oldest:
            checkpoint.current = Window(oldest, max(oldest, checkpoint.current.end))
    kept: list[HeldWindow] = []
    for held in checkpoint.held:
        if held.window.start >= oldest:
            kept.append(held)
            continue
        skipped.append((held.window.start, min(held.window.end, oldest)))
        if held.window.end > oldest:
            kept.append(replace(held, window=Window(oldest, held.window.end)))
    if not skipped:
        return None
    checkpoint.held = kept
    checkpoint.prune()
    return Gap(min(s for s, _ in skipped), max(e for _, e in skipped))


def next_window(checkpoint: Checkpoint, *, now: float, policy: WindowPolicy, span: int) -> Window | None:
    """The window to read next, or None when there is nothing new to read yet.

    A window left unfinished by an earlier run is resumed unchanged: its end was frozen then. A new
    window starts one second below ``floor``: if the API's lower bound is exclusive, the events at
    ``floor`` are still returned, and the ledger (kept down to ``floor - 1``) dedups the extra second.
    """
    if checkpoint.current is not None:
        return checkpoint.current
    newest_readable = int(now) - policy.safety_delay_seconds
    start = checkpoint.floor - 1
    if newest_readable <= (checkpoint.done_to if checkpoint.done_to is not None else start):
        return None
    end = min(newest_readable, start + max(1, min(span, policy.max_span_seconds)))
    return Window(start, end)


@dataclass(frozen=True)
class Probe:
    """A cheap check that the re-read part of a window holds nothing new: if the API's total for
    [window.start, end] equals what the ledger holds there, only (end, window.end] needs reading.

    Valid only when the ledger holds no event on either bound, so that the answer does not depend
    on whether the API's bounds are inclusive."""

    end: int
    known_events: int


def overlap_probe(checkpoint: Checkpoint, window: Window) -> Probe | None:
    if checkpoint.done_to is None or checkpoint.current is not None or window.start >= checkpoint.done_to:
        return None
    seconds = checkpoint.ledger.seconds()
    if window.start in seconds:
        return None
    end = min(checkpoint.done_to, window.end)
    while end > window.start and end in seconds:
        end -= 1
    if end <= window.start:
        return None
    return Probe(end, checkpoint.ledger.count_between(window.start, end))


FLOOR_SEARCH_SECONDS = 120


def floor_after(checkpoint: Checkpoint, window: Window, *, fetched_at: float, policy: WindowPolicy) -> int:
    """The floor once `window`, read at `fetched_at`, is delivered.

    A window that ends before the lookback horizon settles up to its end (a backlog window; the
    next one can be planned before this one is delivered). A window reaching into the horizon
    settles to the horizon, moved down to a second with no delivered event when one is near: the
    next window starts there, and an empty bound lets `overlap_probe` answer without knowing the
    API's inclusivity.
    """
    settled = max(checkpoint.floor, min(window.end, int(fetched_at) - policy.lookback_seconds))
    if settled >= window.end:
        return settled
    seconds = checkpoint.ledger.seconds()
    lowest = max(checkpoint.floor, settled - FLOOR_SEARCH_SECONDS)
    candidate = settled
    while candidate - 1 in seconds and candidate > lowest:
        candidate -= 1
    return candidate if candidate - 1 not in seconds else settled


def is_backlog(checkpoint: Checkpoint, window: Window, *, fetched_at: float, policy: WindowPolicy) -> bool:
    """True when `window` lies wholly before the lookback horizon, so `floor_after` is its end."""
    return int(fetched_at) - policy.lookback_seconds >= window.end


def complete_window(
    checkpoint: Checkpoint, window: Window, *, fetched_at: float, policy: WindowPolicy
) -> None:
    """Record that every event of `window` visible at `fetched_at` is delivered (or set aside)."""
    checkpoint.floor = floor_after(checkpoint, window, fetched_at=fetched_at, policy=policy)
    checkpoint.current = None
    checkpoint.done_to = max(window.end, checkpoint.done_to or window.end)
    checkpoint.prune()


def hold_window(
    checkpoint: Checkpoint,
    window: Window,
    *,
    fetched_at: float,
    now: float,
    reason: str,
    policy: WindowPolicy,
) -> bool:
    """Hold back `window`, which could not be read consistently, and move on past it (see the
    module docstring). False, with nothing changed, when `MAX_HELD_WINDOWS` are held already.

    A window overlapping or touching a held one joins it (both keep their ledger entries, so the
    union needs nothing that was pruned); the earlier `since` is kept.
    """
    merged = HeldWindow(window, int(now), reason[:MAX_HELD_REASON_CHARS])
    others: list[HeldWindow] = []
    for held in checkpoint.held:
        if held.window.start <= window.end + 1 and window.start <= held.window.end + 1:
            span = Window(
                min(held.window.start, merged.window.start), max(held.window.end, merged.window.end)
            )
            merged = HeldWindow(span, min(held.since, merged.since), merged.reason, held.attempts + 1)
        else:
            others.append(held)
    if len(others) >= MAX_HELD_WINDOWS:
        return False
    checkpoint.held = sorted([*others, merged], key=lambda h: h.window.start)
    complete_window(checkpoint, window, fetched_at=fetched_at, policy=policy)
    return True


def still_unreadable(checkpoint: Checkpoint, held: HeldWindow, *, reason: str) -> None:
    """A held window failed to read again: count it, keep the latest reason."""
    checkpoint.held = [
        replace(h, reason=reason[:MAX_HELD_REASON_CHARS], attempts=h.attempts + 1) if h == held else h
        for h in checkpoint.held
    ]


def release_held(checkpoint: Checkpoint, held: HeldWindow, read: Window) -> None:
    """`read` (the held window, possibly narrowed to its beginning) was read and delivered. What it
    did not cover stays held, from one second below its end (the bounds' inclusivity is unknown)."""
    rest: list[HeldWindow] = []
    for h in checkpoint.held:
        if h != held:
            rest.append(h)
        elif read.end < h.window.end:
            rest.append(replace(h, window=Window(max(h.window.start, read.end - 1), h.window.end)))
    checkpoint.held = rest
    checkpoint.prune()
