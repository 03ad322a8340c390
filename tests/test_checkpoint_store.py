"""TableCheckpointStore against Azurite: the ETag protocol, not-found vs unavailable, dead letters,
binary properties and Table size limits."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from azure.data.tables import TableClient

from nordpass_connector.checkpoint import (
    RAW_JSON_MAX_BYTES,
    CheckpointTooLarge,
    TableCheckpointStore,
    build_table_client,
    to_entity,
)
from nordpass_connector.errors import CheckpointConflict, CheckpointUnavailable, ConfigurationError
from nordpass_connector.ports import SetAsideRecord, Window
from sandbox.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite, free_port

FIELDS: dict[str, Any] = {
    "SchemaVersion": 1,
    "Floor": 1_700_000_000,
    "DoneTo": -1,
    "Big": 2**40,
    "LeaseOwner": "run-a",
    "Ratio": 0.25,
    "Complete": False,
    "Ledger0": b"\x00\x01binary\xff",
}


@pytest.fixture
def store(table_client: TableClient) -> TableCheckpointStore:
    return TableCheckpointStore(table_client, instance="eu-prod")


def dead_port_client() -> TableClient:
    conn = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"TableEndpoint=http://127.0.0.1:{free_port()}/{ACCOUNT_NAME};"
    )
    return build_table_client(
        table_name="checkpoints", connection_string=conn, retry_total=0, connection_timeout=1
    )


def test_first_load_on_a_missing_table_is_none_and_creates_the_table(
    store: TableCheckpointStore, table_client: TableClient
) -> None:
    assert store.load() is None
    assert list(table_client.list_entities()) == []  # the table now exists
    assert store.load() is None


def test_create_then_load_round_trips_every_type(store: TableCheckpointStore) -> None:
    created = store.create(FIELDS)
    assert created.etag
    loaded = store.load()
    assert loaded is not None
    assert loaded.etag == created.etag
    assert {k: loaded.fields[k] for k in FIELDS} == FIELDS
    assert type(loaded.fields["SchemaVersion"]) is int and type(loaded.fields["Complete"]) is bool


def test_second_create_conflicts(store: TableCheckpointStore, table_client: TableClient) -> None:
    store.create(FIELDS)
    rival = TableCheckpointStore(table_client, instance="eu-prod")
    with pytest.raises(CheckpointConflict):
        rival.create({**FIELDS, "LeaseOwner": "run-b"})


def test_commit_advances_and_stale_etag_conflicts(store: TableCheckpointStore) -> None:
    first = store.create(FIELDS)
    second = store.commit({**FIELDS, "DoneTo": 5}, etag=first.etag)
    assert second.etag != first.etag
    with pytest.raises(CheckpointConflict):
        store.commit({**FIELDS, "DoneTo": 6}, etag=first.etag)
    loaded = store.load()
    assert loaded is not None and loaded.fields["DoneTo"] == 5


def test_commit_replaces_fields(store: TableCheckpointStore) -> None:
    first = store.create({**FIELDS, "Ledger1": b"x"})
    store.commit(FIELDS, etag=first.etag)
    loaded = store.load()
    assert loaded is not None and "Ledger1" not in loaded.fields


def test_instances_are_separate_rows(table_client: TableClient) -> None:
    a = TableCheckpointStore(table_client, instance="a")
    b = TableCheckpointStore(table_client, instance="b")
    a.create(FIELDS)
    assert b.load() is None


def test_unreachable_storage_is_unavailable_never_none() -> None:
    client = dead_port_client()
    store = TableCheckpointStore(client, instance="x")
    for call in (store.load, lambda: store.create(FIELDS), lambda: store.commit(FIELDS, etag='W/"x"')):
        with pytest.raises(CheckpointUnavailable) as info:
            call()
        text = str(info.value)
        assert ACCOUNT_KEY not in text and "AccountKey" not in text and "127.0.0.1" not in text
    with pytest.raises(CheckpointUnavailable):
        store.read_health()


def test_binary_ledger_chunks_round_trip(store: TableCheckpointStore) -> None:
    chunks = {f"Ledger{i}": bytes([i]) * 60_000 for i in range(14)}
    store.create({"SchemaVersion": 1, "LedgerChunks": 14, **chunks})
    loaded = store.load()
    assert loaded is not None
    assert all(loaded.fields[k] == v for k, v in chunks.items())


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"Ledger0": b"x" * (64 * 1024 + 1)}, "binary properties hold at most"),
        ({"Note": "x" * 40_000}, "as UTF-16"),
        ({f"Ledger{i}": b"x" * 60_000 for i in range(18)}, "entity would be about"),
        ({f"P{i}": 1 for i in range(253)}, "at most 252"),
    ],
)
def test_size_limits_are_checked_before_sending(
    store: TableCheckpointStore, fields: dict[str, Any], match: str
) -> None:
    with pytest.raises(CheckpointTooLarge, match=match):
        store.create(fields)


def test_bad_property_names_and_types_are_refused() -> None:
    with pytest.raises(ValueError, match="property name"):
        to_entity("p", "r", {"RowKey": "x"})
    with pytest.raises(ValueError, match="property name"):
        to_entity("p", "r", {"has space": 1})
    with pytest.raises(TypeError, match="unsupported type"):
        to_entity("p", "r", {"List": [1]})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="64-bit"):
        to_entity("p", "r", {"Huge": 2**64})


def record(event_id: str, raw: bytes, reason: str = "record is 2,000,000 bytes") -> SetAsideRecord:
    return SetAsideRecord(
        event_id=event_id, reason=reason, window=Window(1_700_000_000, 1_700_000_600), raw_json=raw
    )


def test_set_aside_is_idempotent_and_keyed_by_day(store: TableCheckpointStore) -> None:
    items = [record("aa-0", b'{"a":1}'), record("bb-0", b'{"b":2}')]
    store.set_aside(items)
    store.set_aside(items)
    rows = store.dead_letters()
    assert sorted(r["RowKey"] for r in rows) == ["aa-0", "bb-0"]
    row = next(r for r in rows if r["RowKey"] == "aa-0")
    assert row["PartitionKey"] == "2023-11-14"
    assert row["RawJson"] == '{"a":1}' and row["RawTruncated"] is False
    assert row["WindowStart"] == 1_700_000_000 and row["WindowEnd"] == 1_700_000_600
    assert row["Reason"].startswith("record is") and row["Instance"] == "eu-prod"


def test_set_aside_truncates_large_raw_json_with_hash(store: TableCheckpointStore) -> None:
    raw = b'{"pad":"' + "é".encode() * 80_000 + b'"}'
    store.set_aside([record("big-0", raw)])
    (row,) = store.dead_letters()
    assert row["RawTruncated"] is True
    assert len(row["RawJson"].encode("utf-16-le")) <= RAW_JSON_MAX_BYTES
    assert row["RawSha256"] == hashlib.sha256(raw).hexdigest() and row["RawBytes"] == len(raw)


def test_set_aside_sanitises_row_keys(store: TableCheckpointStore) -> None:
    store.set_aside([record("a/b#c?d\\e", b"{}")])
    (row,) = store.dead_letters()
    assert row["RowKey"] == "a_b_c_d_e" and row["EventId"] == "a/b#c?d\\e"


def test_health_record_beside_the_checkpoint(store: TableCheckpointStore) -> None:
    assert store.read_health() is None
    store.write_health({"LastRun": 1_700_000_000, "Outcome": "ok"})
    store.write_health({"LastRun": 1_700_000_060, "Outcome": "failed"})
    assert store.read_health() == {"LastRun": 1_700_000_060, "Outcome": "failed"}
    assert store.load() is None, "the health row is not the checkpoint"


def test_build_table_client_needs_a_way_in() -> None:
    with pytest.raises(ConfigurationError):
        build_table_client(table_name="checkpoints")


def test_build_table_client_from_connection_string(azurite_server: Azurite) -> None:
    client = build_table_client(table_name="cpbuilt", connection_string=azurite_server.connection_string)
    with client:
        store = TableCheckpointStore(client, instance="built")
        assert store.load() is None
        store.create({"SchemaVersion": 1})
        assert store.load() is not None
