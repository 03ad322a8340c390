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

import json
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import CheckpointDamaged
from .ports import Window

SCHEMA_VERSION = 1
DIGEST_BYTES = 8  # 64 bits of SHA-256 is plenty to tell apart the events of one overlap region
_ENTRY = struct.Struct(">8sq")
# Table Storage allows 64 KiB per binary property and 1 MiB per entity.
LEDGER_CHUNK_BYTES = 60_000
MAX_LEDGER_CHUNKS = 14
MAX_SPAN_SECONDS = 90 * 86_400  # the Activity API rejects filters wider than 90 days
RETENTION_MARGIN_SECONDS = 3_600
MAX_HELD_WINDOWS = 16
MAX_HELD_REASON_CHARS = 200
STUCK_AFTER_SECONDS = 3_600  # a window held this long is reported as stuck
# Any stored time must lie between 0 and this (2**40 s is year 36812): beyond it is damage.
MAX_STORED_SECONDS = 2**40


@dataclass
class Ledger:
    """Multiset of delivered events: digest prefix -> (timestamp, count).

    The checkpoint is written after every batch, so the encoded form is kept up to date as entries
    are added (16 bytes appended per copy) instead of being rebuilt from the whole ledger each time.
    A multiset needs no order: a copy of a known key is one more record, wherever it sits.
    """

    entries: dict[bytes, list[int]] = field(default_factory=dict)
    _encoded: bytearray | None = field(default=None, init=False, repr=False, compare=False)
    # CRC-32 of each complete chunk of the encoding; the encoding only grows at its end until a
    # prune, so a complete chunk's checksum never changes and is computed once.
    _chunk_crcs: list[int] = field(default_factory=list, init=False, repr=False, compare=False)

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

    def prune_below(self, floor: int, *, keep: Sequence[Window] = ()) -> None:
        """Forget entries older than `floor`, except those inside a `keep` window (held ones)."""

        def kept(ts: int) -> bool:
            return ts >= floor or any(w.start <= ts <= w.end for w in keep)

        self.entries = {k: v for k, v in self.entries.items() if kept(v[0])}
        self._encoded = None
        self._chunk_crcs = []

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

    def chunks(self) -> tuple[list[bytes], list[int]]:
        """The encoding in property-sized chunks, with the CRC-32 of each."""
        blob = self.encode()
        chunks = [blob[i : i + LEDGER_CHUNK_BYTES] for i in range(0, len(blob), LEDGER_CHUNK_BYTES)]
        complete = len(blob) // LEDGER_CHUNK_BYTES
        del self._chunk_crcs[complete:]
        for chunk in chunks[len(self._chunk_crcs) : complete]:
            self._chunk_crcs.append(zlib.crc32(chunk))
        crcs = self._chunk_crcs + [zlib.crc32(c) for c in chunks[complete:]]
        return chunks, crcs

    @classmethod
    def decode(cls, blob: bytes) -> Ledger:
        ledger = cls()
        for key, ts in _ENTRY.iter_unpack(blob):
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

    def to_fields(self) -> dict[str, Any]:
        chunks, crcs = self.ledger.chunks()
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
            "LedgerCrcs": ",".join(f"{crc:08x}" for crc in crcs),
            "Held": _encode_held(self.held),
        }
        for i, chunk in enumerate(chunks):
            fields[f"Ledger{i}"] = chunk
        return fields

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Checkpoint:
        """Decode a stored row. Any property that cannot be decoded raises CheckpointDamaged naming
        it: a damaged row is never half-read, guessed at or overwritten. Rows written before the
        ledger checksums (`LedgerCrcs`) and held windows (`Held`) existed decode as before."""
        version = _integer(fields, "SchemaVersion", 0, 0, 2**31)
        if version != SCHEMA_VERSION:
            raise CheckpointDamaged("SchemaVersion", f"version {version} is not {SCHEMA_VERSION}")
        floor = _integer(fields, "Floor", None, 0, MAX_STORED_SECONDS)
        start = _integer(fields, "CurrentStart", None, -1, MAX_STORED_SECONDS)
        end = _integer(fields, "CurrentEnd", None, -1, MAX_STORED_SECONDS)
        if (start < 0) != (end < 0) or end < start:
            raise CheckpointDamaged("CurrentEnd", f"window {start}..{end} is not a window")
        done_to = _integer(fields, "DoneTo", None, -1, MAX_STORED_SECONDS)
        newest = _integer(fields, "NewestDelivered", None, -1, MAX_STORED_SECONDS)
        lease_until = _integer(fields, "LeaseUntil", 0, 0, MAX_STORED_SECONDS)
        lease_owner = fields.get("LeaseOwner", "")
        if not isinstance(lease_owner, str):
            raise CheckpointDamaged("LeaseOwner", f"a {type(lease_owner).__name__}, not text")
        held = _decode_held(fields.get("Held", ""))
        return cls(
            floor=floor,
            ledger=_decode_ledger(fields),
            current=Window(start, end) if start >= 0 else None,
            done_to=done_to if done_to >= 0 else None,
            newest_delivered=newest if newest >= 0 else None,
            lease_owner=lease_owner,
            lease_until=lease_until,
            held=held,
        )


def _integer(fields: dict[str, Any], name: str, default: int | None, low: int, high: int) -> int:
    value = fields.get(name, default)
    if value is None:
        raise CheckpointDamaged(name, "missing")
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointDamaged(name, f"a {type(value).__name__}, not an integer")
    if not low <= value <= high:
        raise CheckpointDamaged(name, f"{value} is outside {low}..{high}")
    return value


def _decode_ledger(fields: dict[str, Any]) -> Ledger:
    count = _integer(fields, "LedgerChunks", None, 0, MAX_LEDGER_CHUNKS)
    missing = [f"Ledger{i}" for i in range(count) if f"Ledger{i}" not in fields]
    if missing:
        raise CheckpointDamaged("LedgerChunks", f"says {count} chunks, but {', '.join(missing)} is missing")
    crcs_text = fields.get("LedgerCrcs")
    crcs: list[int] | None = None
    if crcs_text is not None:
        try:
            if not isinstance(crcs_text, str):
                raise ValueError
            crcs = [int(part, 16) for part in crcs_text.split(",")] if crcs_text else []
        except ValueError:
            raise CheckpointDamaged("LedgerCrcs", "not a list of checksums") from None
        if len(crcs) != count:
            raise CheckpointDamaged("LedgerCrcs", f"{len(crcs)} checksums for {count} ledger chunks")
    parts: list[bytes] = []
    for i in range(count):
        name = f"Ledger{i}"
        chunk = fields.get(name)
        if not isinstance(chunk, bytes | bytearray):
            raise CheckpointDamaged(name, f"a {type(chunk).__name__}, not binary")
        if i < count - 1 and len(chunk) != LEDGER_CHUNK_BYTES:
            raise CheckpointDamaged(
                name, f"{len(chunk)} bytes, not {LEDGER_CHUNK_BYTES} like every chunk but the last"
            )
        if len(chunk) % _ENTRY.size:
            raise CheckpointDamaged(
                name, f"{len(chunk)} bytes is not a whole number of {_ENTRY.size}-byte entries"
            )
        if crcs is not None and zlib.crc32(chunk) != crcs[i]:
            raise CheckpointDamaged(name, "its content does not match its checksum in LedgerCrcs")
        parts.append(bytes(chunk))
    blob = b"".join(parts)
    for i, (_, ts) in enumerate(_ENTRY.iter_unpack(blob)):
        if not 0 <= ts <= MAX_STORED_SECONDS:
            raise CheckpointDamaged(
                f"Ledger{i * _ENTRY.size // LEDGER_CHUNK_BYTES}", f"an entry's time {ts} is impossible"
            )
    ledger = Ledger.decode(blob)
    events = _integer(fields, "LedgerEvents", len(ledger), 0, 2**31)
    if events != len(ledger):
        raise CheckpointDamaged(
            "LedgerEvents", f"{events!r}, but the ledger chunks hold {len(ledger)} entries"
        )
    return ledger


def _encode_held(held: Iterable[HeldWindow]) -> str:
    return json.dumps(
        [[h.window.start, h.window.end, h.since, h.attempts, h.reason] for h in held], separators=(",", ":")
    )


def _decode_held(text: Any) -> list[HeldWindow]:
    if text in ("", None):
        return []
    try:
        if not isinstance(text, str):
            raise TypeError(type(text).__name__)
        items = json.loads(text)
        if not isinstance(items, list) or len(items) > MAX_HELD_WINDOWS:
            raise ValueError("not a list of at most MAX_HELD_WINDOWS")
        held = []
        for start, end, since, attempts, reason in items:
            numbers = (start, end, since, attempts)
            if not all(type(n) is int and 0 <= n <= MAX_STORED_SECONDS for n in numbers):
                raise ValueError("a bound is not a time")
            if not isinstance(reason, str) or end < start:
                raise ValueError("not a window with a reason")
            held.append(HeldWindow(Window(start, end), since, reason, attempts))
    except (TypeError, ValueError, RecursionError):
        raise CheckpointDamaged("Held", "not a list of held windows") from None
    return held


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
