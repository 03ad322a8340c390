"""The one contract for the Sentinel table `NordPassEventLogs_CL`.

The row model (`models.EventRow`), the mapper, the DCR stream declaration and the table resource in
`deploy/azuredeploy.json`, and the KQL schema used by the rule tests are all derived from or checked
against this tuple. Change a column here and every one of them must follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnType = Literal["string", "long", "datetime", "dynamic"]

TABLE_NAME = "NordPassEventLogs_CL"
DEFAULT_STREAM_NAME = f"Custom-{TABLE_NAME}"


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
        return self.type


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


def stream_declaration() -> dict[str, object]:
    """The DCR `streamDeclarations` entry for the connector's input stream."""
    return {"columns": [{"name": c.name, "type": c.type} for c in COLUMNS]}


def table_columns() -> list[dict[str, str]]:
    """Columns for the `Microsoft.OperationalInsights/workspaces/tables` resource."""
    return [{"name": c.name, "type": c.table_type, "description": c.description} for c in COLUMNS]


def kusto_schema() -> str:
    """`(name:type, ...)` text for the Kusto language service's TableSymbol."""
    return "(" + ", ".join(f"{c.name}:{c.kusto_type}" for c in COLUMNS) + ")"
