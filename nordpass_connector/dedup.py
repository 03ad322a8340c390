"""Pure selection of what to send from a fetched window: map, dedup against the ledger, order.

Dedup counts occurrences: if the ledger says two copies of an event were delivered and the window
now holds three, exactly one (occurrence index 2) is new.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .cursor import DIGEST_BYTES, Ledger
from .mapping import MalformedEvent, PreparedEvent, event_id, prepare, to_row


@dataclass
class Selection:
    rows: list[dict[str, Any]] = field(default_factory=list)
    malformed: list[tuple[str, MalformedEvent]] = field(default_factory=list)  # (event id, event)
    duplicates: int = 0
    newest: int | None = None


def ledger_key(row: dict[str, Any]) -> tuple[bytes, int]:
    """(digest prefix, timestamp) of a mapped row, recovered from its EventId."""
    return bytes.fromhex(row["EventId"][: DIGEST_BYTES * 2]), row["timestamp"]


def select_new(events: Iterable[Any], ledger: Ledger) -> Selection:
    selection = Selection()
    seen: dict[bytes, int] = {}
    fresh: list[tuple[PreparedEvent, int]] = []
    for raw in events:
        event = prepare(raw)
        key = event.digest[:DIGEST_BYTES]
        occurrence = seen.get(key, 0)
        seen[key] = occurrence + 1
        if occurrence < ledger.count(key):
            selection.duplicates += 1
            continue
        if isinstance(event, MalformedEvent):
            selection.malformed.append((event_id(event.digest, occurrence), event))
            continue
        fresh.append((event, occurrence))

    # A stable order (time, digest, occurrence) makes batches reproducible whatever order the API
    # served, and keeps the records of one request close in time.
    fresh.sort(key=lambda item: (item[0].timestamp, item[0].digest, item[1]))
    selection.rows = [to_row(event, occurrence) for event, occurrence in fresh]
    if fresh:
        selection.newest = fresh[-1][0].timestamp
    return selection
