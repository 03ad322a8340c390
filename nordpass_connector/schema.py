"""The one contract for the connector's Sentinel tables: `NordPassEventLogs_CL` and
`NordPassConnectorHealth_CL`.

For each table, the DCR stream declaration and the table resource in `deploy/azuredeploy.json`, and
the KQL schema used by the content tests are derived from its `Table` here; the mapper's rows (and
the tests' row model, `tests/row_models.py`) and the health row (`health.health_row`) are checked
against it. Change a column here and every one of them must follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnType = Literal["string", "long", "real", "boolean", "datetime", "dynamic"]

TABLE_NAME = "NordPassEventLogs_CL"
DEFAULT_STREAM_NAME = f"Custom-{TABLE_NAME}"
HEALTH_TABLE_NAME = "NordPassConnectorHealth_CL"
DEFAULT_HEALTH_STREAM_NAME = f"Custom-{HEALTH_TABLE_NAME}"


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    description: str

    @property
    def table_type(self) -> str:
        """Type as the `workspaces/tables` ARM schema spells it (`dateTime`, not `datetime`)."""
        return "dateTime" if self.type == "datetime" else self.type

    @property
    def kusto_type(self) -> str:
        return "bool" if self.type == "boolean" else self.type


@dataclass(frozen=True)
class Table:
    """A custom table and the DCR input stream that feeds it (same columns, pass-through)."""

    name: str
    stream: str
    columns: tuple[Column, ...]
    description: str

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def stream_declaration(self) -> dict[str, object]:
        """The DCR `streamDeclarations` entry for the table's input stream."""
        return {"columns": [{"name": c.name, "type": c.type} for c in self.columns]}

    def table_columns(self) -> list[dict[str, str]]:
        """Columns for the `Microsoft.OperationalInsights/workspaces/tables` resource."""
        return [{"name": c.name, "type": c.table_type, "description": c.description} for c in self.columns]

    def kusto_schema(self) -> str:
        """`(name:type, ...)` text for the Kusto language service's TableSymbol."""
        return "(" + ", ".join(f"{c.name}:{c.kusto_type}" for c in self.columns) + ")"


OFFICIAL_COLUMNS: tuple[Column, ...] = (
    Column("TimeGenerated", "datetime", "Event time (from `timestamp`), not ingestion time"),
    Column("timestamp", "long", "Event time in Unix seconds, as NordPass sends it"),
    Column("event_type", "string", "NordPass event type (source field `type`)"),
    Column("action", "string", "Action within the event type"),
    Column(
        "user_uuid",
        "string",
        "Subject user's UUID; replaced by metadata.msp.user_uuid on MSP events (official rule)",
    ),
    Column(
        "user_email",
        "string",
        "Subject user's e-mail; replaced by metadata.msp.user_email on MSP events (official rule)",
    ),
    Column("initiator", "string", "Who performed the action (usually an e-mail)"),
    Column("organization_uuid", "string", "NordPass organisation (tenant) UUID"),
    Column("metadata", "dynamic", "Event-specific details, exactly as NordPass sent them"),
)

ADDED_COLUMNS: tuple[Column, ...] = (
    Column(
        "EventId",
        "string",
        "Deterministic id: SHA-256 of the canonical event plus its occurrence among identical events",
    ),
    Column("EventTime", "datetime", "Event time; kept even when the platform rewrites TimeGenerated"),
    Column(
        "OriginalUserUuid",
        "string",
        "user.uuid as sent, when the MSP rule replaced user_uuid; empty otherwise",
    ),
    Column(
        "OriginalUserEmail",
        "string",
        "user.email as sent, when the MSP rule replaced user_email; empty otherwise",
    ),
    Column(
        "AdditionalFields",
        "dynamic",
        "Top-level source fields this schema does not name, so nothing NordPass sends is dropped",
    ),
)

COLUMNS: tuple[Column, ...] = OFFICIAL_COLUMNS + ADDED_COLUMNS
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)

EVENTS = Table(TABLE_NAME, DEFAULT_STREAM_NAME, COLUMNS, "NordPass Activity API events")

# One row per run: what it did and how it ended. Counts, times, our own error classes and their
# safe one-line descriptions only: never a secret, never event content.
HEALTH_COLUMNS: tuple[Column, ...] = (
    Column("TimeGenerated", "datetime", "When the run ended (the function's clock)"),
    Column("RunId", "string", "The run's id, as in the function's log line"),
    Column("Instance", "string", "CONNECTOR_INSTANCE: which connector, when several share a workspace"),
    Column("ConnectorVersion", "string", "Version of the connector code that ran"),
    Column(
        "Outcome",
        "string",
        "ok | failed | crashed (unexpected error) | busy (another run held the checkpoint: did "
        "nothing, not a failure) | conflict (another run moved the checkpoint)",
    ),
    Column("ErrorClass", "string", "The connector's error class when the run did not succeed"),
    Column("ErrorMessage", "string", "What went wrong and what to do, one line (no secrets, no event data)"),
    Column("RunStartTime", "datetime", "When the run started"),
    Column("DurationSeconds", "real", "How long the run took"),
    Column("EventsFetched", "long", "Events read from the NordPass Activity API"),
    Column("EventsSent", "long", "Events acknowledged by the Logs Ingestion API"),
    Column("EventsDeduplicated", "long", "Events skipped because they were already delivered"),
    Column("EventsSetAside", "long", "Events kept in the dead-letter table instead of sent"),
    Column(
        "SetAsideReasons",
        "dynamic",
        "Set-aside events per reason code (malformed, oversize, refused, unsendable)",
    ),
    Column("Pages", "long", "Activity API pages read"),
    Column("IngestionRequests", "long", "Logs Ingestion API requests sent"),
    Column("Retries", "long", "Retries of any request in this run"),
    Column("RetriesByCause", "dynamic", "Retries per cause, e.g. nordpass:429, ingestion:5xx"),
    Column("NewestEventTime", "datetime", "Event time of the newest event delivered so far"),
    Column("LagSeconds", "real", "Run end minus the newest delivered event time"),
    Column("CheckpointPosition", "datetime", "Every event before this time is delivered (the checkpoint)"),
    Column("CaughtUp", "boolean", "True when no backlog is left for the next run"),
    Column("ConsecutiveFailures", "long", "Failed runs in a row, this one included (0 after a success)"),
    Column("LastSuccessTime", "datetime", "When the last successful run ended"),
    Column("SkippedFrom", "datetime", "Start of events skipped because they are older than 90 days"),
    Column("SkippedTo", "datetime", "End of events skipped because they are older than 90 days"),
    Column("RepairedEvents", "long", "Events sent with broken characters replaced (U+FFFD)"),
    Column("HeldWindows", "long", "Time windows NordPass did not serve consistently, held back and re-read"),
    Column("OldestHeldFrom", "datetime", "Start of the oldest held window"),
    Column("OldestHeldTo", "datetime", "End of the oldest held window"),
    Column("OldestHeldSince", "datetime", "Since when the oldest window is held"),
    Column("HeldStuck", "boolean", "True when a window has been held for over an hour"),
    Column("HeldReason", "string", "Why the oldest window is held (the connector's own words)"),
)

HEALTH = Table(
    HEALTH_TABLE_NAME,
    DEFAULT_HEALTH_STREAM_NAME,
    HEALTH_COLUMNS,
    "NordPass connector health, one row per run",
)

#: Every custom table the connector writes, each with its DCR stream.
TABLES: tuple[Table, ...] = (EVENTS, HEALTH)


def stream_declaration() -> dict[str, object]:
    """The DCR `streamDeclarations` entry for the events stream."""
    return EVENTS.stream_declaration()


def table_columns() -> list[dict[str, str]]:
    """Columns of the events table resource."""
    return EVENTS.table_columns()


def kusto_schema() -> str:
    """`(name:type, ...)` text of the events table for the Kusto language service."""
    return EVENTS.kusto_schema()
