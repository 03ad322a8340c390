"""Windows over the checkpoint: the next one to read, retention, the overlap probe, the floor a
completed window leaves, and held-back windows. Pure: no SDK, no `os`.

The checkpoint (`checkpoint.Checkpoint`) is the floor, the ledger and the held windows. A window is planned with a frozen ``end`` (the signpost) and stays frozen until it completes, even
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

from dataclasses import dataclass, replace

from .checkpoint import Checkpoint, HeldWindow
from .ports import Window

MAX_SPAN_SECONDS = 90 * 86_400  # the Activity API rejects filters wider than 90 days
RETENTION_MARGIN_SECONDS = 3_600
MAX_HELD_WINDOWS = 16
MAX_HELD_REASON_CHARS = 200


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
    return window_from(checkpoint.floor, done_to=checkpoint.done_to, now=now, policy=policy, span=span)


def window_from(
    floor: int, *, done_to: int | None, now: float, policy: WindowPolicy, span: int
) -> Window | None:
    """A new window starting at `floor` (one second below it) and at most `span` long, ending no
    later than the newest settled second; None when nothing past `done_to` is settled yet."""
    newest_readable = int(now) - policy.safety_delay_seconds
    start = floor - 1
    if newest_readable <= (done_to if done_to is not None else start):
        return None
    end = min(newest_readable, start + max(1, min(span, policy.max_span_seconds)))
    return Window(start, end)


def window_after(previous: Window, *, now: float, policy: WindowPolicy, span: int) -> Window | None:
    """The window that continues `previous` once it is delivered as backlog (its end is then the
    floor and the signpost): what a checkpoint standing at `previous.end` would plan next."""
    return window_from(previous.end, done_to=previous.end, now=now, policy=policy, span=span)


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


def is_backlog(window: Window, *, fetched_at: float, policy: WindowPolicy) -> bool:
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
