"""Pure mapping from a raw NordPass event to a `NordPassEventLogs_CL` row.

An event's identity is the SHA-256 of its canonical JSON (sorted keys, no whitespace). NordPass has
no event id and identical events legitimately repeat (two failed logins by one user in one second),
so the row id is that digest plus the event's occurrence index among identical events: the first
copy is ``-0``, the second ``-1``. Re-reading the same window yields the same ids.

The id's digest part is the digest's first 64 bits (the dedup ledger's key) as 11 characters of
base64url, so ``EventId`` is 13 characters where 32 hex digits made it 34: every row is billed for
its column values, and the id is the one added column a query cannot do without. 64 bits keep ids
apart: among the 90 million rows of 90 days at a million events a day, the chance that any two
distinct events share an id is about 2 in 10,000, and a collision could only merge two rows in a
query that deduplicates by ``EventId``.

Empty optional columns (`OPTIONAL_COLUMNS`) are left out of the row: the table stores them as null
either way, and each costs ~25 bytes of JSON in every request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

from .isotime import ISO_SECONDS, iso_utc
from .ledger import DIGEST_BYTES

# Above this a timestamp is almost certainly milliseconds, not the seconds NordPass sends.
MAX_PLAUSIBLE_SECONDS = 10**11

_KNOWN_FIELDS = frozenset(
    {"type", "action", "timestamp", "organization_uuid", "user", "initiator", "metadata"}
)
_KNOWN_USER_FIELDS = frozenset({"uuid", "email"})


class PreparedEvent(NamedTuple):
    """An event that can be mapped: its time, content digest and the raw object."""

    timestamp: int
    digest: bytes
    raw: dict[str, Any]


class MalformedEvent(NamedTuple):
    """An event that cannot become a row; it is set aside with `reason`, never dropped silently."""

    reason: str
    digest: bytes
    raw: Any


def canonical_digest(raw: Any) -> bytes:
    try:
        canonical = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        # Integers beyond 64 bits and other oddities orjson refuses; the stdlib handles them.
        try:
            canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        except (TypeError, ValueError, RecursionError):
            # Not even that (text that is not valid Unicode, keys of mixed types): a stable form
            # still, so the event can be set aside under a reproducible id.
            canonical = repr(raw).encode("utf-8", "backslashreplace")
    return hashlib.sha256(canonical).digest()


def _timestamp_of(raw: dict[str, Any]) -> int | str:
    """The event's Unix-seconds time, or the reason it has none usable."""
    value = raw.get("timestamp")
    if isinstance(value, bool) or value is None:
        return "timestamp missing"
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, float) and value.is_integer():
        seconds = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        seconds = int(value.strip())
    else:
        return "timestamp is not a whole number of seconds"
    if seconds < 0:
        return "timestamp is negative"
    if seconds >= MAX_PLAUSIBLE_SECONDS:
        return "timestamp looks like milliseconds, not seconds"
    return seconds


def prepare(raw: Any) -> PreparedEvent | MalformedEvent:
    return classify(raw, canonical_digest(raw))


def classify(raw: Any, digest: bytes) -> PreparedEvent | MalformedEvent:
    """`prepare` for a caller that has already computed the event's `canonical_digest`."""
    if not isinstance(raw, dict):
        return MalformedEvent("event is not a JSON object", digest, raw)
    seconds = _timestamp_of(raw)
    if isinstance(seconds, str):
        return MalformedEvent(seconds, digest, raw)
    return PreparedEvent(seconds, digest, raw)


EVENT_ID_DIGEST_BYTES = DIGEST_BYTES  # an EventId carries exactly the ledger's key
_EVENT_ID_STEM_CHARS = 11  # base64 of 8 bytes, without its one padding character
_URL_SAFE = bytes.maketrans(b"+/", b"-_")
_b2a_base64 = binascii.b2a_base64
# What an EventId looks like, for tools that find ids in text (the demo attributes alerts by them).
EVENT_ID_PATTERN = r"[A-Za-z0-9_-]{11}-[0-9]+"
# Columns a row carries only when they have a value (the MSP rule applied, unknown fields seen).
OPTIONAL_COLUMNS = ("OriginalUserUuid", "OriginalUserEmail", "AdditionalFields")


def event_id(digest: bytes, occurrence: int) -> str:
    """The row id: the digest's first 64 bits in 11 base64url characters, then ``-<occurrence>``.
    The one place an EventId is formatted (the hot path calls it once per event)."""
    stem = _b2a_base64(digest[:EVENT_ID_DIGEST_BYTES], newline=False)[:_EVENT_ID_STEM_CHARS]
    return stem.translate(_URL_SAFE).decode() + ("-0" if occurrence == 0 else f"-{occurrence}")


def occurrences(digests: Sequence[bytes]) -> list[int]:
    """Each digest's occurrence index among the identical digests before it, in order: 0 for the
    first copy, 1 for the second... The one rule that numbers identical events (see the module
    docstring); every caller passes the digests in the order the events were read.

    Most windows hold no two identical events, which one set (built in C) shows at once; in the
    others, only the repeated digests are counted."""
    if len(set(digests)) == len(digests):
        return [0] * len(digests)
    seen: set[bytes] = set()
    add = seen.add
    repeats: dict[bytes, int] = {}  # next occurrence of the digests seen more than once
    numbers: list[int] = []
    append = numbers.append
    for digest in digests:
        if digest in seen:
            n = repeats.get(digest, 1)
            repeats[digest] = n + 1
            append(n)
        else:
            add(digest)
            append(0)
    return numbers


def digest_prefix(event_id: str) -> bytes:
    """The `EVENT_ID_DIGEST_BYTES` of the digest an EventId was made from."""
    return base64.urlsafe_b64decode(event_id[:_EVENT_ID_STEM_CHARS] + "=")


def _text(value: Any) -> str | None:
    """A string column's value; non-strings are kept as their JSON text rather than lost."""
    if value is None or isinstance(value, str):
        return value
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:  # an integer beyond 64 bits, which orjson refuses and JSON allows
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _msp_override(metadata: Any, key: str) -> str | None:
    if not isinstance(metadata, dict):
        return None
    msp = metadata.get("msp")
    if not isinstance(msp, dict):
        return None
    value = msp.get(key)
    return value if isinstance(value, str) and value else None


def to_row(event: PreparedEvent, occurrence: int) -> dict[str, Any]:
    """The row for one event: the columns of `schema.COLUMNS` (the tests check it against the row
    model in `tests/row_models.py`); the optional columns appear only with a value."""
    raw = event.raw
    get = raw.get
    user = get("user")
    user_fields = user if isinstance(user, dict) else {}
    # `_text` only for what is not already a string or null: the call is most of the cost here.
    user_uuid = user_fields.get("uuid")
    if user_uuid is not None and not isinstance(user_uuid, str):
        user_uuid = _text(user_uuid)
    user_email = user_fields.get("email")
    if user_email is not None and not isinstance(user_email, str):
        user_email = _text(user_email)
    metadata = get("metadata")

    # The official mapper's MSP rule: an MSP admin's identity replaces the subject user. We apply
    # it for compatibility with existing content, and keep the original identity beside it.
    original_uuid = original_email = None
    if isinstance(metadata, dict) and "msp" in metadata:
        msp_uuid = _msp_override(metadata, "user_uuid")
        if msp_uuid is not None:
            original_uuid, user_uuid = user_uuid, msp_uuid
        msp_email = _msp_override(metadata, "user_email")
        if msp_email is not None:
            original_email, user_email = user_email, msp_email

    # Nearly every event has exactly the documented fields: a set comparison skips the scan.
    additional = (
        {} if raw.keys() <= _KNOWN_FIELDS else {k: v for k, v in raw.items() if k not in _KNOWN_FIELDS}
    )
    if user is not None and (not isinstance(user, dict) or not user.keys() <= _KNOWN_USER_FIELDS):
        additional["user"] = user

    event_type, action, initiator, organization = (
        get("type"),
        get("action"),
        get("initiator"),
        get("organization_uuid"),
    )
    when = iso_utc(event.timestamp)
    row = {
        "TimeGenerated": when,
        "timestamp": event.timestamp,
        "event_type": event_type if event_type is None or isinstance(event_type, str) else _text(event_type),
        "action": action if action is None or isinstance(action, str) else _text(action),
        "user_uuid": user_uuid,
        "user_email": user_email,
        "initiator": initiator if initiator is None or isinstance(initiator, str) else _text(initiator),
        "organization_uuid": (
            organization if organization is None or isinstance(organization, str) else _text(organization)
        ),
        "metadata": metadata,
        "EventId": event_id(event.digest, occurrence),
        "EventTime": when,
    }
    if original_uuid is not None:
        row["OriginalUserUuid"] = original_uuid
    if original_email is not None:
        row["OriginalUserEmail"] = original_email
    if additional:
        row["AdditionalFields"] = additional
    return row


# The minute of the last row `fast_row` made and that minute's text: events served in time order
# (either way) are nearly always in the minute of the event before, so most rows need only the
# seconds added (`iso_utc` costs ~0.3 µs). One tuple, swapped whole: threads never see a minute
# with another minute's text.
_last_minute: tuple[int, str] = (-1, "")


def fast_row(raw: Any, timestamp: int, event_id: str) -> dict[str, Any] | None:
    """`to_row`'s row for the event nearly every page is made of, or None for any other (then
    `to_row` maps it): a plain dict of exactly the seven documented fields, strings or nulls, a
    `user` of exactly `uuid` and `email`, and no MSP admin in `metadata`. Such an event has no
    optional column and no value to convert, which makes it about half the cost of `to_row`; this
    is most of the connector's CPU per event. `timestamp` is the event's validated time.
    Tests pin both to the same rows, key order and types included."""
    global _last_minute
    # Seven fields, the timestamp and the six read here among them: nothing else to keep.
    if type(raw) is not dict or len(raw) != 7:
        return None
    try:
        event_type = raw["type"]
        action = raw["action"]
        organization = raw["organization_uuid"]
        initiator = raw["initiator"]
        user = raw["user"]
        metadata = raw["metadata"]
    except KeyError:
        return None
    if not (
        (type(event_type) is str or event_type is None)
        and (type(action) is str or action is None)
        and (type(organization) is str or organization is None)
        and (type(initiator) is str or initiator is None)
        and type(user) is dict
        and len(user) == 2
        and ("msp" not in metadata if type(metadata) is dict else not isinstance(metadata, dict))
    ):
        return None
    user_uuid = user.get("uuid", raw)  # `raw`: a default that is never str or None
    user_email = user.get("email", raw)
    if not (
        (type(user_uuid) is str or user_uuid is None) and (type(user_email) is str or user_email is None)
    ):
        return None
    minute, second = divmod(timestamp, 60)
    last = _last_minute
    if last[0] != minute:
        last = _last_minute = (minute, iso_utc(timestamp)[:-3])
    when = last[1] + ISO_SECONDS[second]
    return {
        "TimeGenerated": when,
        "timestamp": timestamp,
        "event_type": event_type,
        "action": action,
        "user_uuid": user_uuid,
        "user_email": user_email,
        "initiator": initiator,
        "organization_uuid": organization,
        "metadata": metadata,
        "EventId": event_id,
        "EventTime": when,
    }
