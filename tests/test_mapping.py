"""Pure mapping: event -> row. No I/O, no fakes."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nordpass_connector.dedup import select_new
from nordpass_connector.isotime import iso_utc
from nordpass_connector.ledger import Ledger
from nordpass_connector.mapping import (
    EVENT_ID_PATTERN,
    OPTIONAL_COLUMNS,
    MalformedEvent,
    PreparedEvent,
    canonical_digest,
    digest_prefix,
    event_id,
    occurrences,
    prepare,
    to_row,
)
from nordpass_connector.schema import COLUMN_NAMES
from tests.row_models import EventRow

BASE: dict[str, Any] = {
    "type": "login",
    "action": "user_login_failed",
    "timestamp": 1738848413,
    "organization_uuid": "org-1",
    "user": {"uuid": "u-1", "email": "ann@example.com"},
    "initiator": "ann@example.com",
    "metadata": {"ip_address": "203.0.113.7", "provider": "nordpass", "platform": "web"},
}


def _row(raw: Any, occurrence: int = 0) -> dict[str, Any]:
    event = prepare(raw)
    assert isinstance(event, PreparedEvent)
    return to_row(event, occurrence)


def test_official_columns_keep_their_meaning() -> None:
    row = _row(BASE)
    # Every column in table order; the optional ones only when they have a value.
    assert tuple(row) == tuple(c for c in COLUMN_NAMES if c not in OPTIONAL_COLUMNS)
    assert row["event_type"] == "login" and row["action"] == "user_login_failed"
    assert row["timestamp"] == 1738848413
    assert row["TimeGenerated"] == row["EventTime"] == "2025-02-06T13:26:53Z"
    assert row["user_uuid"] == "u-1" and row["user_email"] == "ann@example.com"
    assert row["metadata"] == BASE["metadata"]
    assert not set(OPTIONAL_COLUMNS) & set(row)
    stored = EventRow.model_validate_json(orjson.dumps(row))  # what the table holds: null there
    assert stored.OriginalUserUuid is None and stored.AdditionalFields is None


def test_msp_rule_replaces_user_and_keeps_the_original() -> None:
    raw = dict(
        BASE,
        metadata={"msp": {"user_uuid": "msp-9", "user_email": "msp@partner.example", "user_role": "admin"}},
    )
    row = _row(raw)
    assert (row["user_uuid"], row["user_email"]) == ("msp-9", "msp@partner.example")
    assert (row["OriginalUserUuid"], row["OriginalUserEmail"]) == ("u-1", "ann@example.com")
    assert tuple(row) == tuple(c for c in COLUMN_NAMES if c != "AdditionalFields")


def test_empty_msp_values_do_not_override() -> None:
    row = _row(dict(BASE, metadata={"msp": {"user_uuid": "", "user_email": None}}))
    assert row["user_uuid"] == "u-1" and "OriginalUserUuid" not in row


def test_unknown_fields_are_kept_not_dropped() -> None:
    raw = dict(BASE, device={"os": "ios"}, user={"uuid": "u-1", "email": "a@b.c", "name": "Ann"})
    row = _row(raw)
    assert row["AdditionalFields"] == {"device": {"os": "ios"}, "user": raw["user"]}


def test_ids_are_deterministic_and_count_occurrences() -> None:
    first, second = _row(BASE, 0), _row(json.loads(json.dumps(BASE)), 1)
    assert first["EventId"].endswith("-0") and second["EventId"].endswith("-1")
    assert first["EventId"][:-2] == second["EventId"][:-2]
    reordered = dict(reversed(list(BASE.items())))
    assert _row(reordered)["EventId"] == first["EventId"]  # key order is not content


# Golden EventIds: the contract every delivered row is keyed by. A change to canonicalisation,
# hashing or encoding would re-id every event, and nothing else would notice. Each value was
# computed once by hand, outside this code, from the documented canonical form (keys sorted, no
# whitespace), e.g. for the second event:
#   printf '%s' '{"action":"vault_exported","initiator":null,"metadata":{},"organization_uuid":null,'\
#     '"timestamp":1700000000,"type":"vault","user":{"email":null,"uuid":"u-1"}}' \
#     | sha256sum | cut -c1-16 | xxd -r -p | base64 | tr '+/' '-_' | tr -d '='
# that is: SHA-256, its first 8 bytes (16 hex digits), base64url without padding (11 characters);
# then "-<occurrence>". The digests' first 8 bytes are kept too (hex), for the ledger key.
GOLDEN: list[tuple[dict[str, Any], int, str, str]] = [
    (
        {
            "type": "login",
            "action": "user_login_failed",
            "timestamp": 1738848413,
            "organization_uuid": "0f4b2c9e-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
            "user": {"uuid": "a9d77bfa-7558-4495-985a-8d948aa1a138", "email": "ann@example.com"},
            "initiator": "ann@example.com",
            "metadata": {"ip_address": "198.51.100.7"},
        },
        0,
        "53bcb6cd6d424313",
        "U7y2zW1CQxM-0",
    ),
    (
        {
            "user": {"uuid": "u-1", "email": None},
            "type": "vault",
            "timestamp": 1700000000,
            "organization_uuid": None,
            "metadata": {},
            "initiator": None,
            "action": "vault_exported",
        },
        12,
        "6fe5aa4eecde01bc",
        "b-WqTuzeAbw-12",
    ),
    ({"timestamp": 0}, 1, "9e75ebfc01e22432", "nnXr_AHiJDI-1"),
]


@pytest.mark.parametrize(("raw", "occurrence", "prefix_hex", "expected"), GOLDEN)
def test_event_ids_match_the_golden_values(
    raw: dict[str, Any], occurrence: int, prefix_hex: str, expected: str
) -> None:
    digest = canonical_digest(raw)
    assert digest[:8].hex() == prefix_hex
    assert event_id(digest, occurrence) == expected
    assert _row(raw, occurrence)["EventId"] == expected
    assert digest_prefix(expected) == bytes.fromhex(prefix_hex)


def test_the_hot_path_gives_the_golden_ids_too() -> None:
    """select_new (fast path and general path) numbers copies the same way: -0, -1, -2..."""
    events = [raw for raw, *_ in GOLDEN for _ in range(3)]
    ids = sorted(row["EventId"] for row in select_new(events, Ledger()).rows)
    stems = sorted(expected.rsplit("-", 1)[0] for _, _, _, expected in GOLDEN)
    assert ids == sorted(f"{stem}-{n}" for stem in stems for n in range(3))


def test_occurrences_number_identical_events_in_the_order_they_come() -> None:
    a, b, c = b"a" * 8, b"b" * 8, b"c" * 8
    assert occurrences([a, b, a, a, c, b]) == [0, 0, 1, 2, 0, 1]
    assert occurrences([a, b, c]) == [0, 0, 0]
    assert occurrences([]) == []


def test_ids_are_the_ledger_key_in_13_characters() -> None:
    digest = canonical_digest(BASE)
    eid = event_id(digest, 0)
    assert len(eid) == 13 and eid.endswith("-0")
    assert digest_prefix(eid) == digest[:8]  # the dedup ledger's key, recovered from the row
    assert all(ch.isalnum() or ch in "-_" for ch in eid)  # base64url: no '/', a Table RowKey as is
    # Ids of different events differ; an id with '-' or '_' in its digest part still parses.
    ids = {event_id(canonical_digest(dict(BASE, timestamp=BASE["timestamp"] + i)), 0) for i in range(2_000)}
    assert len(ids) == 2_000
    tricky = next(i for i in ids if "-" in i[:11] or "_" in i[:11])
    assert event_id(digest_prefix(tricky) + bytes(24), 3) == tricky[:-1] + "3"
    # The pattern tools use to find ids in text finds these and not the other values of a row.
    assert all(re.fullmatch(EVENT_ID_PATTERN, i) for i in ids)
    others = [
        "a9d77bfa-7558-4495-985a-8d948aa1a138",
        "198.51.100.7",
        "2025-02-06T13:26:53Z",
        "ann@example.com",
    ]
    assert not any(re.fullmatch(EVENT_ID_PATTERN, v) for v in others)


def test_malformed_events_say_why() -> None:
    cases = {
        "not an object": ["a", "list"],
        "missing": {k: v for k, v in BASE.items() if k != "timestamp"},
        "milliseconds": dict(BASE, timestamp=1738848413000),
        "text": dict(BASE, timestamp="yesterday"),
        "negative": dict(BASE, timestamp=-5),
    }
    reasons = {name: prepare(raw) for name, raw in cases.items()}
    assert all(isinstance(r, MalformedEvent) for r in reasons.values())
    assert "milliseconds" in reasons["milliseconds"].reason  # type: ignore[union-attr]
    assert "missing" in reasons["missing"].reason  # type: ignore[union-attr]
    assert isinstance(prepare(dict(BASE, timestamp="1738848413")), PreparedEvent)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.integers(-(10**9), 10**11), st.integers(1_700_000_000, 1_700_100_000)))
def test_iso_utc_is_strftime(seconds: int) -> None:
    assert iso_utc(seconds) == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def test_non_string_values_in_string_columns_are_kept_as_json() -> None:
    row = _row(dict(BASE, action=["odd"], initiator={"id": 3}))
    assert row["action"] == '["odd"]' and row["initiator"] == '{"id":3}'


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=8))
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
events = st.fixed_dictionaries(
    {
        "type": st.text(max_size=10),
        "action": st.text(max_size=10),
        "timestamp": st.integers(0, 4_000_000_000),
        "organization_uuid": st.text(max_size=10),
        "user": st.fixed_dictionaries({"uuid": st.text(max_size=8), "email": st.text(max_size=8)}),
        "initiator": st.text(max_size=10),
        "metadata": json_value,
    },
    optional={"extra_field": json_value, "another": json_value},
)


@settings(max_examples=300, deadline=None)
@given(events, st.integers(0, 50))
def test_every_event_maps_to_a_valid_row_and_nothing_is_lost(raw: dict[str, Any], occurrence: int) -> None:
    row = _row(raw, occurrence)
    EventRow.model_validate_json(orjson.dumps(row))
    assert row["EventId"] == event_id(canonical_digest(raw), occurrence)
    # Reassemble the source event from the row: every field must come back unchanged.
    assert set(OPTIONAL_COLUMNS) & set(row) == {c for c in OPTIONAL_COLUMNS if row.get(c) is not None}
    user = {
        "uuid": row.get("OriginalUserUuid", row["user_uuid"]),
        "email": row.get("OriginalUserEmail", row["user_email"]),
    }
    rebuilt = {
        "type": row["event_type"],
        "action": row["action"],
        "timestamp": row["timestamp"],
        "organization_uuid": row["organization_uuid"],
        "user": user,
        "initiator": row["initiator"],
        "metadata": row["metadata"],
        **row.get("AdditionalFields", {}),
    }
    assert rebuilt == raw


def test_row_model_follows_the_schema() -> None:
    # The row model documents the table; a column added to schema.py without it (or the other way
    # round) would let the mapper's shape checks pass against the wrong contract.
    assert tuple(EventRow.model_fields) == COLUMN_NAMES
