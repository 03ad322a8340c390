"""Pydantic models of an Activity API page.

They are tolerant: unknown fields are kept, because NordPass may add fields at any time and nothing
it sends may be dropped. Events stay raw JSON; the mapper reads them defensively (`mapping.py`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
