"""Health rows for content tests, built the way production builds them: each simulated run's report
is merged into the instance's health record (`health.merge_report` / `merge_crash`) and turned into
its `NordPassConnectorHealth_CL` row by `health.health_row`, as the composition root does."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from content import localrun
from nordpass_connector import health
from nordpass_connector.errors import SourceAuthError
from nordpass_connector.isotime import iso_utc
from nordpass_connector.report import RunReport

MINUTE = timedelta(minutes=1)
AUTH_ERROR = SourceAuthError("the NordPass API answered 401").describe()
CRASH_CLASS = "KeyError"


@dataclass
class RunLog:
    """The health rows of a workspace at `now`, one `run()` per simulated run."""

    now: datetime
    rows: list[dict[str, Any]] = field(default_factory=list)
    records: dict[str, health.HealthRecord] = field(default_factory=dict)  # per instance

    def run(
        self,
        ago: timedelta,
        outcome: str = "ok",
        *,
        instance: str = "default",
        sent: int = 0,
        fetched: int = 0,
    ) -> dict[str, Any]:
        """One run of `instance` that ended `ago` ago: ok, failed (SourceAuthError), crashed,
        conflict or busy."""
        ended = self.now - ago
        now = localrun.to_epoch(ended)
        previous = self.records.get(instance)
        if outcome == "crashed":
            record = health.merge_crash(previous, run_id=None, error_class=CRASH_CLASS, now=now)
            row = health.health_row(
                now=now,
                instance=instance,
                version="9.9.9",
                report=None,
                record=record,
                crash_class=CRASH_CLASS,
            )
        else:
            report = RunReport(run_id=f"r{len(self.rows)}", started_at=iso_utc(int(now - 20)))
            report.outcome, report.sent, report.fetched = outcome, sent, max(fetched, sent)
            report.duration_seconds = 2.5
            if outcome == "ok":
                report.caught_up, report.newest_event, report.lag_seconds = True, iso_utc(int(now - 60)), 60.0
            elif outcome == "failed":
                report.error_class, report.error = "SourceAuthError", AUTH_ERROR
            else:
                report.error_class = "CheckpointConflict"
                report.error = "CheckpointConflict: run r0 holds the checkpoint -> wait for it"
            record = health.merge_report(previous, report, now=now)
            row = health.health_row(now=now, instance=instance, version="9.9.9", report=report, record=record)
        self.records[instance] = record
        self.rows.append(row)
        return row

    def every_minute(self, start: timedelta, end: timedelta, outcome: str = "ok", **kw: Any) -> None:
        """One run a minute from `start` ago to `end` ago (both included)."""
        ago = start
        while ago >= end:
            self.run(ago, outcome, **kw)
            ago -= MINUTE
