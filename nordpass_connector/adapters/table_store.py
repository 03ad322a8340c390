"""The Table Storage adapter (`azure-data-tables`): everything the connector keeps in tables.

One entity per connector instance (PartitionKey "checkpoint", RowKey = instance name) holds the
bookmark. It is created with `create_entity` (a 409 means another run did it first) and advanced only
with an ETag-conditional `update_entity` (a 412 means another run moved it): never `upsert_entity`,
which is last-writer-wins.

A failed read is never "no checkpoint": only a definite not-found returns None. Anything else raises
CheckpointUnavailable, because treating an outage as a first run restarts a 7-day backfill.

A commit normally sends only what changed since this store's own last write (MERGE under the same
ETag condition), so the unchanged 60 KB ledger chunks are not re-encoded and re-sent after every
batch; see `TableStore.commit`.

Undeliverable events go to a companion table (`<table>deadletters`), keyed by event id, so setting
the same event aside twice leaves one row. A health record sits beside the checkpoint.

`TableStore.probe` (for `doctor`, next to the sink's `check_upload`) writes, reads and deletes a
probe row, and says why the table refused in the connector's own terms: unreachable, forbidden,
credential refused, identity without a token, local emulator not running.

Error messages name the operation, HTTP status and service error code only: never the connection
string, account key, URL or service message.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import EdmType, EntityProperty, TableClient, UpdateMode

from ..checkpoint import Checkpoint, HeldWindow
from ..errors import (
    CheckpointConflict,
    CheckpointDamaged,
    CheckpointTooLarge,
    CheckpointUnavailable,
    ConfigurationError,
    SinkTokenUnavailable,
)
from ..isotime import iso_utc
from ..ledger import ENTRY, Ledger
from ..ports import SetAsideRecord, StoredCheckpoint, Window
from ..settings import STORAGE
from ..windows import MAX_HELD_WINDOWS
from .emulator import nothing_listens_at
from .requests_session import EnvironmentOnceSession

PARTITION_KEY = "checkpoint"
DEADLETTER_SUFFIX = "deadletters"
MAX_PROPERTY_BYTES = 64 * 1024
MAX_ENTITY_BYTES = 1024 * 1024
MAX_CUSTOM_PROPERTIES = 252
RAW_JSON_MAX_BYTES = 60_000  # UTF-16 bytes of the stored text, under the 64 KiB property limit
_RESERVED = frozenset({"PartitionKey", "RowKey", "Timestamp", "etag", "odata.etag"})
_PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_KEY_FORBIDDEN = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")

FieldValue = int | str | bytes | bool | float

# What a person does about a table that refuses (`TableStore.probe`; also a malformed connection
# string). Identity-based storage whose identity has no token gets SinkTokenUnavailable's action.
UNREACHABLE_ACTION = (
    f"check {STORAGE} (or {STORAGE}__accountName / __tableServiceUri) points at a reachable storage account"
)
FORBIDDEN_ACTION = (
    "grant the function's identity 'Storage Table Data Contributor' on the storage account "
    "(role assignments can take a few minutes to apply)"
)
CREDENTIAL_REFUSED_ACTION = (
    "the storage credential was refused: check the connection string's account key, or use "
    f"identity-based storage ({STORAGE}__accountName) with 'Storage Table Data Contributor'"
)
PROBE_PARTITION = "doctor"


@dataclass(frozen=True)
class StoredRow:
    """A row's custom properties as stored, with the ETag that must match for the next update."""

    fields: dict[str, Any]
    etag: str
    row: str = ""  # where it is stored (table/partition/row), to name it in errors


def build_table_client(
    *,
    table_name: str,
    connection_string: str | None = None,
    table_service_uri: str | None = None,
    credential: TokenCredential | None = None,
    retry_total: int = 2,
    connection_timeout: float = 5.0,
    read_timeout: float = 10.0,
) -> TableClient:
    """A TableClient from a connection string, or from the table service URI plus a credential
    (managed identity with 'Storage Table Data Contributor').

    Every call is bounded: checkpoint operations are small and answer in milliseconds, so a 10 s
    read timeout only ever ends a stall. A refused connection or a 5xx is retried (quickly, with
    short backoff); a read timeout is not (`retry_read=0`): a stalled service would double the
    wait, and a write that timed out may have landed anyway, which the next ETag check settles.
    One stalled call thus costs at most connect + read timeout, and the run stops on it."""
    kwargs = client_options(
        retry_total=retry_total, connection_timeout=connection_timeout, read_timeout=read_timeout
    )
    if connection_string:
        try:
            return TableClient.from_connection_string(connection_string, table_name, **kwargs)
        except ValueError:
            # The SDK's parse error: not quoted, it may hold the key.
            raise CheckpointUnavailable(
                f"{STORAGE} is not a valid connection string", action=UNREACHABLE_ACTION
            ) from None
    if table_service_uri and credential is not None:
        return TableClient(endpoint=table_service_uri, table_name=table_name, credential=credential, **kwargs)
    raise ConfigurationError(
        ["checkpoint storage needs a connection string, or a table service URI and a credential"]
    )


def client_options(
    *, retry_total: int = 2, connection_timeout: float = 5.0, read_timeout: float = 10.0
) -> dict[str, Any]:
    """Timeouts and retries for every table client (see `build_table_client`), and a session of its
    own that reads the proxy and CA-bundle variables once per run instead of on every commit."""
    return {
        "session": EnvironmentOnceSession(),
        "retry_total": retry_total,
        "retry_read": 0,
        "retry_backoff_factor": 0.4,
        "retry_backoff_max": 2,
        "connection_timeout": connection_timeout,
        "read_timeout": read_timeout,
    }


def describe_table_error(operation: str, exc: Exception) -> str:
    """Safe text for an Azure error: class, status and error code only (an SDK message can quote
    the request URL)."""
    parts = [f"checkpoint {operation} failed: {type(exc).__name__}"]
    status = getattr(exc, "status_code", None)
    if status:
        parts.append(f"HTTP {status}")
    code = getattr(exc, "error_code", None)
    if code:
        parts.append(f"({code})")
    return " ".join(parts)


def _is_table_missing(exc: ResourceNotFoundError) -> bool:
    # Some calls (create_entity) raise without `error_code`: the code is then only in the header
    # or the body text.
    if str(getattr(exc, "error_code", "") or "") == "TableNotFound":
        return True
    headers = getattr(exc.response, "headers", None) or {}
    return headers.get("x-ms-error-code") == "TableNotFound" or "TableNotFound" in str(exc.message or "")


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le"))


def _property_size(value: Any) -> int:
    """Bytes a value counts towards the entity limit (Azure's published formula)."""
    if isinstance(value, EntityProperty):
        value = value.value
    if isinstance(value, bool):
        return 1
    if isinstance(value, int | float):
        return 8
    if isinstance(value, bytes):
        return 4 + len(value)
    return 4 + _utf16_len(str(value))


def to_entity(partition_key: str, row_key: str, fields: Mapping[str, FieldValue]) -> dict[str, Any]:
    """Validate `fields` against Table limits and convert them to an entity.

    Integers are stored as Edm.Int64 whatever their size, so a field never changes type between
    writes (the SDK would pick Int32 for small values and refuse larger ones).
    """
    if len(fields) > MAX_CUSTOM_PROPERTIES:
        raise CheckpointTooLarge(
            f"{len(fields)} properties; a table entity holds at most {MAX_CUSTOM_PROPERTIES}"
        )
    entity: dict[str, Any] = {"PartitionKey": partition_key, "RowKey": row_key}
    size = 4 + 2 * (len(partition_key) + len(row_key))
    for name, value in fields.items():
        if name in _RESERVED or not _PROPERTY_NAME.match(name):
            raise ValueError(f"{name!r} is not a usable table property name")
        if isinstance(value, bool | float | str | bytes):
            stored: Any = value
        elif isinstance(value, int):
            if not -(2**63) <= value < 2**63:
                raise ValueError(f"property {name!r} does not fit a 64-bit integer")
            stored = EntityProperty(value, EdmType.INT64)
        else:
            raise TypeError(f"property {name!r} has unsupported type {type(value).__name__}")
        if isinstance(value, bytes) and len(value) > MAX_PROPERTY_BYTES:
            raise CheckpointTooLarge(
                f"property {name!r} is {len(value):,} bytes; binary properties hold at most {MAX_PROPERTY_BYTES:,}"
            )
        if isinstance(value, str) and _utf16_len(value) > MAX_PROPERTY_BYTES:
            raise CheckpointTooLarge(
                f"property {name!r} is {_utf16_len(value):,} bytes as UTF-16; strings hold at most "
                f"{MAX_PROPERTY_BYTES:,}"
            )
        size += 8 + 2 * len(name) + _property_size(value)
        entity[name] = stored
    if size > MAX_ENTITY_BYTES:
        raise CheckpointTooLarge(f"entity would be about {size:,} bytes; the limit is {MAX_ENTITY_BYTES:,}")
    return entity


def from_entity(entity: Mapping[str, Any]) -> dict[str, Any]:
    """Custom properties as plain Python values (Int64 values arrive wrapped in EntityProperty)."""
    out: dict[str, Any] = {}
    for name, value in entity.items():
        if name in ("PartitionKey", "RowKey"):
            continue
        out[name] = value.value if isinstance(value, EntityProperty) else value
    return out


def _etag_of(metadata: Mapping[str, Any]) -> str:
    etag = metadata.get("etag")
    if not etag:
        raise CheckpointUnavailable("checkpoint write returned no ETag")
    return str(etag)


def safe_row_key(value: str) -> str:
    """A RowKey from an arbitrary id: characters Azure forbids become '_', at most 512 chars."""
    return _KEY_FORBIDDEN.sub("_", value)[:512] or "_"


def _truncate_utf16(text: str, limit: int) -> str:
    if _utf16_len(text) <= limit:
        return text
    text = text[: limit // 2]
    while _utf16_len(text) > limit:  # characters outside the BMP take 4 bytes
        text = text[:-16]
    return text


@dataclass(frozen=True)
class Probed:
    """A probe row was written, read back and deleted (`TableStore.probe`)."""

    table: str
    created_table: bool  # the table did not exist; it was created, as the first run would


class TableStore:
    """The connector's checkpoint, dead letters and health record in Table Storage (`CheckpointStore`).

    `emulator`: the local emulator's address when the settings point at one (see
    `adapters.emulator`), so that a probe can say "not running" instead of "unreachable"."""

    def __init__(
        self,
        client: TableClient,
        *,
        instance: str = "default",
        deadletters: TableClient | None = None,
        emulator: tuple[str, int] | None = None,
        credential: Any = None,
    ) -> None:
        self._client = client
        # An identity-based store's own credential (its token session is closed with the store).
        self._credential = credential
        self.instance = instance
        self._row_key = safe_row_key(instance)
        self._health_key = safe_row_key(f"{instance}.health")
        self._probe_key = safe_row_key(f"{instance}.probe")
        self._emulator = emulator
        # Where the rows live, to name them in errors (no account, no URL).
        self.row_name = f"{client.table_name}/{PARTITION_KEY}/{self._row_key}"
        self.health_row_name = f"{client.table_name}/{PARTITION_KEY}/{self._health_key}"
        # Derived from the checkpoint client's endpoint and credential unless the caller built one.
        self._deadletters = deadletters or TableClient(
            endpoint=client.url,
            table_name=client.table_name + DEADLETTER_SUFFIX,
            credential=client.credential,
            **client_options(),
        )
        self._deadletter_table_ready = False
        # (ETag, fields) of this store's last successful create/commit: exactly what the row held
        # when the service returned that ETag. A commit expecting that ETag can then send only the
        # difference. Deliberately not filled by load(): only what we wrote ourselves is trusted.
        self._written: tuple[str, dict[str, Any]] | None = None
        self._ledger_chunks = LedgerChunks()

    # -- CheckpointStore: a Checkpoint in, a Checkpoint out ----------------------------------------
    def load(self) -> StoredCheckpoint | None:
        row = self.load_row()
        if row is None:
            return None
        try:
            checkpoint = decode_checkpoint(row.fields)
        except CheckpointDamaged as damage:
            raise damage.in_row(self.row_name) from None
        except (KeyError, TypeError, ValueError, ArithmeticError) as error:
            # Not expected (the decoder names what it refuses), but never a traceback either.
            raise CheckpointDamaged("?", type(error).__name__, row=self.row_name) from None
        return StoredCheckpoint(checkpoint, row.etag)

    def create(self, checkpoint: Checkpoint) -> str:
        return self.create_row(encode_checkpoint(checkpoint, self._ledger_chunks)).etag

    def commit(self, checkpoint: Checkpoint, *, etag: str) -> str:
        return self.commit_row(encode_checkpoint(checkpoint, self._ledger_chunks), etag=etag).etag

    # -- the checkpoint row as properties ---------------------------------------------------------
    def load_row(self) -> StoredRow | None:
        try:
            entity = self._client.get_entity(PARTITION_KEY, self._row_key)
        except ResourceNotFoundError as exc:
            if _is_table_missing(exc):
                self._create_table(self._client, "create table")
            return None
        except AzureError as exc:
            raise CheckpointUnavailable(describe_table_error("read", exc)) from None
        return StoredRow(from_entity(entity), _etag_of(entity.metadata), self.row_name)

    def create_row(self, fields: dict[str, Any]) -> StoredRow:
        entity = to_entity(PARTITION_KEY, self._row_key, fields)
        for attempt in (1, 2):
            try:
                metadata = self._client.create_entity(entity)
                stored = StoredRow(dict(fields), _etag_of(metadata), self.row_name)
                self._written = (stored.etag, dict(fields))
                return stored
            except ResourceExistsError:
                raise CheckpointConflict("another run created the checkpoint first") from None
            except ResourceNotFoundError as exc:
                if attempt == 1 and _is_table_missing(exc):
                    self._create_table(self._client, "create table")
                    continue
                raise CheckpointUnavailable(describe_table_error("create", exc)) from None
            except AzureError as exc:
                raise CheckpointUnavailable(describe_table_error("create", exc)) from None
        raise CheckpointUnavailable("checkpoint create failed: the table could not be created")

    def commit_row(self, fields: dict[str, Any], *, etag: str) -> StoredRow:
        """Replace the row with `fields` if it still has `etag`; CheckpointConflict otherwise.

        When `etag` is the one this store's own last write produced, the row is known to hold
        exactly those fields, so only the properties that changed or were added are sent, as a
        MERGE under the same If-Match condition: as atomic and conflict-safe as a REPLACE, and
        the row ends up equal to `fields` either way. This matters because the checkpoint is
        committed after every batch and the ledger chunks (up to 14 x 60 KB, base64 in JSON) are
        mostly unchanged between batches: the ledger only grows at its end until a prune.

        A full REPLACE is sent when the previous fields are unknown (first commit after load, or
        after a failed commit) or a property disappears (fewer ledger chunks after a prune): MERGE
        cannot delete, and a stale chunk would still count towards the 1 MiB row limit.
        """
        entity = to_entity(PARTITION_KEY, self._row_key, fields)  # validates the whole row
        written, self._written = self._written, None  # cleared until this write is confirmed
        changed = _changed_names(written[1], fields) if written is not None and written[0] == etag else None
        if changed is None:
            body, mode = entity, UpdateMode.REPLACE
        else:
            body = {"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"]}
            for name in changed:
                body[name] = entity[name]
            mode = UpdateMode.MERGE
        try:
            metadata = self._client.update_entity(
                body, mode=mode, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            raise CheckpointConflict(
                "the checkpoint changed since this run read it (ETag mismatch)"
            ) from None
        except HttpResponseError as exc:
            if exc.status_code == 412:
                raise CheckpointConflict(
                    "the checkpoint changed since this run read it (ETag mismatch)"
                ) from None
            raise CheckpointUnavailable(describe_table_error("commit", exc)) from None
        except AzureError as exc:
            raise CheckpointUnavailable(describe_table_error("commit", exc)) from None
        stored = StoredRow(dict(fields), _etag_of(metadata), self.row_name)
        # A copy of our own: the caller may mutate the dict it got back.
        self._written = (stored.etag, dict(fields))
        return stored

    def set_aside(self, records: list[SetAsideRecord]) -> None:
        if not records:
            return
        if not self._deadletter_table_ready:
            self._create_table(self._deadletters, "create dead-letter table")
            self._deadletter_table_ready = True
        for record in records:
            entity = to_entity(
                _day(record.window.start),
                safe_row_key(record.event_id),
                _dead_letter_fields(record, self.instance),
            )
            try:
                # Upsert is right here (and only here): the same event set aside twice is one row.
                self._deadletters.upsert_entity(entity, mode=UpdateMode.REPLACE)
            except AzureError as exc:
                raise CheckpointUnavailable(describe_table_error("dead-letter write", exc)) from None

    # -- health ----------------------------------------------------------------------------------
    def read_health(self) -> dict[str, Any] | None:
        try:
            entity = self._client.get_entity(PARTITION_KEY, self._health_key)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise CheckpointUnavailable(describe_table_error("health read", exc)) from None
        return from_entity(entity)

    def write_health(self, fields: dict[str, Any]) -> None:
        entity = to_entity(PARTITION_KEY, self._health_key, fields)
        # At most twice: a table that is still missing after it was created (one being deleted
        # answers so for a while) fails the write instead of asking again without end.
        for attempt in (1, 2):
            try:
                self._client.upsert_entity(entity, mode=UpdateMode.REPLACE)
                return
            except ResourceNotFoundError as exc:
                if attempt == 2 or not _is_table_missing(exc):
                    raise CheckpointUnavailable(describe_table_error("health write", exc)) from None
                self._create_table(self._client, "create table")
            except AzureError as exc:
                raise CheckpointUnavailable(describe_table_error("health write", exc)) from None

    # -- the probe (for doctor) -------------------------------------------------------------------
    def probe(self) -> Probed:
        """Write, read back and delete a probe row (PartitionKey "doctor"; never the checkpoint):
        what every run needs from the table, checked once. A missing table is created, as the
        first run would. Raises CheckpointUnavailable whose action fits the refusal."""
        row = {"PartitionKey": PROBE_PARTITION, "RowKey": self._probe_key, "Nonce": uuid.uuid4().hex}
        try:
            created = self._write_probe(row)
            read = self._client.get_entity(PROBE_PARTITION, self._probe_key)
            self._client.delete_entity(PROBE_PARTITION, self._probe_key)
        except AzureError as exc:
            raise self._probe_failure(exc) from None
        if read.get("Nonce") != row["Nonce"]:
            raise CheckpointUnavailable(
                "a probe entity read back different from what was written",
                action="check that no proxy or emulator in between caches table responses",
            )
        return Probed(self._client.table_name, created)

    def _write_probe(self, row: dict[str, Any]) -> bool:
        """Upsert the probe row; True when the table had to be created first."""
        try:
            self._client.upsert_entity(row, mode=UpdateMode.REPLACE)
            return False
        except ResourceNotFoundError:
            self._client.create_table()
            self._client.upsert_entity(row, mode=UpdateMode.REPLACE)
            return True

    def _probe_failure(self, exc: AzureError) -> CheckpointUnavailable:
        message = describe_table_error("table write", exc)
        status = getattr(exc, "status_code", None)
        if isinstance(exc, ClientAuthenticationError) and not status:
            # No status: nothing was sent, the identity produced no token (identity-based storage).
            return CheckpointUnavailable(message, action=SinkTokenUnavailable.action)
        if isinstance(exc, ClientAuthenticationError) or status == 403:
            return CheckpointUnavailable(message, action=self._refused_action())
        if status is None and (not_running := nothing_listens_at(self._emulator)) is not None:
            return not_running
        return CheckpointUnavailable(message, action=UNREACHABLE_ACTION)

    def _refused_action(self) -> str:
        # A token credential means identity-based storage: a role is missing. Anything else (an
        # account key, a SAS) came from the connection string, which holds the wrong secret.
        identity_based = hasattr(self._client.credential, "get_token")
        return FORBIDDEN_ACTION if identity_based else CREDENTIAL_REFUSED_ACTION

    def close(self) -> None:
        self._client.close()
        self._deadletters.close()
        close_credential = getattr(self._credential, "close", None)
        if callable(close_credential):
            close_credential()

    # -- dead-letter inspection (for the status command and tests) -------------------------------
    def count_dead_letters(self, *, limit: int) -> int:
        """How many rows the dead-letter table holds, counting up to `limit`. Only the keys are
        asked for: a row carries its event (up to 60 KB), which a count has no use for."""
        try:
            found = self._deadletters.list_entities(select=["RowKey"], results_per_page=min(limit, 1000))
            return sum(1 for _ in islice(found, limit))
        except ResourceNotFoundError:
            return 0
        except AzureError as exc:
            raise CheckpointUnavailable(describe_table_error("dead-letter read", exc)) from None

    def dead_letters(self, *, limit: int = 1000) -> list[dict[str, Any]]:
        try:
            found = self._deadletters.list_entities(results_per_page=min(limit, 1000))
            out = []
            for entity in found:
                row = from_entity(entity)
                row["PartitionKey"], row["RowKey"] = entity["PartitionKey"], entity["RowKey"]
                out.append(row)
                if len(out) >= limit:
                    break
            return out
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise CheckpointUnavailable(describe_table_error("dead-letter read", exc)) from None

    @staticmethod
    def _create_table(client: TableClient, operation: str) -> None:
        try:
            client.create_table()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise CheckpointUnavailable(describe_table_error(operation, exc)) from None


def _changed_names(previous: Mapping[str, Any], fields: Mapping[str, Any]) -> list[str] | None:
    """Names in `fields` whose value differs from `previous` (or is new); None when a name of
    `previous` is missing from `fields`, which only a REPLACE can express.

    A value counts as unchanged only with the same type: True == 1 in Python, but a bool and an
    Int64 are different properties to the service. Comparing a 60 KB chunk is a memcmp (a few
    microseconds), far cheaper than base64-encoding and sending it again.
    """
    if any(name not in fields for name in previous):
        return None
    missing = object()
    changed = []
    for name, value in fields.items():
        old = previous.get(name, missing)
        if old is value or (type(old) is type(value) and old == value):
            continue
        changed.append(name)
    return changed


def _day(seconds: int) -> str:
    return iso_utc(seconds)[:10]


def _dead_letter_fields(record: SetAsideRecord, instance: str) -> dict[str, FieldValue]:
    text = record.raw_json.decode("utf-8", errors="replace")
    stored = _truncate_utf16(text, RAW_JSON_MAX_BYTES)
    return {
        "Instance": instance,
        "EventId": record.event_id,
        "Reason": record.reason[:1000],
        "ReasonCode": str(record.code),
        "WindowStart": record.window.start,
        "WindowEnd": record.window.end,
        "RawJson": stored,
        "RawBytes": len(record.raw_json),
        "RawTruncated": stored != text,
        "RawSha256": hashlib.sha256(record.raw_json).hexdigest(),
    }


# -- the checkpoint row's properties ----------------------------------------------------------------
# Every property name, type and limit of the stored checkpoint lives here: the pure `Checkpoint`
# knows none of them.
SCHEMA_VERSION = 1
# The ledger's encoding is split into binary properties of this size (under MAX_PROPERTY_BYTES), at
# most MAX_LEDGER_CHUNKS of them: 840,000 bytes, which leaves the scalars room under MAX_ENTITY_BYTES.
LEDGER_CHUNK_BYTES = 60_000
MAX_LEDGER_CHUNKS = 14
# Any stored time must lie between 0 and this (2**40 s is year 36812): beyond it is damage.
MAX_STORED_SECONDS = 2**40


class LedgerChunks:
    """The ledger's encoding in property-sized chunks, each with its CRC-32.

    The encoding only grows at its end between prunes, so nearly every chunk holds the same bytes
    as at the last commit: such a chunk (one memcmp) keeps its checksum instead of computing it
    again. One per store, as the ledger is committed after every batch."""

    def __init__(self) -> None:
        self._last: list[tuple[bytes, int]] = []

    def split(self, blob: bytes) -> tuple[list[bytes], list[int]]:
        chunks = [blob[i : i + LEDGER_CHUNK_BYTES] for i in range(0, len(blob), LEDGER_CHUNK_BYTES)]
        last = self._last
        crcs = [
            last[i][1] if i < len(last) and last[i][0] == chunk else zlib.crc32(chunk)
            for i, chunk in enumerate(chunks)
        ]
        self._last = list(zip(chunks, crcs, strict=True))
        return chunks, crcs


def encode_checkpoint(checkpoint: Checkpoint, chunks: LedgerChunks | None = None) -> dict[str, FieldValue]:
    """The checkpoint row's properties. CheckpointTooLarge when the ledger needs more than
    MAX_LEDGER_CHUNKS properties (nothing is written then)."""
    ledger = checkpoint.ledger
    parts, crcs = (chunks or LedgerChunks()).split(ledger.encode())
    if len(parts) > MAX_LEDGER_CHUNKS:
        raise CheckpointTooLarge(
            f"the dedup ledger holds {len(ledger)} events, more than one checkpoint row can store "
            f"({MAX_LEDGER_CHUNKS} properties of {LEDGER_CHUNK_BYTES:,} bytes)"
        )
    current = checkpoint.current
    fields: dict[str, FieldValue] = {
        "SchemaVersion": SCHEMA_VERSION,
        "Floor": checkpoint.floor,
        "CurrentStart": current.start if current else -1,
        "CurrentEnd": current.end if current else -1,
        "DoneTo": checkpoint.done_to if checkpoint.done_to is not None else -1,
        "NewestDelivered": checkpoint.newest_delivered if checkpoint.newest_delivered is not None else -1,
        "LeaseOwner": checkpoint.lease_owner,
        "LeaseUntil": checkpoint.lease_until,
        "LedgerChunks": len(parts),
        "LedgerEvents": len(ledger),
        "LedgerCrcs": ",".join(f"{crc:08x}" for crc in crcs),
        "Held": _encode_held(checkpoint.held),
    }
    for i, chunk in enumerate(parts):
        fields[f"Ledger{i}"] = chunk
    return fields


def decode_checkpoint(fields: Mapping[str, Any]) -> Checkpoint:
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
    return Checkpoint(
        floor=floor,
        ledger=_decode_ledger(fields),
        current=Window(start, end) if start >= 0 else None,
        done_to=done_to if done_to >= 0 else None,
        newest_delivered=newest if newest >= 0 else None,
        lease_owner=lease_owner,
        lease_until=lease_until,
        held=held,
    )


def _integer(fields: Mapping[str, Any], name: str, default: int | None, low: int, high: int) -> int:
    value = fields.get(name, default)
    if value is None:
        raise CheckpointDamaged(name, "missing")
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointDamaged(name, f"a {type(value).__name__}, not an integer")
    if not low <= value <= high:
        raise CheckpointDamaged(name, f"{value} is outside {low}..{high}")
    return value


def _ledger_crcs(fields: Mapping[str, Any], count: int) -> list[int] | None:
    """The stored checksums, one per chunk; None for a row written before they existed."""
    text = fields.get("LedgerCrcs")
    if text is None:
        return None
    try:
        if not isinstance(text, str):
            raise ValueError
        crcs = [int(part, 16) for part in text.split(",")] if text else []
    except ValueError:
        raise CheckpointDamaged("LedgerCrcs", "not a list of checksums") from None
    if len(crcs) != count:
        raise CheckpointDamaged("LedgerCrcs", f"{len(crcs)} checksums for {count} ledger chunks")
    return crcs


def _ledger_chunk(fields: Mapping[str, Any], i: int, count: int, crc: int | None) -> bytes:
    name = f"Ledger{i}"
    chunk = fields.get(name)
    if not isinstance(chunk, bytes | bytearray):
        raise CheckpointDamaged(name, f"a {type(chunk).__name__}, not binary")
    if i < count - 1 and len(chunk) != LEDGER_CHUNK_BYTES:
        raise CheckpointDamaged(
            name, f"{len(chunk)} bytes, not {LEDGER_CHUNK_BYTES} like every chunk but the last"
        )
    if len(chunk) % ENTRY.size:
        raise CheckpointDamaged(
            name, f"{len(chunk)} bytes is not a whole number of {ENTRY.size}-byte entries"
        )
    if crc is not None and zlib.crc32(chunk) != crc:
        raise CheckpointDamaged(name, "its content does not match its checksum in LedgerCrcs")
    return bytes(chunk)


def _decode_ledger(fields: Mapping[str, Any]) -> Ledger:
    count = _integer(fields, "LedgerChunks", None, 0, MAX_LEDGER_CHUNKS)
    missing = [f"Ledger{i}" for i in range(count) if f"Ledger{i}" not in fields]
    if missing:
        raise CheckpointDamaged("LedgerChunks", f"says {count} chunks, but {', '.join(missing)} is missing")
    crcs = _ledger_crcs(fields, count)
    blob = b"".join(_ledger_chunk(fields, i, count, crcs[i] if crcs else None) for i in range(count))
    for i, (_, ts) in enumerate(ENTRY.iter_unpack(blob)):
        if not 0 <= ts <= MAX_STORED_SECONDS:
            raise CheckpointDamaged(
                f"Ledger{i * ENTRY.size // LEDGER_CHUNK_BYTES}", f"an entry's time {ts} is impossible"
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
