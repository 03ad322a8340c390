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

Error messages name the operation, HTTP status and service error code only: never the connection
string, account key, URL or service message.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from typing import Any

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import EdmType, EntityProperty, TableClient, UpdateMode

from ..errors import CheckpointConflict, CheckpointError, CheckpointUnavailable, ConfigurationError
from ..ports import SetAsideRecord, StoredCheckpoint
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


class CheckpointTooLarge(CheckpointError):
    """The fields cannot be stored in one entity; the caller must split them (a code problem)."""

    action = "lower NORDPASS_MAX_WINDOW_EVENTS or NORDPASS_LOOKBACK_SECONDS so the checkpoint fits one row"


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
        return TableClient.from_connection_string(connection_string, table_name, **kwargs)
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


class TableStore:
    """The connector's checkpoint, dead letters and health record in Table Storage (`CheckpointStore`)."""

    def __init__(
        self,
        client: TableClient,
        *,
        instance: str = "default",
        deadletters: TableClient | None = None,
    ) -> None:
        self._client = client
        self.instance = instance
        self._row_key = safe_row_key(instance)
        self._health_key = safe_row_key(f"{instance}.health")
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

    # -- CheckpointStore -------------------------------------------------------------------------
    def load(self) -> StoredCheckpoint | None:
        try:
            entity = self._client.get_entity(PARTITION_KEY, self._row_key)
        except ResourceNotFoundError as exc:
            if _is_table_missing(exc):
                self._create_table(self._client, "create table")
            return None
        except AzureError as exc:
            raise CheckpointUnavailable(describe_table_error("read", exc)) from None
        return StoredCheckpoint(from_entity(entity), _etag_of(entity.metadata), self.row_name)

    def create(self, fields: dict[str, Any]) -> StoredCheckpoint:
        entity = to_entity(PARTITION_KEY, self._row_key, fields)
        for attempt in (1, 2):
            try:
                metadata = self._client.create_entity(entity)
                stored = StoredCheckpoint(dict(fields), _etag_of(metadata), self.row_name)
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

    def commit(self, fields: dict[str, Any], *, etag: str) -> StoredCheckpoint:
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
        stored = StoredCheckpoint(dict(fields), _etag_of(metadata), self.row_name)
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
        try:
            self._client.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except ResourceNotFoundError as exc:
            if not _is_table_missing(exc):
                raise CheckpointUnavailable(describe_table_error("health write", exc)) from None
            self._create_table(self._client, "create table")
            self.write_health(fields)
        except AzureError as exc:
            raise CheckpointUnavailable(describe_table_error("health write", exc)) from None

    # -- dead-letter inspection (for the status command and tests) -------------------------------
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
    return time.strftime("%Y-%m-%d", time.gmtime(seconds))


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
