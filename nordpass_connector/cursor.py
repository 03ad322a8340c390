"""Pure progress tracking: the checkpoint value, the delivered-events ledger and window planning.

Progress is two things:

* ``floor``: every event with ``timestamp >= floor`` that was delivered is recorded in the ledger;
  everything older is settled. The next window starts at ``floor``, so the region between ``floor``
  and the last window's end is re-read on purpose (the trailing overlap that catches late events).
* ``ledger``: a multiset of (content digest, timestamp) of delivered events at or above ``floor``.
  Dedup is a multiset difference against it, so two identical events in one second stay two events.

A window is planned with a frozen ``end`` (the signpost) and stays frozen until it completes, even
across runs: a run that runs out of time leaves it as ``current`` and the next run resumes it.
When a window completes, ``floor`` moves to ``fetched_at - lookback``: events older than that were
visible for at least ``lookback`` seconds when the window was read, so any later arrival older
than that is beyond the lateness we promise to absorb.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from .ports import Window

SCHEMA_VERSION = 1
DIGEST_BYTES = 8  # 64 bits of SHA-256 is plenty to tell apart the events of one overlap region
_ENTRY = struct.Struct(">8sq")
# Table Storage allows 64 KiB per binary property and 1 MiB per entity.
LEDGER_CHUNK_BYTES = 60_000
MAX_LEDGER_CHUNKS = 14
MAX_SPAN_SECONDS = 90 * 86_400  # the Activity API rejects filters wider than 90 days
RETENTION_MARGIN_SECONDS = 3_600


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
            self._encoded += _ENTRY.pack(key, entry[0]) * copies

    def prune_below(self, floor: int) -> None:
        self.entries = {k: v for k, v in self.entries.items() if v[0] >= floor}
        self._encoded = None

    def __len__(self) -> int:
        if self._encoded is not None:
            return len(self._encoded) // _ENTRY.size
        return sum(v[1] for v in self.entries.values())

    def count_between(self, start: int, end: int) -> int:
        return sum(v[1] for v in self.entries.values() if start <= v[0] <= end)

    def seconds(self) -> set[int]:
        return {v[0] for v in self.entries.values()}

    def encode(self) -> bytes:
        if self._encoded is None:
            pack = _ENTRY.pack
            self._encoded = bytearray(
                b"".join(pack(key, ts) * copies for key, (ts, copies) in sorted(self.entries.items()))
            )
        return bytes(self._encoded)

    @classmethod
    def decode(cls, blob: bytes) -> Ledger:
        ledger = cls()
        for key, ts in _ENTRY.iter_unpack(blob):
            ledger.add(key, ts)
        ledger._encoded = bytearray(blob)
        return ledger


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

    @classmethod
    def first_run(cls, *, now: float, backfill_days: float) -> Checkpoint:
        # +1: windows start at floor - 1, so the first one starts exactly `backfill_days` back.
        return cls(floor=int(now - backfill_days * 86_400) + 1)

    def to_fields(self) -> dict[str, Any]:
        blob = self.ledger.encode()
        chunks = [blob[i : i + LEDGER_CHUNK_BYTES] for i in range(0, len(blob), LEDGER_CHUNK_BYTES)]
        if len(chunks) > MAX_LEDGER_CHUNKS:
            raise ValueError(
                f"the dedup ledger holds {len(self.ledger)} events, more than one checkpoint row can "
                "store; lower NORDPASS_MAX_WINDOW_EVENTS or NORDPASS_LOOKBACK_SECONDS"
            )
        fields: dict[str, Any] = {
            "SchemaVersion": SCHEMA_VERSION,
            "Floor": self.floor,
            "CurrentStart": self.current.start if self.current else -1,
            "CurrentEnd": self.current.end if self.current else -1,
            "DoneTo": self.done_to if self.done_to is not None else -1,
            "NewestDelivered": self.newest_delivered if self.newest_delivered is not None else -1,
            "LeaseOwner": self.lease_owner,
            "LeaseUntil": self.lease_until,
            "LedgerChunks": len(chunks),
            "LedgerEvents": len(self.ledger),
        }
        for i, chunk in enumerate(chunks):
            fields[f"Ledger{i}"] = chunk
        return fields

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Checkpoint:
        version = int(fields.get("SchemaVersion", 0))
        if version != SCHEMA_VERSION:
            raise ValueError(f"checkpoint schema version {version} is not {SCHEMA_VERSION}")
        blob = b"".join(bytes(fields[f"Ledger{i}"]) for i in range(int(fields["LedgerChunks"])))
        start, end = int(fields["CurrentStart"]), int(fields["CurrentEnd"])
        done_to, newest = int(fields["DoneTo"]), int(fields["NewestDelivered"])
        return cls(
            floor=int(fields["Floor"]),
            ledger=Ledger.decode(blob),
            current=Window(start, end) if start >= 0 else None,
            done_to=done_to if done_to >= 0 else None,
            newest_delivered=newest if newest >= 0 else None,
            lease_owner=str(fields.get("LeaseOwner", "")),
            lease_until=int(fields.get("LeaseUntil", 0)),
        )


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
    """Move a floor older than the API's reach forward; returns the skipped range, if any."""
    oldest = int(now) - MAX_SPAN_SECONDS + RETENTION_MARGIN_SECONDS
    if checkpoint.floor >= oldest:
        return None
    gap = Gap(checkpoint.floor, oldest)
    checkpoint.floor = oldest
    checkpoint.ledger.prune_below(oldest - 1)
    if checkpoint.current is not None and checkpoint.current.start < oldest:
        checkpoint.current = Window(oldest, max(oldest, checkpoint.current.end))
    return gap


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
    checkpoint.ledger.prune_below(checkpoint.floor - 1)
    checkpoint.current = None
    checkpoint.done_to = max(window.end, checkpoint.done_to or window.end)
