"""The `Date` header of each answer from NordPass and the Logs Ingestion API, with the local times
around the exchange, so that `doctor` can judge this machine's clock without a request of its own.

`DateRecordingTransport` wraps the NordPass client's httpx transport; `DateRecordingHooks` are
azure-core's request and response hooks for the Logs Ingestion client. Only the header's time is
kept: nothing else of a request or an answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from azure.core.pipeline import PipelineRequest, PipelineResponse

from ..clock import Clock


@dataclass(frozen=True)
class ServerDate:
    """A `Date` response header with the local times around the exchange."""

    source: str
    server: float
    sent: float
    received: float

    @property
    def skew(self) -> float:
        """Local minus server time; the exchange's midpoint absorbs the round trip."""
        return (self.sent + self.received) / 2 - self.server


@dataclass
class ServerDates:
    clock: Clock
    seen: list[ServerDate] = field(default_factory=list)

    def add(self, source: str, header: str | None, sent: float, received: float) -> None:
        if not header:
            return
        try:
            server = parsedate_to_datetime(header).timestamp()
        except (TypeError, ValueError):
            return
        # Keep one per source: the first answer is enough to judge the clock.
        if all(d.source != source for d in self.seen):
            self.seen.append(ServerDate(source, server, sent, received))


class DateRecordingTransport(httpx.BaseTransport):
    """An httpx transport that notes each response's `Date` header in `dates` under `source`."""

    def __init__(self, inner: httpx.BaseTransport, dates: ServerDates, source: str) -> None:
        self._inner = inner
        self._dates = dates
        self._source = source

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        sent = self._dates.clock.now()
        response = self._inner.handle_request(request)
        self._dates.add(self._source, response.headers.get("date"), sent, self._dates.clock.now())
        return response

    def close(self) -> None:
        self._inner.close()


class DateRecordingHooks:
    """azure-core's `raw_request_hook` and `raw_response_hook`: each response's `Date` header in
    `dates` under `source` (requests are sequential in doctor, so one send time is enough)."""

    def __init__(self, dates: ServerDates, source: str) -> None:
        self._dates = dates
        self._source = source
        self._sent = dates.clock.now()

    def on_request(self, request: PipelineRequest[Any]) -> None:
        self._sent = self._dates.clock.now()

    def on_response(self, response: PipelineResponse[Any, Any]) -> None:
        date = response.http_response.headers.get("Date")
        self._dates.add(self._source, date, self._sent, self._dates.clock.now())
