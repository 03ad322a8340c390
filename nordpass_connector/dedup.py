"""Pure selection of what to send from a fetched window: map, dedup against the ledger, order.

Dedup counts occurrences: if the ledger says two copies of an event were delivered and the window
now holds three, exactly one (occurrence index 2) is new.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from .ledger import DIGEST_BYTES, Ledger
from .mapping import (
    EVENT_ID_DIGEST_BYTES,
    ISO_SECONDS,
    MAX_PLAUSIBLE_SECONDS,
    MalformedEvent,
    PreparedEvent,
    canonical_digest,
    classify,
    digest_prefix,
    event_id,
    event_id_stem,
    iso_utc,
    to_row,
)

assert EVENT_ID_DIGEST_BYTES == DIGEST_BYTES, "an EventId must carry exactly the ledger's digest key"


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
    # This loop is most of the connector's CPU per event. It is `prepare`, the ledger check and
    # `to_row` fused, with names bound locally and no PreparedEvent for the common event. Anything
    # unusual (not a dict, a timestamp that is not a plain int, a shape other than the documented
    # fields as strings or nulls, an MSP admin) takes the general functions; tests pin both paths
    # to the same rows.
    dumps, sort_keys, sha256, iso_seconds = orjson.dumps, orjson.OPT_SORT_KEYS, hashlib.sha256, ISO_SECONDS
    stem = event_id_stem
    # Most events are not in the ledger: a membership test on its public `entries` settles them
    # without the cost of calling `count`.
    delivered, count = ledger.entries, ledger.count
    seen: set[bytes] = set()
    add_seen = seen.add
    repeats: dict[bytes, int] = {}  # next occurrence of the keys seen more than once
    malformed: list[tuple[str, MalformedEvent]] = []
    # (timestamp, digest, occurrence) is unique (same digest, different occurrence), so sorting the
    # tuples themselves never compares the keys or rows behind it.
    fresh: list[tuple[int, bytes, int, tuple[bytes, int], dict[str, Any]]] = []
    append = fresh.append
    duplicates = 0
    # In events served in time order (either way) the next event is nearly always in the same
    # minute as the last: keeping that minute's text saves most of `iso_utc` (and costs ~0.1 µs
    # more per event in any other order).
    last_minute, minute_text = -1, ""
    for raw in events:
        try:
            try:
                digest = sha256(dumps(raw, option=sort_keys)).digest()
            except TypeError:
                digest = canonical_digest(raw)
            key = digest[:DIGEST_BYTES]
            if key in seen:
                occurrence = repeats.get(key, 1)
                repeats[key] = occurrence + 1
            else:
                add_seen(key)
                occurrence = 0
            if key in delivered and occurrence < count(key):
                duplicates += 1
                continue
            timestamp = raw.get("timestamp") if type(raw) is dict else None
            if type(timestamp) is not int or not 0 <= timestamp < MAX_PLAUSIBLE_SECONDS:
                event = classify(raw, digest)
                if isinstance(event, MalformedEvent):
                    malformed.append((event_id(digest, occurrence), event))
                    continue
                timestamp = event.timestamp
                if type(raw) is not dict:  # a dict subclass: leave it all to `to_row`
                    append((timestamp, digest, occurrence, (key, timestamp), to_row(event, occurrence)))
                    continue

            row: dict[str, Any] | None = None
            # Seven fields, the timestamp and the six read here among them: nothing else to keep.
            if len(raw) == 7:
                try:
                    event_type = raw["type"]
                    action = raw["action"]
                    organization = raw["organization_uuid"]
                    initiator = raw["initiator"]
                    user = raw["user"]
                    metadata = raw["metadata"]
                except KeyError:
                    pass
                else:
                    if (
                        (type(event_type) is str or event_type is None)
                        and (type(action) is str or action is None)
                        and (type(organization) is str or organization is None)
                        and (type(initiator) is str or initiator is None)
                        and type(user) is dict
                        and len(user) == 2
                        and (
                            "msp" not in metadata
                            if type(metadata) is dict
                            else not isinstance(metadata, dict)
                        )
                    ):
                        user_uuid = user.get("uuid", raw)  # `raw`: a default that is never str or None
                        user_email = user.get("email", raw)
                        if (type(user_uuid) is str or user_uuid is None) and (
                            type(user_email) is str or user_email is None
                        ):
                            minute, second = divmod(timestamp, 60)
                            if minute != last_minute:
                                last_minute, minute_text = minute, iso_utc(timestamp)[:-3]
                            when = minute_text + iso_seconds[second]
                            row = {
                                "TimeGenerated": when,
                                "timestamp": timestamp,
                                "event_type": event_type,
                                "action": action,
                                "user_uuid": user_uuid,
                                "user_email": user_email,
                                "initiator": initiator,
                                "organization_uuid": organization,
                                "metadata": metadata,
                                "EventId": stem(digest) + ("-0" if occurrence == 0 else f"-{occurrence}"),
                                "EventTime": when,
                            }
            if row is None:
                row = to_row(PreparedEvent(timestamp, digest, raw), occurrence)
            append((timestamp, digest, occurrence, (key, timestamp), row))
        except Exception as exc:  # noqa: BLE001 - one unmappable event must never block its page
            # Set aside with its reason, under the digest the dedup check above computes too (so
            # the overlap of a later window finds it in the ledger and does not set it aside again).
            digest = canonical_digest(raw)
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
