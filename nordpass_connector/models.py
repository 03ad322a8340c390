"""Pydantic models of what NordPass sends and of what the table receives.

The API models are tolerant: unknown fields are kept, because NordPass may add fields at any time
and nothing it sends may be dropped. The row model is exact: it has the table's columns and no
others, because the Logs Ingestion API silently drops undeclared fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .schema import COLUMN_NAMES


class PageMetadata(BaseModel):
    """`metadata` of one Activity API page. Every field is optional: none is documented."""

    model_config = ConfigDict(extra="allow")

    total: int | None = None
    per_page: int | None = None
    current_page: int | None = None
    total_pages: int | None = None


class ActivityPage(BaseModel):
    """One page of the Activity API. Events stay raw JSON: the mapper reads them defensively."""

    model_config = ConfigDict(extra="allow")

    data: list[Any] = Field(default_factory=list)
    metadata: PageMetadata = Field(default_factory=PageMetadata)


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


assert tuple(EventRow.model_fields) == COLUMN_NAMES, "EventRow must follow schema.COLUMNS"
