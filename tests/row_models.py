"""The documented shapes of a NordPass event and of a `NordPassEventLogs_CL` row, as pydantic models.

The connector does not use them: it maps raw dicts (`mapping.py`) so that an unexpected type never
loses an event. The tests check the generator's events and the mapper's rows against them, and
`test_row_model_follows_the_schema` checks the row model against `schema.COLUMNS`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class NordPassUser(BaseModel):
    model_config = ConfigDict(extra="allow")

    uuid: str | None = None
    email: str | None = None


class NordPassEvent(BaseModel):
    """One activity event as documented. Used to describe and test the shape; the hot path maps
    raw dicts directly (see `mapping.py`) so that an unexpected type never loses an event."""

    model_config = ConfigDict(extra="allow")

    type: str | None = None
    action: str | None = None
    timestamp: int
    organization_uuid: str | None = None
    user: NordPassUser | None = None
    initiator: str | None = None
    metadata: Any = None


class EventRow(BaseModel):
    """A row of `NordPassEventLogs_CL`, exactly the columns of `schema.COLUMNS`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    TimeGenerated: datetime
    timestamp: int
    event_type: str | None
    action: str | None
    user_uuid: str | None
    user_email: str | None
    initiator: str | None
    organization_uuid: str | None
    metadata: Any
    EventId: str
    EventTime: datetime
    # Sent only with a value (`mapping.OPTIONAL_COLUMNS`); the table stores null otherwise.
    OriginalUserUuid: str | None = None
    OriginalUserEmail: str | None = None
    AdditionalFields: dict[str, Any] | None = None
