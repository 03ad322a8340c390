"""The health record: what the last runs did, kept beside the checkpoint for `status` and people;
and the health row: one per run, sent to Sentinel (`NordPassConnectorHealth_CL`).

Pure logic only (no SDK, no `os`): merging a run's report into the previous record, counting
consecutive failures, converting to and from table fields, the health row of a run, and the
one-line run summary that is logged. The composition root reads and writes the record through the
checkpoint store and sends the row through the health reporter.

Everything stored here is either a count, a time, a fixed phrase or `ConnectorError.describe()`
text, which by contract carries no secret and no event content.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .errors import CheckpointDamaged
from .isotime import iso_utc, parse_iso
from .report import RunReport

HEALTH_VERSION = 1
# Long enough for any describe() text we produce; bounded so the row can never approach the
# 64 KiB property limit whatever a future message looks like.
MAX_ERROR_CHARS = 1000

OK, FAILED, CONFLICT, CRASHED, BUSY = "ok", "failed", "conflict", "crashed", "busy"
# What a crash (an exception of no known class) reports: an arbitrary exception's text may quote
# anything it touched, so never its message.
CRASH_MESSAGE = "unexpected error; the traceback is in the Functions host log"


@dataclass(frozen=True)
class HealthRecord:
    """One row per connector instance. `None` means "not known yet" (never stored as a value)."""

    last_run_id: str | None = None
    last_run_at: str | None = None  # when the last run finished
    # ok | failed | conflict | crashed: the last run that worked on the checkpoint. Busy runs (another
    # run held the checkpoint) are counted apart and do not change it.
    last_outcome: str | None = None
    last_success_at: str | None = None
    last_error_class: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    consecutive_failures: int = 0
    events_delivered_last_run: int = 0
    events_set_aside_last_run: int = 0
    retries_last_run: int = 0
    duration_seconds: float = 0.0
    newest_event: str | None = None  # newest event delivered so far (event time)
    lag_seconds: float | None = None  # at the end of the last run: run end - newest_event
    caught_up: bool = False
    last_skipped_gap: str | None = None  # "from/to" of the last >90-day outage skipped
    consecutive_busy: int = 0  # runs in a row that found the checkpoint held (reset by any other)
    last_busy_at: str | None = None
    last_busy_reason: str | None = None  # which run held it until when
    repaired_events_last_run: int = 0  # delivered with broken characters replaced (U+FFFD)
    # Windows that could not be read consistently and are held back (re-read every run): how
    # many, and the oldest one's "from/to", since when and why.
    held_windows: int = 0
    held_window: str | None = None
    oldest_held_since: str | None = None
    held_reason: str | None = None

    @property
    def healthy(self) -> bool:
        return self.last_outcome == OK

    def lag_now(self, now: float) -> float | None:
        """Lag as of `now`: keeps growing while runs fail, unlike the stored value."""
        newest = parse_iso(self.newest_event)
        return None if newest is None else round(now - newest, 1)

    # -- table fields ----------------------------------------------------------------------------
    def to_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"HealthVersion": HEALTH_VERSION}
        for name, value in asdict(self).items():
            if value is not None:  # Table Storage has no null: an absent property means unknown
                out[_column(name)] = value
        return out

    @classmethod
    def from_fields(cls, stored: Mapping[str, Any] | None) -> HealthRecord | None:
        """Tolerant, for display (`status`): a field of the wrong type is skipped, so a damaged row
        degrades the output rather than breaking it. Runs use the strict `decode`."""
        if stored is None:
            return None
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = stored.get(_column(f.name))
            if raw is not None and _fits(f.name, f.default, raw):
                values[f.name] = float(raw) if _is_float(f.name, f.default) else raw
        return cls(**values)

    @classmethod
    def decode(cls, stored: Mapping[str, Any] | None) -> HealthRecord | None:
        """Strict, for a run about to merge into the record: a property of the wrong type raises
        CheckpointDamaged naming it, so the row is left as it was rather than rebuilt with the
        damaged counts reset. Properties this version does not know are ignored."""
        if stored is None:
            return None
        for f in fields(cls):
            raw = stored.get(_column(f.name))
            if raw is not None and not _fits(f.name, f.default, raw):
                raise CheckpointDamaged(_column(f.name), f"{raw!r:.40} is not a {_kind(f.name, f.default)}")
        return cls.from_fields(stored)

    def to_dict(self, *, now: float | None = None) -> dict[str, Any]:
        data = asdict(self)
        if now is not None:
            data["lag_now_seconds"] = self.lag_now(now)
        return data


def _is_float(name: str, default: Any) -> bool:
    return isinstance(default, float) or name == "lag_seconds"


def _kind(name: str, default: Any) -> str:
    if isinstance(default, bool):
        return "boolean"
    if _is_float(name, default):
        return "number"
    return "whole number" if isinstance(default, int) else "text"


def _fits(name: str, default: Any, raw: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(raw, bool)
    if isinstance(raw, bool):
        return False
    if _is_float(name, default):
        return isinstance(raw, int | float)
    if isinstance(default, int):
        return isinstance(raw, int)
    return isinstance(raw, str)


def _column(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _error_text(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def merge_report(previous: HealthRecord | None, report: RunReport, *, now: float) -> HealthRecord:
    """The record after `report`'s run, finished at `now`.

    - ok: consecutive failures reset, last success moves; the last error is kept for reference.
    - failed: one more consecutive failure, the error replaces the last one.
    - conflict: another run moved the checkpoint under this one, which stopped; the failure count
      is left alone (the run holding the checkpoint writes its own outcome).
    - busy: another run held the checkpoint, so this one did nothing: only the busy count moves.
    """
    prev = previous or HealthRecord()
    if report.outcome == BUSY:
        # Nothing was done and nothing failed: counted apart, so "consecutive failures" (and an
        # alert on it) only ever counts runs that tried and failed.
        return replace(
            prev,
            consecutive_busy=prev.consecutive_busy + 1,
            last_busy_at=iso_utc(int(now)),
            last_busy_reason=_error_text(report.error),
        )
    outcome = report.outcome if report.outcome in (OK, FAILED, CONFLICT) else FAILED
    newest = report.newest_event or prev.newest_event
    newest_at = parse_iso(newest)
    record = replace(
        prev,
        last_run_id=report.run_id,
        last_run_at=iso_utc(int(now)),
        last_outcome=outcome,
        events_delivered_last_run=report.sent,
        events_set_aside_last_run=report.set_aside,
        retries_last_run=sum(report.retries.values()),
        duration_seconds=report.duration_seconds,
        newest_event=newest,
        lag_seconds=None if newest_at is None else round(now - newest_at, 1),
        caught_up=outcome == OK and report.caught_up,
        last_skipped_gap="/".join(report.skipped_gap) if report.skipped_gap else prev.last_skipped_gap,
        consecutive_busy=0,
        repaired_events_last_run=report.repaired_events,
    )
    if outcome == OK:
        record = _with_held(record, report.held_windows)
        return replace(record, last_success_at=iso_utc(int(now)), consecutive_failures=0)
    record = replace(
        record,
        last_error_class=report.error_class or "ConnectorError",
        last_error=_error_text(report.error),
        last_error_at=iso_utc(int(now)),
    )
    if outcome == FAILED:
        return replace(record, consecutive_failures=prev.consecutive_failures + 1)
    return record


def _with_held(record: HealthRecord, held: list[dict[str, Any]]) -> HealthRecord:
    if not held:
        return replace(record, held_windows=0, held_window=None, oldest_held_since=None, held_reason=None)
    oldest = min(held, key=lambda h: str(h.get("since")))
    return replace(
        record,
        held_windows=len(held),
        held_window=f"{oldest.get('from')}/{oldest.get('to')}",
        oldest_held_since=str(oldest.get("since")),
        held_reason=_error_text(str(oldest.get("reason"))),
    )


def merge_crash(
    previous: HealthRecord | None, *, run_id: str | None, error_class: str, now: float
) -> HealthRecord:
    """A run that ended in an exception of no known class (a bug): no report, no message, because
    an arbitrary exception's text may quote anything it touched."""
    prev = previous or HealthRecord()
    return replace(
        prev,
        last_run_id=run_id or prev.last_run_id,
        last_run_at=iso_utc(int(now)),
        last_outcome=CRASHED,
        last_error_class=error_class,
        last_error=CRASH_MESSAGE,
        last_error_at=iso_utc(int(now)),
        consecutive_failures=prev.consecutive_failures + 1,
        events_delivered_last_run=0,
        events_set_aside_last_run=0,
        retries_last_run=0,
        caught_up=False,
        lag_seconds=prev.lag_now(now),
    )


def health_row(
    *,
    now: float,
    instance: str,
    version: str,
    report: RunReport | None,
    record: HealthRecord | None,
    crash_class: str | None = None,
) -> dict[str, Any]:
    """The run's row of `NordPassConnectorHealth_CL`, keys in `schema.HEALTH` column order.

    `report` is None for a crash (no report exists); `record` is the health record after this run,
    or None when it could not be read (then the failure count and last success are unknown, not 0).
    Only counts, times, our own class names and `describe()` text: nothing a run read or was told.
    """
    r = report or RunReport(run_id="", started_at="")
    crashed = report is None
    after = r.checkpoint_after or {}
    skipped_from, skipped_to = r.skipped_gap if r.skipped_gap else (None, None)
    held = _held_now(r, record, crashed=crashed)
    outcome = CRASHED if crashed else r.outcome
    error_class = crash_class if crashed else r.error_class
    error = CRASH_MESSAGE if crashed else _error_text(r.error)
    # One line per column; a new column in schema.HEALTH is one more line here.
    return {
        "TimeGenerated": iso_utc(int(now)),
        "RunId": r.run_id or None,  # a crash leaves no report, so no id
        "Instance": instance,
        "ConnectorVersion": version,
        "Outcome": outcome,
        "ErrorClass": error_class or None,
        "ErrorMessage": error if outcome != OK else None,
        "RunStartTime": r.started_at or None,
        "DurationSeconds": r.duration_seconds,
        "EventsFetched": r.fetched,
        "EventsSent": r.sent,
        "EventsDeduplicated": r.deduplicated,
        "EventsSetAside": r.set_aside,
        "SetAsideReasons": dict(r.set_aside_reasons),
        "Pages": r.pages,
        "IngestionRequests": r.ingestion_requests,
        "Retries": sum(r.retries.values()),
        "RetriesByCause": dict(r.retries),
        "NewestEventTime": r.newest_event or (record.newest_event if record else None),
        "LagSeconds": r.lag_seconds
        if r.lag_seconds is not None
        else (record.lag_now(now) if record else None),
        "CheckpointPosition": after.get("done_to") or after.get("floor"),
        "CaughtUp": outcome == OK and r.caught_up,
        "ConsecutiveFailures": record.consecutive_failures if record else (0 if outcome == OK else None),
        "LastSuccessTime": record.last_success_at
        if record
        else (iso_utc(int(now)) if outcome == OK else None),
        "SkippedFrom": skipped_from,
        "SkippedTo": skipped_to,
        "RepairedEvents": r.repaired_events,
        "HeldWindows": held.count,
        "OldestHeldFrom": held.start,
        "OldestHeldTo": held.end,
        "OldestHeldSince": held.since,
        "HeldStuck": held.stuck,
        "HeldReason": held.reason,
    }


@dataclass(frozen=True)
class _Held:
    """The held-back windows as one row reports them: how many, and the oldest one."""

    count: int | None = 0
    start: str | None = None
    end: str | None = None
    since: str | None = None
    stuck: bool | None = False
    reason: str | None = None


def _held_now(report: RunReport, record: HealthRecord | None, *, crashed: bool) -> _Held:
    if crashed:  # no report: what the record last knew, or unknown
        if record is None:
            return _Held(count=None, stuck=None)
        start, _, end = (record.held_window or "").partition("/")
        return _Held(
            record.held_windows,
            start or None,
            end or None,
            record.oldest_held_since,
            None,
            record.held_reason,
        )
    if not report.held_windows:
        return _Held()
    oldest = min(report.held_windows, key=lambda h: str(h.get("since")))
    return _Held(
        count=len(report.held_windows),
        start=oldest.get("from"),
        end=oldest.get("to"),
        since=oldest.get("since"),
        stuck=any(bool(h.get("stuck")) for h in report.held_windows),
        reason=_error_text(str(oldest.get("reason") or "")) or None,
    )


def run_summary(report: RunReport) -> dict[str, Any]:
    """The report plus the span of event time it covered, for the one structured line per run.

    `window` runs from where the completed windows stood before the run to where they stand after
    it; a window still in progress is in `checkpoint_after.window_in_progress`.
    """
    summary = report.to_dict()
    before, after = report.checkpoint_before or {}, report.checkpoint_after or {}
    summary["window"] = {
        "from": before.get("done_to") or before.get("floor") or after.get("floor"),
        "to": after.get("done_to"),
    }
    summary["retries_total"] = sum(report.retries.values())
    return summary


def render(record: HealthRecord | None, *, now: float, instance: str) -> list[str]:
    """`status` for people: a few aligned lines, most important first."""
    if record is None:
        return [
            f"instance {instance}: no health record yet (no run has finished since health was added, "
            "or the timer has never run)"
        ]
    lag = record.lag_now(now)
    lines = [
        ("instance", instance),
        (
            "last run",
            f"{record.last_outcome or '?'} at {record.last_run_at or '?'} (run {record.last_run_id})",
        ),
        ("last success", record.last_success_at or "never"),
        ("consecutive failures", str(record.consecutive_failures)),
        ("events delivered", f"{record.events_delivered_last_run} in the last run"),
        ("newest event", record.newest_event or "none delivered yet"),
        ("lag now", "unknown" if lag is None else _duration(lag)),
        ("backlog", _backlog(record)),
    ]
    if record.events_set_aside_last_run:
        lines.append(("set aside", f"{record.events_set_aside_last_run} in the last run (dead-letter table)"))
    if record.last_error_class:
        resolved = "" if not record.healthy else " (resolved since)"
        lines.append(("last error", f"{record.last_error_at} {record.last_error_class}{resolved}"))
        lines.append(("", record.last_error or ""))
    if record.last_skipped_gap:
        lines.append(("skipped (>90 days)", record.last_skipped_gap))
    if record.held_windows:
        lines.append(
            (
                "held back",
                f"{record.held_windows} window(s) could not be read; oldest {record.held_window} since "
                f"{record.oldest_held_since}: {record.held_reason}",
            )
        )
    if record.consecutive_busy:
        lines.append(("busy", f"{record.consecutive_busy} run(s) in a row found the checkpoint held"))
    width = max(len(k) for k, _ in lines)
    return [f"{k:<{width}}  {v}" if k else f"{'':<{width}}  {v}" for k, v in lines]


def _backlog(record: HealthRecord) -> str:
    if not record.healthy:
        return "unknown: the last run did not finish"
    if record.caught_up:
        return "caught up"
    return "catching up: the next runs continue where this one stopped"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"
