"""The official connector's request pattern, as the baseline (docs/nordpass-api.md, "The official
connector's request pattern").

Faithful to the official Go connector where it matters for speed: `timestamp_from` only (no upper
bound), `per_page` 100, pages 1, 2, 3, ... in sequence until the first empty page (`total_pages`
ignored), each non-empty page uploaded before the next one is fetched, a 10 s HTTP timeout, no
retries and no concurrency; the cursor (wall clock at the end of the run) is read at the start and
written at the end of the run. Our own adapters are used where the official one has an equivalent
step (the row mapping, the body packer, `IngestionSink` with gzip through the real
`LogsIngestionClient`, the managed-identity credential), so the comparison is of patterns, not of
serialisers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from nordpass_connector import USER_AGENT
from nordpass_connector.adapters.ingestion import IngestionSink, build_logs_client
from nordpass_connector.adapters.table_store import build_table_client
from nordpass_connector.batching import pack
from nordpass_connector.clock import Clock, SystemClock
from nordpass_connector.composition import build_credential
from nordpass_connector.mapping import PreparedEvent, occurrences, prepare, to_row
from nordpass_connector.ports import Batch
from nordpass_connector.retry import Deadline, Retrier, RetryLog, RetryPolicy
from nordpass_connector.settings import Settings

PER_PAGE = 100
HTTP_TIMEOUT_SECONDS = 10.0
BACKFILL_SECONDS = 7 * 86_400
CURSOR_PARTITION = "nordpass"
CURSOR_ROW = "cursor"


@dataclass
class OfficialRun:
    pages: int = 0
    fetched: int = 0
    uploaded: int = 0
    uploads: int = 0
    upload_bytes: int = 0
    capped: bool = False  # stopped at max_events (a measured prefix, extrapolated by the caller)


def run_official(
    settings: Settings,
    environ: Mapping[str, str],
    *,
    max_events: int | None = None,
    clock: Clock | None = None,
) -> OfficialRun:
    """One official-style run: from the stored cursor (or 7 days back) until an empty page.

    `clock` is the wall clock the cursor is read from and written with (the freshness scenario runs
    one run per simulated timer tick, with the simulator serving by the same clock)."""
    clock = clock or SystemClock()
    # No retries at all, as in the official connector (any failure ends the run unrecorded).
    retrier = Retrier(RetryPolicy(max_attempts=1), clock, RetryLog())
    credential = build_credential(settings, environ)
    logs_client = build_logs_client(settings.data_collection_endpoint, credential)
    sink = IngestionSink(
        client=logs_client,
        rule_id=settings.dcr_immutable_id,
        stream_name=settings.dcr_stream_name,
        retrier=retrier,
    )
    assert settings.storage.connection_string is not None, "the benchmark uses Azurite's connection string"
    table = build_table_client(
        table_name=settings.checkpoint_table,
        connection_string=settings.storage.connection_string.get_secret_value(),
    )
    http = httpx.Client(
        timeout=HTTP_TIMEOUT_SECONDS,
        headers={
            "Authorization": settings.nordpass_token.get_secret_value(),
            "Content-Type": "application/json",
            "X-Source": "MSSentinel",
            "User-Agent": USER_AGENT,
        },
    )
    run = OfficialRun()
    try:
        cursor = _read_cursor(table)
        if cursor is None:
            cursor = int(clock.now()) - BACKFILL_SECONDS
        deadline = Deadline.after(clock, 86_400.0)  # the official run has no budget of its own
        page = 1
        while True:
            response = http.post(
                settings.nordpass_endpoint_url,
                content=orjson.dumps({"timestamp_from": cursor, "page": page, "per_page": PER_PAGE}),
            )
            response.raise_for_status()
            events = orjson.loads(response.content).get("data") or []
            run.pages += 1
            if not events:
                break
            run.fetched += len(events)
            for item in pack(_rows(events), max_body_bytes=sink.max_body_bytes):
                assert isinstance(item, Batch), "a 100-event page has no oversize row in the benchmark data"
                delivery = sink.send(item, deadline=deadline)
                if delivery.error is not None:
                    raise delivery.error
                run.uploads += delivery.requests
                run.upload_bytes += delivery.bytes_sent
                run.uploaded += len(delivery.delivered)
            if max_events is not None and run.fetched >= max_events:
                run.capped = True
                break
            page += 1
        # The official cursor: the wall clock at the end of the run, not the newest event time.
        table.upsert_entity(
            {"PartitionKey": CURSOR_PARTITION, "RowKey": CURSOR_ROW, "Cursor": int(clock.now())}
        )
    finally:
        http.close()
        logs_client.close()
        table.close()
    return run


def _rows(events: list[Any]) -> list[dict[str, Any]]:
    # Occurrence indexes per page only: the official connector has no event ids at all, so
    # nothing is gained by tracking identical events across pages here.
    prepared = [event for event in map(prepare, events) if isinstance(event, PreparedEvent)]
    numbers = occurrences([event.digest for event in prepared])
    return [to_row(event, n) for event, n in zip(prepared, numbers, strict=True)]


def _read_cursor(table: Any) -> int | None:
    with contextlib.suppress(ResourceExistsError):
        table.create_table()
    try:
        entity = table.get_entity(CURSOR_PARTITION, CURSOR_ROW)
    except ResourceNotFoundError:
        return None
    return int(entity["Cursor"])
