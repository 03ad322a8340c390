"""One run of the connector, top to bottom:

    load checkpoint -> plan window -> fetch pages -> map + dedup -> send -> commit -> repeat

until the backlog is delivered or the run's time budget is spent. The checkpoint is the only truth
about progress: it is committed after every acknowledged batch, a window's frozen end is kept until
the window is complete, and a conflicting writer stops the run before it sends anything more.

This module sees only the ports (`ports.py`) and pure modules; it imports no SDK and no `os`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

import orjson

from .batching import pack
from .clock import Clock
from .cursor import (
    Checkpoint,
    WindowPolicy,
    clamp_to_retention,
    complete_window,
    is_backlog,
    next_window,
    overlap_probe,
)
from .dedup import Selection, ledger_key, select_new
from .errors import (
    CheckpointConflict,
    CheckpointError,
    CheckpointUnavailable,
    ConnectorError,
    SourceUnavailable,
)
from .mapping import iso_utc
from .ports import Batch, CheckpointStore, Delivery, LogSink, SetAsideRecord, StoredCheckpoint, Window
from .reader import FetchedWindow, WindowReader
from .report import RunReport, checkpoint_summary
from .retry import Deadline, RetryLog

log = logging.getLogger(__name__)

MIN_SPAN_SECONDS = 60
WINDOW_FILL_TARGET = 0.6  # aim new windows at 60 % of the event cap so most need no narrowing


@dataclass(frozen=True)
class RunOptions:
    backfill_days: float
    run_budget_seconds: float
    lease_seconds: int
    window_policy: WindowPolicy
    max_window_events: int
    # Do not start reading another window with less than this left of the budget.
    min_seconds_for_window: float = 8.0


@dataclass
class Connector:
    """Everything one run needs, built by `composition` (real adapters) or by tests."""

    reader: WindowReader
    sink: LogSink
    store: CheckpointStore
    clock: Clock
    retry_log: RetryLog
    options: RunOptions
    prefetcher: Executor


class RunFailed(ConnectorError):
    """A run that did not finish its work; `report` says how far it got, `cause` why."""

    def __init__(self, report: RunReport, cause: ConnectorError) -> None:
        super().__init__(cause.message, action=cause.action)
        self.report = report
        self.cause = cause
        self.retriable = cause.retriable


def run_once(connector: Connector, *, run_id: str | None = None) -> RunReport:
    """Deliver what is pending, within the time budget. Returns the report; raises RunFailed."""
    c, opts = connector, connector.options
    report = RunReport(run_id=run_id or uuid.uuid4().hex[:12], started_at=iso_utc(int(c.clock.now())))
    started = c.clock.monotonic()
    deadline = Deadline.after(c.clock, opts.run_budget_seconds)
    progress: Progress | None = None
    try:
        progress = Progress.open(c.store, c.clock, opts, owner=report.run_id)
        report.checkpoint_before = checkpoint_summary(progress.checkpoint)
        gap = clamp_to_retention(progress.checkpoint, now=c.clock.now())
        if gap is not None:
            report.skipped_gap = [iso_utc(gap.start), iso_utc(gap.end)]
            log.warning(
                "last delivered position is older than the 90 days the NordPass API serves: events "
                "from %s to %s can no longer be read and are skipped",
                *report.skipped_gap,
            )

        for fetched in _fetched_windows(c, progress.checkpoint, deadline):
            report.windows += 1
            report.pages += fetched.pages
            report.fetched += len(fetched.events)
            progress.begin(fetched.window)

            selection = select_new(fetched.events, progress.checkpoint.ledger)
            fetched.events.clear()  # the raw page objects are no longer needed; free them early
            report.deduplicated += selection.duplicates
            progress.set_aside_malformed(selection, fetched.window, report)

            out_of_time = False
            for item in pack(selection.rows, max_body_bytes=c.sink.max_body_bytes):
                if deadline.expired():
                    out_of_time = True
                    break
                if isinstance(item, Batch):
                    delivery = c.sink.send(item, deadline=deadline)
                    progress.record(item, delivery, fetched.window, report)
                    if delivery.error is not None:
                        raise delivery.error
                else:
                    progress.set_aside_rows([(item.row, item.reason)], fetched.window, report)
            if out_of_time:
                break  # what was sent is committed; the next run resumes this window
            progress.complete(fetched)

        report.caught_up = progress.caught_up(c.clock.now())
        progress.release()
        report.outcome = "ok"
    except ConnectorError as error:
        report.outcome = "conflict" if isinstance(error, CheckpointConflict) else "failed"
        report.error, report.error_class = error.describe(), type(error).__name__
        if progress is not None and not isinstance(error, CheckpointError):
            progress.release_quietly()
        raise RunFailed(report, error) from error
    finally:
        report.retries = c.retry_log.snapshot()
        report.duration_seconds = round(c.clock.monotonic() - started, 3)
        if progress is not None:
            report.checkpoint_after = checkpoint_summary(progress.checkpoint)
            newest = progress.checkpoint.newest_delivered
            if newest is not None:
                report.newest_event = iso_utc(newest)
                report.lag_seconds = round(c.clock.now() - newest, 1)
    return report


def _fetched_windows(c: Connector, checkpoint: Checkpoint, deadline: Deadline) -> Iterator[FetchedWindow]:
    """Read windows one after another; while a backlog window is being delivered, the next one is
    already being read (it can be planned without waiting, see `cursor.is_backlog`)."""
    opts = c.options
    span = opts.window_policy.max_span_seconds
    window = next_window(checkpoint, now=c.clock.now(), policy=opts.window_policy, span=span)
    if window is None:
        return
    probe = overlap_probe(checkpoint, window)
    pending: Future[FetchedWindow] | None = c.prefetcher.submit(
        c.reader.read, window, deadline=deadline, probe=probe
    )
    try:
        while pending is not None:
            try:
                fetched = pending.result()
            except SourceUnavailable:
                if deadline.remaining() > opts.min_seconds_for_window:
                    raise
                return  # the budget ran out while reading: not a failure, the next run goes on
            pending = None
            span = _next_span(fetched, opts)
            if is_backlog(
                checkpoint, fetched.window, fetched_at=fetched.fetched_at, policy=opts.window_policy
            ):
                planned = Checkpoint(floor=fetched.window.end, done_to=fetched.window.end)
                following = next_window(planned, now=c.clock.now(), policy=opts.window_policy, span=span)
                if following is not None and deadline.remaining() > opts.min_seconds_for_window:
                    pending = c.prefetcher.submit(c.reader.read, following, deadline=deadline)
            yield fetched
    finally:
        if pending is not None:
            pending.cancel()


def _next_span(fetched: FetchedWindow, opts: RunOptions) -> int:
    """Size the next window from this one's density, so backfills need few narrowing requests."""
    count = max(1, len(fetched.events))
    scaled = fetched.window.span * opts.max_window_events * WINDOW_FILL_TARGET / count
    return int(min(opts.window_policy.max_span_seconds, max(MIN_SPAN_SECONDS, scaled)))


@dataclass
class Progress:
    """The checkpoint as this run holds it: loaded once, then advanced only by conditional writes.

    Holding it also means holding a lease (owner + expiry) so that a second run that starts while
    this one is active stops before it sends anything.
    """

    store: CheckpointStore
    clock: Clock
    options: RunOptions
    owner: str
    checkpoint: Checkpoint
    stored: StoredCheckpoint
    pending_keys: list[tuple[bytes, int]] = field(default_factory=list)

    @classmethod
    def open(cls, store: CheckpointStore, clock: Clock, options: RunOptions, *, owner: str) -> Progress:
        now = clock.now()
        stored = store.load()
        if stored is None:
            checkpoint = Checkpoint.first_run(now=now, backfill_days=options.backfill_days)
            checkpoint.lease_owner, checkpoint.lease_until = owner, int(now) + options.lease_seconds
            log.info("no checkpoint yet: first run, backfilling %s days", options.backfill_days)
            return cls(store, clock, options, owner, checkpoint, store.create(checkpoint.to_fields()))
        try:
            checkpoint = Checkpoint.from_fields(stored.fields)
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointUnavailable(
                f"the checkpoint row is unreadable ({error}); it was not overwritten",
                action="inspect the checkpoint table; deleting the row restarts a 7-day backfill",
            ) from None
        if checkpoint.lease_owner and checkpoint.lease_owner != owner and checkpoint.lease_until > now:
            raise CheckpointConflict(
                f"run {checkpoint.lease_owner} holds the checkpoint until {iso_utc(checkpoint.lease_until)}"
            )
        progress = cls(store, clock, options, owner, checkpoint, stored)
        progress.commit()  # claims the lease; a concurrent claimant gets a conflict here
        return progress

    def commit(self) -> None:
        self.checkpoint.lease_owner = self.owner
        self.checkpoint.lease_until = int(self.clock.now()) + self.options.lease_seconds
        self.stored = self.store.commit(self.checkpoint.to_fields(), etag=self.stored.etag)

    def begin(self, window: Window) -> None:
        # Persisted with the first commit inside the window: from then on a later run resumes this
        # window with the same frozen end.
        self.checkpoint.current = window

    def record(self, batch: Batch, delivery: Delivery, window: Window, report: RunReport) -> None:
        report.ingestion_requests += delivery.requests
        report.ingestion_bytes += delivery.bytes_sent
        if delivery.rejected:
            self.set_aside_rows([(batch.rows[i], reason) for i, reason in delivery.rejected], window, report)
        if not delivery.delivered:
            return
        for index in delivery.delivered:
            digest, timestamp = ledger_key(batch.rows[index])
            self.checkpoint.ledger.add(digest, timestamp)
        newest = max(batch.rows[i]["timestamp"] for i in delivery.delivered)
        self.checkpoint.newest_delivered = max(newest, self.checkpoint.newest_delivered or newest)
        report.sent += len(delivery.delivered)
        self.commit()

    def set_aside_rows(
        self, rows: list[tuple[dict[str, Any], str]], window: Window, report: RunReport
    ) -> None:
        records = [
            SetAsideRecord(row["EventId"], reason, window, orjson.dumps(row, option=orjson.OPT_SORT_KEYS))
            for row, reason in rows
        ]
        self.store.set_aside(records)
        for row, reason in rows:
            digest, timestamp = ledger_key(row)
            self.checkpoint.ledger.add(digest, timestamp)
            report.count_set_aside(_reason_category(reason))
            log.warning("event %s set aside: %s", row["EventId"], reason)
        self.commit()

    def set_aside_malformed(self, selection: Selection, window: Window, report: RunReport) -> None:
        if not selection.malformed:
            return
        records = []
        for event_id, event in selection.malformed:
            raw = json.dumps(event.raw, sort_keys=True, separators=(",", ":"), default=repr).encode()
            records.append(SetAsideRecord(event_id, f"malformed event: {event.reason}", window, raw))
        self.store.set_aside(records)
        for event_id, event in selection.malformed:
            # A malformed event has no usable time; it is remembered at the window's end so the
            # overlap of the next window does not set it aside again.
            self.checkpoint.ledger.add(event.digest, window.end)
            report.count_set_aside("malformed")
            log.warning("event %s set aside: malformed event (%s)", event_id, event.reason)
        self.commit()

    def complete(self, fetched: FetchedWindow) -> None:
        complete_window(
            self.checkpoint, fetched.window, fetched_at=fetched.fetched_at, policy=self.options.window_policy
        )
        self.commit()

    def caught_up(self, now: float) -> bool:
        if self.checkpoint.current is not None or self.checkpoint.done_to is None:
            return False
        return self.checkpoint.done_to >= int(now) - self.options.window_policy.safety_delay_seconds - 120

    def release(self) -> None:
        self.checkpoint.lease_owner = ""
        self.checkpoint.lease_until = 0
        self.stored = self.store.commit(self.checkpoint.to_fields(), etag=self.stored.etag)

    def release_quietly(self) -> None:
        """Best effort after a failure: free the lease so the next tick need not wait it out."""
        try:
            self.release()
        except ConnectorError as error:
            log.info("could not release the checkpoint lease after a failed run: %s", error.message)


def _reason_category(reason: str) -> str:
    return reason.split(":", 1)[0].split(" (", 1)[0][:60]
