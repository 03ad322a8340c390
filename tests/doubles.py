"""In-memory stand-ins for the ports whose failures the real components cannot be made to show on
demand. Each implements its port exactly, and records what it was asked."""

from __future__ import annotations

from typing import Any

from nordpass_connector.clock import SystemClock
from nordpass_connector.retry import Retrier


class MemoryHealthStore:
    """`ports.HealthStore` in memory: the record as the table would hold it. `read_error` and
    `write_error` (exceptions) make every read or write fail with them."""

    health_row_name = "memory/checkpoint/default.health"

    def __init__(
        self,
        fields: dict[str, Any] | None = None,
        *,
        read_error: Exception | None = None,
        write_error: Exception | None = None,
    ) -> None:
        self.fields = dict(fields) if fields is not None else None
        self.read_error = read_error
        self.write_error = write_error
        self.reads = 0
        self.writes: list[dict[str, Any]] = []

    def read_health(self) -> dict[str, Any] | None:
        self.reads += 1
        if self.read_error is not None:
            raise self.read_error
        return dict(self.fields) if self.fields is not None else None

    def write_health(self, fields: dict[str, Any]) -> None:
        if self.write_error is not None:
            raise self.write_error
        self.fields = dict(fields)
        self.writes.append(dict(fields))


class SleepRecordingClock(SystemClock):
    """The real clock, which also keeps every wait it was asked for: a test can then say "gave up
    without waiting" or "waited what Retry-After said" without timing anything."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        super().sleep(seconds)


def sleeps_of(retrier: Retrier) -> list[float]:
    """The waits a retrier built on a `SleepRecordingClock` was asked for."""
    assert isinstance(retrier.clock, SleepRecordingClock), "build the retrier on a SleepRecordingClock"
    return retrier.clock.sleeps
