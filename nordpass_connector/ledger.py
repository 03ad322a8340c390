"""The delivered-events ledger: a multiset of (content digest, event time), and its binary form.

Dedup is a multiset difference against it, so two identical events in one second stay two events:
the ledger counts copies per digest, and an event is new when its occurrence index among identical
events is at least the count delivered so far (`delivered`).

Pure: no SDK, no `os`. Where the ledger is stored (chunks, checksums, limits) is the table adapter's
business; here it is only a sequence of 16-byte `ENTRY` records.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from .ports import Window

DIGEST_BYTES = 8  # 64 bits of SHA-256 is plenty to tell apart the events of one overlap region
# One ledger entry as stored: the digest key and the event's time (16 bytes).
ENTRY = struct.Struct(">8sq")


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

    def delivered(self, keys: Sequence[bytes], occurrences: Sequence[int]) -> list[bool]:
        """For each event (its digest key and its occurrence index among identical events): was
        that copy delivered already? Copy ``n`` is when the ledger counts more than ``n`` copies.

        One call per window, not per event: this is on the hot path, and most windows meet an
        empty ledger (a backfill) or hold few delivered events."""
        entries = self.entries
        if not entries:
            return [False] * len(keys)
        get = entries.get
        return [
            n < entry[1] if (entry := get(key)) else False for key, n in zip(keys, occurrences, strict=True)
        ]

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
