"""Pure selection of what to send from a fetched window: map, dedup against the ledger, order.

Dedup counts occurrences: if the ledger says two copies of an event were delivered and the window
now holds three, exactly one (occurrence index 2) is new (`mapping.occurrences`, `Ledger.delivered`).
This is most of the connector's CPU per event, so it works a window at a time: the digests first,
then the numbering and the ledger check for all of them, then one mapping per new event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from .ledger import DIGEST_BYTES, Ledger
from .mapping import (
    MAX_PLAUSIBLE_SECONDS,
    MalformedEvent,
    PreparedEvent,
    canonical_digest,
    classify,
    digest_prefix,
    event_id,
    fast_row,
    occurrences,
    to_row,
)


@dataclass
class Selection:
    """What to send from a window, in order. `keys[i]` is `ledger_key(rows[i])`, known without
    parsing the row back (pass it to `batching.pack`)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    malformed: list[tuple[str, MalformedEvent]] = field(default_factory=list)  # (event id, event)
    duplicates: int = 0
    newest: int | None = None
    keys: list[tuple[bytes, int]] = field(default_factory=list)


def ledger_key(row: dict[str, Any]) -> tuple[bytes, int]:
    """(digest prefix, timestamp) of a mapped row, recovered from its EventId."""
    return digest_prefix(row["EventId"]), row["timestamp"]


def select_new(events: Iterable[Any], ledger: Ledger) -> Selection:
    """What to send from a window's events: each mapped once (`mapping.fast_row` for the common
    event, `mapping.to_row` for any other), minus the copies the ledger says were delivered, in a
    stable order. An event that cannot be mapped is set aside with its reason, never dropped."""
    raws = events if isinstance(events, list) else list(events)
    digests, keys = _digests(raws)
    numbers = occurrences(keys)
    delivered = ledger.delivered(keys, numbers)
    malformed: list[tuple[str, MalformedEvent]] = []
    # (timestamp, digest, occurrence) is unique (same digest, different occurrence), so sorting the
    # tuples themselves never compares the keys or rows behind it.
    fresh: list[tuple[int, bytes, int, tuple[bytes, int], dict[str, Any]]] = []
    append = fresh.append
    duplicates = 0
    for raw, digest, key, occurrence, done in zip(raws, digests, keys, numbers, delivered, strict=True):
        if done:
            duplicates += 1
            continue
        try:
            timestamp = raw.get("timestamp") if type(raw) is dict else None
            if type(timestamp) is not int or not 0 <= timestamp < MAX_PLAUSIBLE_SECONDS:
                event = classify(raw, digest)
                if isinstance(event, MalformedEvent):
                    malformed.append((event_id(digest, occurrence), event))
                    continue
                timestamp = event.timestamp
            eid = event_id(digest, occurrence)
            row = fast_row(raw, timestamp, eid) or to_row(PreparedEvent(timestamp, digest, raw), occurrence)
            append((timestamp, digest, occurrence, (key, timestamp), row))
        except Exception as exc:  # noqa: BLE001 - one unmappable event must never block its page
            # Set aside with its reason, under the digest the dedup check above computes too (so
            # the overlap of a later window finds it in the ledger and does not set it aside again).
            reason = f"event could not be mapped ({type(exc).__name__})"
            malformed.append((event_id(digest, 0), MalformedEvent(reason, digest, raw)))

    # A stable order (time, digest, occurrence) makes batches reproducible whatever order the API
    # served, and keeps the records of one request close in time.
    fresh.sort()
    return Selection(
        rows=[item[4] for item in fresh],
        malformed=malformed,
        duplicates=duplicates,
        newest=fresh[-1][0] if fresh else None,
        keys=[item[3] for item in fresh],
    )


def _digests(events: list[Any]) -> tuple[list[bytes], list[bytes]]:
    """Each event's `canonical_digest` and ledger key: orjson's sorted form directly for what it
    can serialise (nearly everything), the general function for the rest."""
    dumps, sort_keys, sha256 = orjson.dumps, orjson.OPT_SORT_KEYS, hashlib.sha256
    digests: list[bytes] = []
    keys: list[bytes] = []
    add_digest, add_key = digests.append, keys.append
    for raw in events:
        try:
            digest = sha256(dumps(raw, option=sort_keys)).digest()
        except TypeError:
            digest = canonical_digest(raw)
        add_digest(digest)
        add_key(digest[:DIGEST_BYTES])
    return digests, keys
