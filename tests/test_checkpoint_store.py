"""TableStore against Azurite: the ETag protocol, not-found vs unavailable, dead letters,
binary properties and Table size limits."""

from __future__ import annotations

import hashlib
import http.server
import json
import random
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.data.tables import TableClient

from nordpass_connector.adapters.emulator import START_AZURITE
from nordpass_connector.adapters.table_store import (
    CREDENTIAL_REFUSED_ACTION,
    LEDGER_CHUNK_BYTES,
    MAX_LEDGER_CHUNKS,
    RAW_JSON_MAX_BYTES,
    UNREACHABLE_ACTION,
    TableStore,
    build_table_client,
    decode_checkpoint,
    encode_checkpoint,
    to_entity,
)
from nordpass_connector.checkpoint import Checkpoint
from nordpass_connector.errors import (
    CheckpointConflict,
    CheckpointDamaged,
    CheckpointTooLarge,
    CheckpointUnavailable,
    ConfigurationError,
    ConnectorError,
)
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
def store(table_client: TableClient) -> TableStore:
    return TableStore(table_client, instance="eu-prod")


def dead_port_client() -> TableClient:
    conn = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"TableEndpoint=http://127.0.0.1:{free_port()}/{ACCOUNT_NAME};"
    )
    return build_table_client(
        table_name="checkpoints", connection_string=conn, retry_total=0, connection_timeout=1
    )


def test_first_load_on_a_missing_table_is_none_and_creates_the_table(
    store: TableStore, table_client: TableClient
) -> None:
    assert store.load_row() is None
    assert list(table_client.list_entities()) == []  # the table now exists
    assert store.load_row() is None


def test_create_then_load_round_trips_every_type(store: TableStore) -> None:
    created = store.create_row(FIELDS)
    assert created.etag
    loaded = store.load_row()
    assert loaded is not None
    assert loaded.etag == created.etag
    assert {k: loaded.fields[k] for k in FIELDS} == FIELDS
    assert type(loaded.fields["SchemaVersion"]) is int and type(loaded.fields["Complete"]) is bool


def test_second_create_conflicts(store: TableStore, table_client: TableClient) -> None:
    store.create_row(FIELDS)
    rival = TableStore(table_client, instance="eu-prod")
    with pytest.raises(CheckpointConflict):
        rival.create_row({**FIELDS, "LeaseOwner": "run-b"})


def test_commit_advances_and_stale_etag_conflicts(store: TableStore) -> None:
    first = store.create_row(FIELDS)
    second = store.commit_row({**FIELDS, "DoneTo": 5}, etag=first.etag)
    assert second.etag != first.etag
    with pytest.raises(CheckpointConflict):
        store.commit_row({**FIELDS, "DoneTo": 6}, etag=first.etag)
    loaded = store.load_row()
    assert loaded is not None and loaded.fields["DoneTo"] == 5


def test_commit_replaces_fields(store: TableStore) -> None:
    first = store.create_row({**FIELDS, "Ledger1": b"x"})
    store.commit_row(FIELDS, etag=first.etag)
    loaded = store.load_row()
    assert loaded is not None and "Ledger1" not in loaded.fields


def test_instances_are_separate_rows(table_client: TableClient) -> None:
    a = TableStore(table_client, instance="a")
    b = TableStore(table_client, instance="b")
    a.create_row(FIELDS)
    assert b.load_row() is None


def test_unreachable_storage_is_unavailable_never_none() -> None:
    client = dead_port_client()
    store = TableStore(client, instance="x")
    for call in (
        store.load,
        lambda: store.create_row(FIELDS),
        lambda: store.commit_row(FIELDS, etag='W/"x"'),
    ):
        with pytest.raises(CheckpointUnavailable) as info:
            call()
        text = str(info.value)
        assert ACCOUNT_KEY not in text and "AccountKey" not in text and "127.0.0.1" not in text
    with pytest.raises(CheckpointUnavailable):
        store.read_health()


def test_binary_ledger_chunks_round_trip(store: TableStore) -> None:
    chunks = {f"Ledger{i}": bytes([i]) * 60_000 for i in range(14)}
    store.create_row({"SchemaVersion": 1, "LedgerChunks": 14, **chunks})
    loaded = store.load_row()
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
    store: TableStore, fields: dict[str, Any], match: str
) -> None:
    with pytest.raises(CheckpointTooLarge, match=match):
        store.create_row(fields)


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


def test_set_aside_is_idempotent_and_keyed_by_day(store: TableStore) -> None:
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


def test_set_aside_truncates_large_raw_json_with_hash(store: TableStore) -> None:
    raw = b'{"pad":"' + "é".encode() * 80_000 + b'"}'
    store.set_aside([record("big-0", raw)])
    (row,) = store.dead_letters()
    assert row["RawTruncated"] is True
    assert len(row["RawJson"].encode("utf-16-le")) <= RAW_JSON_MAX_BYTES
    assert row["RawSha256"] == hashlib.sha256(raw).hexdigest() and row["RawBytes"] == len(raw)


def test_set_aside_sanitises_row_keys(store: TableStore) -> None:
    store.set_aside([record("a/b#c?d\\e", b"{}")])
    (row,) = store.dead_letters()
    assert row["RowKey"] == "a_b_c_d_e" and row["EventId"] == "a/b#c?d\\e"


def test_health_record_beside_the_checkpoint(store: TableStore) -> None:
    assert store.read_health() is None
    store.write_health({"LastRun": 1_700_000_000, "Outcome": "ok"})
    store.write_health({"LastRun": 1_700_000_060, "Outcome": "failed"})
    assert store.read_health() == {"LastRun": 1_700_000_060, "Outcome": "failed"}
    assert store.load_row() is None, "the health row is not the checkpoint"


def test_build_table_client_needs_a_way_in() -> None:
    with pytest.raises(ConfigurationError):
        build_table_client(table_name="checkpoints")


def test_build_table_client_from_connection_string(azurite_server: Azurite) -> None:
    client = build_table_client(table_name="cpbuilt", connection_string=azurite_server.connection_string)
    with client:
        store = TableStore(client, instance="built")
        assert store.load_row() is None
        store.create_row({"SchemaVersion": 1})
        assert store.load_row() is not None


# -- commits send only what changed -------------------------------------------------------------


class Spy:
    """Records the method and body size of every request the client sends: PUT is a REPLACE,
    PATCH a MERGE. Fails the tests below if the MERGE path is silently switched off."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, int]] = []

    def __call__(self, request: Any) -> None:
        body = request.http_request.body
        self.requests.append((request.http_request.method, len(body) if body else 0))

    def last(self) -> tuple[str, int]:
        return self.requests[-1]


@pytest.fixture
def spy() -> Spy:
    return Spy()


@pytest.fixture
def spied_client(azurite_server: Azurite, spy: Spy) -> Iterator[TableClient]:
    client = TableClient.from_connection_string(
        azurite_server.connection_string, f"cp{uuid.uuid4().hex[:16]}", retry_total=0, raw_request_hook=spy
    )
    yield client
    client.close()


def _checkpoint(events: int, *, seed: int = 0) -> Checkpoint:
    cp = Checkpoint(floor=1_700_000_000, lease_owner="run-a", lease_until=1_700_000_900)
    cp.ledger.encode()  # incremental from here on, as in a running pipeline
    _add(cp, events, seed=seed)
    return cp


def _add(cp: Checkpoint, events: int, *, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(events):
        cp.ledger.add(rng.randbytes(8), 1_700_000_000 + rng.randrange(600))


def _assert_row_is(store: TableStore, fields: dict[str, Any], cp: Checkpoint) -> None:
    loaded = store.load_row()
    assert loaded is not None
    assert loaded.fields == fields
    assert decode_checkpoint(loaded.fields) == cp


def test_commit_after_own_write_merges_only_the_changes(spied_client: TableClient, spy: Spy) -> None:
    store = TableStore(spied_client, instance="merge")
    cp = _checkpoint(10_000)  # 160,000 bytes: three chunks
    stored = store.create_row(encode_checkpoint(cp))
    _, full_size = spy.last()
    assert full_size > 3 * LEDGER_CHUNK_BYTES  # base64 makes the row's 160 KB about 213 KB

    cp.newest_delivered = 1_700_000_100  # a scalar only: no chunk is sent
    stored = store.commit_row(encode_checkpoint(cp), etag=stored.etag)
    method, size = spy.last()
    assert method == "PATCH" and size < 2_000
    _assert_row_is(store, stored.fields, cp)

    _add(cp, 1_000, seed=1)  # a batch within the last chunk: only that chunk is sent
    fields = encode_checkpoint(cp)
    stored = store.commit_row(fields, etag=stored.etag)
    method, size = spy.last()
    assert method == "PATCH" and size < LEDGER_CHUNK_BYTES * 4 // 3 + 2_000
    _assert_row_is(store, fields, cp)

    _add(cp, 3_000, seed=2)  # a batch that starts a new chunk: the new property is added
    fields = encode_checkpoint(cp)
    assert fields["LedgerChunks"] == 4
    stored = store.commit_row(fields, etag=stored.etag)
    assert spy.last()[0] == "PATCH"
    _assert_row_is(store, fields, cp)


def test_prune_to_fewer_chunks_replaces_the_row(spied_client: TableClient, spy: Spy) -> None:
    store = TableStore(spied_client, instance="prune")
    cp = _checkpoint(10_000)
    stored = store.create_row(encode_checkpoint(cp))
    _add(cp, 100, seed=1)
    stored = store.commit_row(encode_checkpoint(cp), etag=stored.etag)
    assert spy.last()[0] == "PATCH"

    cp.floor = 1_700_000_550
    cp.ledger.prune_below(cp.floor - 1)
    fields = encode_checkpoint(cp)
    assert fields["LedgerChunks"] == 1
    stored = store.commit_row(fields, etag=stored.etag)
    assert spy.last()[0] == "PUT"  # MERGE cannot delete Ledger1 and Ledger2
    _assert_row_is(store, fields, cp)  # exact equality: no stale chunk is left in the row

    _add(cp, 10, seed=3)
    fields = encode_checkpoint(cp)
    store.commit_row(fields, etag=stored.etag)
    assert spy.last()[0] == "PATCH"
    _assert_row_is(store, fields, cp)


def test_a_writer_between_two_merge_commits_is_a_conflict(spied_client: TableClient, spy: Spy) -> None:
    store = TableStore(spied_client, instance="race")
    cp = _checkpoint(5_000)
    stored = store.create_row(encode_checkpoint(cp))
    _add(cp, 100, seed=1)
    stored = store.commit_row(encode_checkpoint(cp), etag=stored.etag)
    assert spy.last()[0] == "PATCH"

    rival = TableStore(spied_client, instance="race")
    theirs = rival.load_row()
    assert theirs is not None
    rival_cp = decode_checkpoint(theirs.fields)
    rival_cp.lease_owner = "run-b"
    rival_fields = encode_checkpoint(rival_cp)
    rival.commit_row(rival_fields, etag=theirs.etag)

    _add(cp, 100, seed=2)
    with pytest.raises(CheckpointConflict):
        store.commit_row(encode_checkpoint(cp), etag=stored.etag)
    assert spy.last()[0] == "PATCH"  # the conflict was raised on the MERGE path
    _assert_row_is(store, rival_fields, rival_cp)

    # Nothing is assumed about the row after a failed commit: the next one is a full REPLACE.
    again = store.load_row()
    assert again is not None
    store.commit_row(encode_checkpoint(cp), etag=again.etag)
    assert spy.last()[0] == "PUT"
    _assert_row_is(store, encode_checkpoint(cp), cp)


def test_first_commit_after_load_replaces(spied_client: TableClient, spy: Spy) -> None:
    TableStore(spied_client, instance="fresh").create_row(encode_checkpoint(_checkpoint(100)))
    store = TableStore(spied_client, instance="fresh")
    loaded = store.load_row()
    assert loaded is not None
    cp = decode_checkpoint(loaded.fields)
    cp.lease_owner = "run-b"
    stored = store.commit_row(encode_checkpoint(cp), etag=loaded.etag)
    assert spy.last()[0] == "PUT"
    cp.lease_until += 60
    store.commit_row(encode_checkpoint(cp), etag=stored.etag)
    assert spy.last()[0] == "PATCH"
    _assert_row_is(store, encode_checkpoint(cp), cp)


def test_a_type_change_is_sent_even_when_the_values_compare_equal(spied_client: TableClient) -> None:
    store = TableStore(spied_client, instance="types")
    stored = store.create_row({"Flag": True, "Count": 1})
    store.commit_row({"Flag": 1, "Count": True}, etag=stored.etag)
    loaded = store.load_row()
    assert loaded is not None
    assert type(loaded.fields["Flag"]) is int and type(loaded.fields["Count"]) is bool


def test_random_commit_sequences_round_trip(spied_client: TableClient, spy: Spy) -> None:
    rng = random.Random(11)
    store = TableStore(spied_client, instance="random")
    cp = _checkpoint(rng.randrange(20_000))
    stored = store.create_row(encode_checkpoint(cp))
    for step in range(40):
        action = rng.random()
        if action < 0.6:
            _add(cp, rng.choice((1, 1_600, 4_000)), seed=100 + step)
        elif action < 0.8:
            cp.floor = min(cp.floor + rng.randrange(300), 1_700_000_599)
            cp.ledger.prune_below(cp.floor - 1)
        else:
            cp.newest_delivered = step
        if len(cp.ledger) > 50_000:  # keep within one row (14 chunks)
            cp.ledger.prune_below(1_700_000_590)
        fields = encode_checkpoint(cp)
        stored = store.commit_row(fields, etag=stored.etag)
        _assert_row_is(store, fields, cp)
    methods = {method for method, _ in spy.requests}
    assert {"PATCH", "PUT"} <= methods


# -- the port: a Checkpoint in, a Checkpoint out --------------------------------------------------


def test_the_store_encodes_and_decodes_the_checkpoint_itself(store: TableStore) -> None:
    cp = _checkpoint(5_000)
    etag = store.create(cp)
    loaded = store.load()
    assert loaded is not None and loaded.etag == etag
    assert loaded.checkpoint == cp
    cp.done_to = 1_700_000_300
    again = store.commit(cp, etag=etag)
    assert again != etag
    reloaded = store.load()
    assert reloaded is not None and reloaded.checkpoint == cp
    with pytest.raises(CheckpointConflict):
        store.commit(cp, etag=etag)


def test_a_damaged_row_is_named_with_its_row_and_property(store: TableStore) -> None:
    fields = encode_checkpoint(_checkpoint(10))
    store.create_row({**fields, "Floor": "yesterday"})
    with pytest.raises(CheckpointDamaged) as caught:
        store.load()
    assert caught.value.property == "Floor"
    assert caught.value.row == store.row_name
    assert f"the row '{store.row_name}' is damaged: property Floor" in caught.value.describe()


def test_a_ledger_that_outgrows_one_row_is_a_connector_error_and_writes_nothing(store: TableStore) -> None:
    cp = Checkpoint(floor=1_700_000_000)
    too_many = MAX_LEDGER_CHUNKS * LEDGER_CHUNK_BYTES // 16 + 1
    for i in range(too_many):
        cp.ledger.add(i.to_bytes(8, "big"), 1_700_000_000)
    with pytest.raises(CheckpointTooLarge) as caught:
        store.create(cp)
    assert isinstance(caught.value, ConnectorError), "a run's error handling must see it"
    assert f"holds {too_many} events" in caught.value.message
    assert "NORDPASS_MAX_WINDOW_EVENTS" in caught.value.action
    assert store.load_row() is None


# -- the probe (doctor's table check) -------------------------------------------------------------


def test_probe_creates_a_missing_table_and_leaves_no_row(
    store: TableStore, table_client: TableClient
) -> None:
    first = store.probe()
    assert (first.table, first.created_table) == (table_client.table_name, True)
    assert store.probe().created_table is False, "the table exists now"
    assert list(table_client.list_entities()) == [], "the probe row is deleted, the checkpoint untouched"


def test_probe_of_a_dead_port_is_unreachable_with_the_storage_fix() -> None:
    store = TableStore(dead_port_client(), instance="x")
    with pytest.raises(CheckpointUnavailable) as info:
        store.probe()
    assert info.value.message.startswith("checkpoint table write failed: ServiceRequestError")
    assert info.value.action == UNREACHABLE_ACTION
    assert ACCOUNT_KEY not in str(info.value) and "127.0.0.1" not in str(info.value)


def test_probe_of_a_stopped_emulator_says_so() -> None:
    port = free_port()
    conn = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"TableEndpoint=http://127.0.0.1:{port}/{ACCOUNT_NAME};"
    )
    client = build_table_client(table_name="checkpoints", connection_string=conn, retry_total=0)
    store = TableStore(client, instance="x", emulator=("127.0.0.1", port))
    with pytest.raises(CheckpointUnavailable) as info:
        store.probe()
    assert info.value.message == (
        f"nothing answers at 127.0.0.1:{port}, the local storage emulator AzureWebJobsStorage points at"
    )
    assert info.value.action == START_AZURITE


def test_probe_with_a_wrong_account_key_is_the_credential_fix(azurite_server: Azurite) -> None:
    wrong = azurite_server.connection_string.replace(ACCOUNT_KEY, "A" * (len(ACCOUNT_KEY) - 2) + "==")
    assert wrong != azurite_server.connection_string
    client = build_table_client(table_name="cpwrongkey", connection_string=wrong, retry_total=0)
    with client, pytest.raises(CheckpointUnavailable) as info:
        TableStore(client, instance="x").probe()
    assert "HTTP 403" in info.value.message
    assert info.value.action == CREDENTIAL_REFUSED_ACTION


def test_a_connection_string_the_sdk_cannot_parse_is_a_connector_error_without_its_text() -> None:
    secret = "c2VjcmV0LWtleQ=="
    with pytest.raises(CheckpointUnavailable) as info:
        build_table_client(table_name="checkpoints", connection_string=f"AccountKey={secret};Nonsense")
    assert info.value.message == "AzureWebJobsStorage is not a valid connection string"
    assert info.value.action == UNREACHABLE_ACTION
    assert secret not in str(info.value)


class _TableAlwaysMissing(http.server.ThreadingHTTPServer):
    """A table service whose table stays missing: every entity call answers 404 TableNotFound and
    every create 409 TableAlreadyExists (as while a table is being deleted). Records the methods."""

    def __init__(self) -> None:
        self.methods: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.methods.append(self.command)
                status, code = (
                    (409, "TableAlreadyExists") if self.command == "POST" else (404, "TableNotFound")
                )
                body = json.dumps({"odata.error": {"code": code, "message": {"value": code}}}).encode()
                self.send_response(status)
                self.send_header("x-ms-error-code", code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_PUT = do_POST = do_GET = do_MERGE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def test_a_table_that_stays_missing_fails_the_health_write_after_one_create() -> None:
    server = _TableAlwaysMissing()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    conn = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"TableEndpoint=http://127.0.0.1:{server.server_address[1]}/{ACCOUNT_NAME};"
    )
    client = TableClient.from_connection_string(conn, "cpmissing", retry_total=0)
    store = TableStore(client, deadletters=client)
    try:
        with pytest.raises(CheckpointUnavailable, match="health write"):
            store.write_health({"LastRun": 1_700_000_000, "Outcome": "ok"})
    finally:
        client.close()
        server.shutdown()
        server.server_close()
        thread.join(30)
    # The upsert, one create, the upsert again; then the error (not one more round per level).
    assert server.methods == ["PUT", "POST", "PUT"]
