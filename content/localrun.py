"""Run rule and workbook KQL on local rows with duckdb-kql, as close to Log Analytics as it gets.

What Log Analytics does that a local table does not, and how this module stands in for it:

* `ingestion_time()` (the hidden ingestion timestamp) has no duckdb-kql mapping. Every row here
  carries an explicit `_IngestionTime` column and `executable_form()` rewrites the call to that
  column; nothing else in the query text changes.
* The platform replaces a TimeGenerated older than two days with the receive time.
  `platform_time_generated()` applies the same rule when rows are loaded.

Rows come from the connector's own mapping (`mapping.prepare` + `mapping.to_row`), so the tests
exercise the same column contract the function app writes. The health table
(`NordPassConnectorHealth_CL`) holds rows from the connector's own `health.health_row`; its rows are
never older than the run that wrote them, so they are stored as sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb_kql
from duckdb_kql.engine import schema as duckdb_schema

from content.duckdb_types import column_definitions, table_columns
from nordpass_connector import mapping
from nordpass_connector.schema import COLUMNS, HEALTH, TABLE_NAME

INGESTION_COLUMN = "_IngestionTime"
# Log Analytics rewrites TimeGenerated values older than this to the time the row was received.
TIME_GENERATED_MAX_AGE = timedelta(days=2)

_INGESTION_CALL = re.compile(r"\bingestion_time\(\s*\)")


@dataclass(frozen=True)
class LoadedRow:
    """One table row as the platform would store it, plus when it was ingested."""

    row: dict[str, Any]
    ingested_at: datetime


def utcnow() -> datetime:
    """Naive UTC `now`, the form duckdb's TIMESTAMP and duckdb-kql's `ago()` compare against."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_epoch(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp())


def rows_from_events(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Map raw events to rows exactly as the connector does, numbering identical events."""
    prepared: list[mapping.PreparedEvent] = []
    for raw in events:
        event = mapping.prepare(raw)
        if not isinstance(event, mapping.PreparedEvent):
            raise ValueError(f"test event is malformed: {event.reason}")
        prepared.append(event)
    numbers = mapping.occurrences([event.digest for event in prepared])
    return [mapping.to_row(event, n) for event, n in zip(prepared, numbers, strict=True)]


def _parse_time(value: str) -> datetime:
    # Rows carry "...Z" strings; the local table stores naive UTC like duckdb's TIMESTAMP.
    return datetime.strptime(value + "+0000", "%Y-%m-%dT%H:%M:%SZ%z").replace(tzinfo=None)


def health_record(row: dict[str, Any]) -> list[Any]:
    """A health row as the connector sends it, as values for the local health table."""
    record: list[Any] = []
    for column in HEALTH.columns:
        value = row.get(column.name)
        if value is not None and column.type == "datetime":
            value = _parse_time(value)
        elif value is not None and column.type == "dynamic":
            value = json.dumps(value)
        record.append(value)
    return record


def platform_time_generated(event_time: datetime, ingested_at: datetime) -> datetime:
    if ingested_at - event_time > TIME_GENERATED_MAX_AGE:
        return ingested_at
    return event_time


def ingest(
    rows: Iterable[dict[str, Any]], *, at: datetime | None = None, lag: timedelta | None = None
) -> list[LoadedRow]:
    """Rows as stored after ingestion, with TimeGenerated rewritten like the platform does.

    `at` ingests everything at one moment (a first-run backfill, a catch-up batch); `lag` ingests
    each row that long after its event time (a connector keeping up)."""
    if (at is None) == (lag is None):
        raise ValueError("give exactly one of `at` and `lag`")
    out = []
    for row in rows:
        event_time = _parse_time(row["EventTime"])
        ingested_at = at if at is not None else event_time + (lag or timedelta())
        stored = dict(row)
        stored["TimeGenerated"] = platform_time_generated(event_time, ingested_at)
        stored["EventTime"] = event_time
        out.append(LoadedRow(stored, ingested_at))
    return out


def executable_form(query: str) -> str:
    """The query duckdb-kql can run: `ingestion_time()` becomes the explicit ingestion column."""
    return _INGESTION_CALL.sub(INGESTION_COLUMN, query)


_TABLE_COLUMNS = column_definitions([*((c.name, c.type) for c in COLUMNS), (INGESTION_COLUMN, "datetime")])
# Opening a duckdb-kql connection costs more than a typical scenario's query; scenarios reuse one
# and replace the table's rows (tests run sequentially within a process).
_shared: Any = None


def _records(loaded: Sequence[LoadedRow]) -> list[list[Any]]:
    records = []
    for item in loaded:
        record = []
        for column in COLUMNS:
            value = item.row.get(column.name)
            if column.type == "dynamic" and value is not None:
                value = json.dumps(value)
            record.append(value)
        record.append(item.ingested_at)
        records.append(record)
    return records


def connect(loaded: Sequence[LoadedRow], health: Sequence[dict[str, Any]] = ()) -> Any:
    """The shared connection with `NordPassEventLogs_CL` holding exactly `loaded` and
    `NordPassConnectorHealth_CL` exactly the health rows `health`."""
    global _shared
    if _shared is None:
        _shared = duckdb_kql.connect()
        _shared.execute("SET TimeZone = 'UTC'")
        _shared.execute(f"CREATE TABLE {TABLE_NAME} ({_TABLE_COLUMNS})")
        _shared.execute(f"CREATE TABLE {HEALTH.name} ({table_columns(HEALTH)})")
    con = _shared
    con.execute(f"DELETE FROM {TABLE_NAME}")
    con.execute(f"DELETE FROM {HEALTH.name}")
    records = _records(loaded)
    if records:
        placeholders = ", ".join("?" for _ in range(len(COLUMNS) + 1))
        con.executemany(f"INSERT INTO {TABLE_NAME} VALUES ({placeholders})", records)
    if health:
        placeholders = ", ".join("?" for _ in HEALTH.columns)
        con.executemany(
            f"INSERT INTO {HEALTH.name} VALUES ({placeholders})", [health_record(r) for r in health]
        )
    return con


# Translating KQL costs far more than running it on a few hundred rows. Every local table has the
# same columns and the SQL reads the clock at execution (`now()`), so one translation per query
# text serves every scenario.
_translations: dict[str, str] = {}


def to_sql(query: str, con: Any) -> str:
    text = executable_form(query)
    sql = _translations.get(text)
    if sql is None:
        sql = str(duckdb_kql.to_sql(text, schema=duckdb_schema(con)))
        _translations[text] = sql
    return sql


def execute(query: str, con: Any) -> list[dict[str, Any]]:
    """Execute the executable form of `query` on a connection from `connect()`."""
    relation = con.sql(to_sql(query, con))
    names = [d[0] for d in relation.description]
    return [dict(zip(names, values, strict=True)) for values in relation.fetchall()]


def run(
    query: str, loaded: Sequence[LoadedRow], health: Sequence[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """Execute the executable form of `query` over exactly the rows `loaded` (and health rows
    `health`); result rows as dicts."""
    return execute(query, connect(loaded, health))
